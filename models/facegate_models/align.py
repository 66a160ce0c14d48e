"""Five-point similarity alignment to an embedder's crop template.

The template lives in each embedder bundle's manifest ([align]); the Rust
aligner (src/face/align.rs) reads it from there, so both sides use one geometry.
FaceNet uses TEMPLATE_160 (a 160x160 crop), MobileFaceNet insightface's
template as it is, TEMPLATE_112 (a 112x112 crop).
Coordinates are continuous pixel coordinates: pixel (col j, row i) covers
[j, j+1) x [i, i+1) and has its centre at (j + 0.5, i + 0.5).
"""
from __future__ import annotations

import numpy as np

# ArcFace's 112x112 five-point template (left eye, right eye, nose, left mouth
# corner, right mouth corner, in image coordinates), re-centred on a 160x160
# crop, scaled by TEMPLATE_SCALE and moved by TEMPLATE_DY pixels (negative =
# up).  Chosen by measurement (issue #3, docs/ACCURACY.md "Alignment
# template"): LFW pair accuracy through detect + align + facenet-int8-qdq-pt,
# first 5 of the 10 standard folds, for scale/dy 1.0/0 95.23%, 1.1/0 96.97%
# (the previous guess), 1.2/0 97.53%, 1.3/0 97.60%, 1.1/-6 97.40%,
# 1.2/-6 97.73% (kept).
ARCFACE_112 = np.array([
    [38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
    [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float64)
CROP = 160
TEMPLATE_SCALE = 1.2
TEMPLATE_DY = -6.0
TEMPLATE_160 = (ARCFACE_112 - 56.0) * TEMPLATE_SCALE + CROP / 2.0 + np.array([0.0, TEMPLATE_DY])
# MobileFaceNet (insightface-style training crops): the template unchanged.
CROP_112 = 112
TEMPLATE_112 = ARCFACE_112.copy()


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares 4-DoF similarity (Umeyama, no reflection) mapping src to dst.

    Returns a 2x3 matrix M with dst ~= M @ [x, y, 1].
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    # Linear least squares in (a, b, tx, ty) for [[a, -b, tx], [b, a, ty]].
    n = src.shape[0]
    A = np.zeros((2 * n, 4))
    y = np.zeros(2 * n)
    A[0::2] = np.stack([src[:, 0], -src[:, 1], np.ones(n), np.zeros(n)], 1)
    A[1::2] = np.stack([src[:, 1], src[:, 0], np.zeros(n), np.ones(n)], 1)
    y[0::2] = dst[:, 0]
    y[1::2] = dst[:, 1]
    a, b, tx, ty = np.linalg.lstsq(A, y, rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def warp(rgb: np.ndarray, m: np.ndarray, size: int = CROP) -> np.ndarray:
    """Bilinear warp of an HxWx3 uint8 image by the 2x3 matrix m (source->crop).

    Samples outside the image clamp to the nearest edge pixel.
    """
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    u, v = np.meshgrid(np.arange(size) + 0.5, np.arange(size) + 0.5)
    x = inv[0, 0] * u + inv[0, 1] * v + inv[0, 2] - 0.5
    y = inv[1, 0] * u + inv[1, 1] * v + inv[1, 2] - 0.5
    h, w = rgb.shape[:2]
    x0 = np.floor(x)
    y0 = np.floor(y)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    x0 = x0.astype(np.int64)
    y0 = y0.astype(np.int64)

    def px(yy, xx):
        return rgb[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)].astype(np.float64)

    top = px(y0, x0) * (1 - fx) + px(y0, x0 + 1) * fx
    bot = px(y0 + 1, x0) * (1 - fx) + px(y0 + 1, x0 + 1) * fx
    out = top * (1 - fy) + bot * fy
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def align(rgb: np.ndarray, landmarks: np.ndarray, template: np.ndarray = TEMPLATE_160,
          size: int = CROP) -> np.ndarray:
    return warp(rgb, similarity(landmarks, template), size)
