"""Training crops from the Rust pipeline (`examples/export_crops.rs`,
`facegate::eval::crops`): detection, alignment and procedural masks exactly
as the device makes them. Cached by key in the crops folder."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Crops:
    key: str
    size: int
    pixels: np.ndarray      # memmap, rows x size x size x 3, uint8 RGB
    image: list[str]        # per row
    variant: list[int]      # per row: 0 unmasked, 1.. masked
    style: list[str]        # per row
    failures: int
    seconds: float

    def __len__(self) -> int:
        return len(self.image)


def load(index: Path, data: Path, size: int) -> Crops:
    image, variant, style, failures = [], [], [], 0
    for line in index.read_text().splitlines():
        row, img, k, st, _seed = line.split("\t")
        if row == "-":
            failures += 1
            continue
        if int(row) != len(image):
            raise ValueError(f"{index}: row {row} out of order")
        image.append(img)
        variant.append(int(k))
        style.append(st)
    n = len(image)
    expect = n * size * size * 3
    if data.stat().st_size != expect:
        raise ValueError(f"{data}: {data.stat().st_size} bytes, expected {expect}")
    px = np.memmap(data, dtype=np.uint8, mode="r", shape=(n, size, size, 3)) if n else \
        np.zeros((0, size, size, 3), np.uint8)
    key = data.name.removeprefix("crops-").removesuffix(".u8")
    meta = data.with_suffix(".json")
    seconds = json.loads(meta.read_text()).get("seconds", 0.0) if meta.exists() else 0.0
    return Crops(key, size, px, image, variant, style, failures, seconds)


def exporter(repo: Path) -> list[str]:
    """The command that runs the Rust exporter (built on first use;
    $FACEGATE_EXPORT_CROPS names a prebuilt one)."""
    if os.environ.get("FACEGATE_EXPORT_CROPS"):
        return [os.environ["FACEGATE_EXPORT_CROPS"]]
    target = Path(os.environ.get("CARGO_TARGET_DIR", repo / "target"))
    exe = target / "release" / "examples" / "export_crops"
    subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "export_crops"],
                   cwd=repo, check=True)
    return [str(exe)]


def export(repo: Path, lfw: Path, images: list[str], out: Path, masks: int, seed: int,
           threads: int, embedder: str, models: Path | None) -> Crops:
    out.mkdir(parents=True, exist_ok=True)
    lst = out / f"images-{hashlib.sha256(chr(10).join(images).encode()).hexdigest()[:12]}.txt"
    lst.write_text("\n".join(images) + "\n")
    cmd = exporter(repo) + ["--lfw", str(lfw), "--images", str(lst), "--out", str(out),
                            "--masks", str(masks), "--seed", str(seed), "--threads", str(threads),
                            "--embedder", embedder]
    if models:
        cmd += ["--models", str(models)]
    r = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    meta = json.loads(Path(summary["data"]).with_suffix(".json").read_text())
    return load(Path(summary["index"]), Path(summary["data"]), int(meta["size"]))
