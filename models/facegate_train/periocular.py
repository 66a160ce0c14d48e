"""Periocular crops, exactly as the device makes them (`src/face/periocular.rs`):
every pixel from `cut` inter-ocular distances below the eye line of the
alignment template down is set to grey 128. The row rule is the Rust one
(round half away from zero, clamped to the crop); `models/tests/test_periocular.py`
checks it against the values the Rust unit tests pin."""
from __future__ import annotations

import math

import numpy as np

GREY = 128


def cut_row(template, size: int, cut: float) -> int:
    (lx, ly), (rx, ry) = template[0], template[1]
    iod = math.hypot(rx - lx, ry - ly)
    y = (ly + ry) / 2.0 + cut * iod
    if not math.isfinite(y) or y <= 0:
        return 0
    return min(int(math.floor(y + 0.5)), size)


def grey_below(crops: np.ndarray, template, cut: float) -> np.ndarray:
    """A greyed copy of N×S×S×3 uint8 crops."""
    out = np.array(crops, copy=True)
    out[:, cut_row(template, out.shape[1], cut):] = GREY
    return out
