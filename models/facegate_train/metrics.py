"""Verification figures on embeddings, for training logs and quick looks on
held-out people (reported figures come from `facegate eval lfw`).

Pairs are every (probe, reference) of different photos: genuine when the
person is the same, impostor otherwise."""
from __future__ import annotations

import numpy as np


def scores(probe: np.ndarray, p_person: np.ndarray, p_image: np.ndarray,
           ref: np.ndarray, r_person: np.ndarray, r_image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = probe @ ref.T
    same = p_person[:, None] == r_person[None, :]
    other_photo = p_image[:, None] != r_image[None, :]
    return s[same & other_photo], s[~same]


def tar_at(gen: np.ndarray, imp: np.ndarray, far: float) -> float:
    if len(gen) == 0 or len(imp) == 0:
        return float("nan")
    k = int(np.floor(far * len(imp)))
    thr = np.partition(imp, len(imp) - 1 - k)[len(imp) - 1 - k] if k < len(imp) else -np.inf
    return float((gen > thr).mean())


def eer(gen: np.ndarray, imp: np.ndarray) -> float:
    if len(gen) == 0 or len(imp) == 0:
        return float("nan")
    t = np.unique(np.concatenate([gen, imp]))
    g = np.sort(gen)
    i = np.sort(imp)
    frr = np.searchsorted(g, t, side="left") / len(g)          # genuine below t
    far = 1.0 - np.searchsorted(i, t, side="left") / len(i)    # impostors at or above t
    k = int(np.argmin(np.abs(frr - far)))
    return float((frr[k] + far[k]) / 2)


def summary(gen: np.ndarray, imp: np.ndarray) -> dict:
    return {"genuine": int(len(gen)), "impostor": int(len(imp)), "eer": eer(gen, imp),
            "tar_1e-3": tar_at(gen, imp, 1e-3), "tar_1e-4": tar_at(gen, imp, 1e-4)}
