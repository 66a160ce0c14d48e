"""RetinaFace-MobileNet0.25 reference decoding (onnxruntime), for the pipeline.

This mirrors what the Rust detector does (src/face/detect.rs): BGR minus
(104, 117, 127), NCHW, anchors at strides 8/16/32 with sizes {16,32},
{64,128}, {256,512}, variances 0.1/0.2, score threshold, NMS.  The pipeline
uses it to find faces in the registry test photos, to make aligned crops for
calibration and for the Rust tests' reference embeddings.
"""
from __future__ import annotations

import math

import numpy as np

STRIDES = (8, 16, 32)
SIZES = ((16, 32), (64, 128), (256, 512))
V_C, V_S = 0.1, 0.2
MEAN_BGR = np.array([104.0, 117.0, 127.0], dtype=np.float32)


def anchors(width: int, height: int) -> np.ndarray:
    """Anchors as (cx, cy, w, h) in pixels, in the network's output order."""
    out = []
    for stride, sizes in zip(STRIDES, SIZES):
        nx, ny = math.ceil(width / stride), math.ceil(height / stride)
        for y in range(ny):
            for x in range(nx):
                for s in sizes:
                    out.append(((x + 0.5) * stride, (y + 0.5) * stride, s, s))
    return np.asarray(out, dtype=np.float32)


def preprocess(rgb: np.ndarray) -> np.ndarray:
    bgr = rgb[..., ::-1].astype(np.float32) - MEAN_BGR
    return np.ascontiguousarray(bgr.transpose(2, 0, 1)[None])


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            xx0 = max(boxes[i, 0], boxes[j, 0])
            yy0 = max(boxes[i, 1], boxes[j, 1])
            xx1 = min(boxes[i, 2], boxes[j, 2])
            yy1 = min(boxes[i, 3], boxes[j, 3])
            inter = max(0.0, xx1 - xx0) * max(0.0, yy1 - yy0)
            union = area[i] + area[j] - inter
            if union <= 0 or inter / union <= iou:
                rest.append(j)
        order = rest
    return keep


def detect(session, rgb: np.ndarray, score_threshold: float = 0.9, nms_iou: float = 0.4):
    """Return a list of (box[4], score, landmarks[5,2]) in pixel coordinates."""
    h, w = rgb.shape[:2]
    loc, conf, landm = session.run(None, {session.get_inputs()[0].name: preprocess(rgb)})
    loc, conf, landm = loc[0], conf[0], landm[0]
    a = anchors(w, h)
    assert a.shape[0] == loc.shape[0], (a.shape, loc.shape)
    scores = conf[:, 1]
    idx = np.nonzero(scores > score_threshold)[0]
    a, loc, landm, scores = a[idx], loc[idx], landm[idx], scores[idx]
    cxcy = a[:, :2] + loc[:, :2] * V_C * a[:, 2:]
    wh = a[:, 2:] * np.exp(loc[:, 2:] * V_S)
    boxes = np.concatenate([cxcy - wh / 2, cxcy + wh / 2], axis=1)
    pts = a[:, None, :2] + landm.reshape(-1, 5, 2) * V_C * a[:, None, 2:]
    keep = nms(boxes, scores, nms_iou)
    return [(boxes[i], float(scores[i]), pts[i]) for i in keep]
