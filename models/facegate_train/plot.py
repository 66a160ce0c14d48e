"""Loss curves as PNG with Pillow only (no matplotlib in the models venv)."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


def _finite(v) -> bool:
    """A number that is not NaN (an epoch without a train pass has no "train" entry)."""
    return isinstance(v, (int, float)) and v == v


def loss_curve(history: list[dict], path: Path, title: str) -> None:
    W, H, L, R, T, B = 640, 400, 60, 20, 30, 40
    im = Image.new("RGB", (W, H), "white")
    dr = ImageDraw.Draw(im)
    font = ImageFont.load_default()
    series = [("train", (31, 119, 180)), ("val", (214, 39, 40))]
    vals = [h[k] for h in history for k, _ in series if _finite(h.get(k))]
    if not vals:
        im.save(path)
        return
    lo, hi = min(vals), max(vals)
    if hi - lo < 1e-9:
        hi = lo + 1e-3
    n = max(h["epoch"] for h in history) or 1
    x = lambda e: L + (W - L - R) * e / n  # noqa: E731
    y = lambda v: T + (H - T - B) * (1 - (v - lo) / (hi - lo))  # noqa: E731
    dr.rectangle([L, T, W - R, H - B], outline="black")
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        dr.line([L - 4, y(v), L, y(v)], fill="black")
        dr.text((4, y(v) - 6), f"{v:.3f}", fill="black", font=font)
    for e in range(0, n + 1, max(1, n // 10)):
        dr.line([x(e), H - B, x(e), H - B + 4], fill="black")
        dr.text((x(e) - 6, H - B + 6), str(e), fill="black", font=font)
    dr.text((L, 8), title, fill="black", font=font)
    dr.text((W // 2 - 20, H - 16), "epoch", fill="black", font=font)
    for i, (k, c) in enumerate(series):
        pts = [(x(h["epoch"]), y(h[k])) for h in history if _finite(h.get(k))]
        if len(pts) > 1:
            dr.line(pts, fill=c, width=2)
        for px, py in pts:  # markers: a series with a single finite epoch still shows
            dr.ellipse([px - 2, py - 2, px + 2, py + 2], fill=c)
        ly = T + 14 + 14 * i
        dr.line([W - R - 120, ly, W - R - 104, ly], fill=c, width=2)  # legend swatch, exact colour
        dr.text((W - R - 98, ly - 6), f"{k} loss", fill=c, font=font)
    im.save(path)
