"""A backbone = an embedder bundle (model.onnx + manifest.toml) read from a
models folder. Nothing here is specific to FaceNet: input name, layout,
normalisation, size and output come from the manifest, so MobileFaceNet's
bundle (issue 14 §1) is a different `--backbone`, not different code."""
from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np



@dataclass
class Backbone:
    name: str
    dir: Path
    manifest: dict

    @classmethod
    def open(cls, models: Path, name: str) -> "Backbone":
        d = models / "bundles" / name if (models / "bundles" / name).is_dir() else models / name
        m = tomllib.loads((d / "manifest.toml").read_text())
        if m.get("kind") != "embedder":
            raise ValueError(f"{name}: not an embedder bundle")
        return cls(name, d, m)

    @property
    def model(self) -> Path:
        return self.dir / self.manifest["model"]["file"]

    @property
    def sha256(self) -> str:
        return self.manifest["model"]["sha256"]

    @property
    def size(self) -> int:
        return int(self.manifest["align"]["size"])

    @property
    def dim(self) -> int:
        return int(self.manifest["output"]["dim"])

    @property
    def input_name(self) -> str:
        return self.manifest["input"]["name"]

    @property
    def output_name(self) -> str:
        return self.manifest["output"]["name"]

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 N x S x S x 3 RGB crops -> the model's input tensor."""
        i = self.manifest["input"]
        x = rgb.astype(np.float32)
        if i.get("colour", "RGB") == "BGR":
            x = x[..., ::-1]
        x = (x - np.asarray(i["mean"], np.float32)) / np.asarray(i["std"], np.float32)
        if i.get("layout", "NHWC") == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def session(self, threads: int, model: Path | None = None):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        return ort.InferenceSession(str(model or self.model), so, providers=["CPUExecutionProvider"])


@dataclass
class Trunk:
    """The frozen part of a backbone cut before its trainable tail."""
    model: Path           # ONNX: input -> `output` (NCHW)
    output: str
    shape: tuple          # H, W, C of the cached (NHWC) activations
    key: str              # cache key: trunk sha + transform
    transform: object     # uint8 crops -> uint8 crops


def embed_cached(bb: Backbone, pixels: np.ndarray, crops_key: str, cache: Path, threads: int,
                 batch: int = 32, log=print, trunk: "Trunk | None" = None) -> tuple[np.ndarray, float]:
    """Frozen-trunk activations of every crop, cached as
    `act-<trunk key>-<crops key>.npy`; resumable (a `.done` file counts the
    rows written). Without `trunk` the trunk is the whole backbone (its
    L2-normalised embedding, for the embedding adapter); with one, its model
    cut before the trainable tail, on crops transformed by `trunk.transform`
    (e.g. greyed below the eyes), stored NHWC. Returns (N x ... float32,
    seconds spent now)."""
    cache.mkdir(parents=True, exist_ok=True)
    key = trunk.key if trunk else bb.sha256[:16]
    path = cache / f"act-{key}-{crops_key}.npy"
    done_f = path.with_suffix(".done")
    n = pixels.shape[0]
    if path.exists() and not done_f.exists():
        return np.load(path, mmap_mode="r"), 0.0
    part = path.with_suffix(".part.npy")
    start = int(done_f.read_text()) if done_f.exists() and part.exists() else 0
    shape = (n, *trunk.shape) if trunk else (n, bb.dim)
    out = np.lib.format.open_memmap(part, mode="r+" if start else "w+", dtype=np.float32, shape=shape)
    s = bb.session(threads, trunk.model if trunk else None)
    name = trunk.output if trunk else bb.output_name
    t0 = time.time()
    for i in range(start, n, batch):
        px = np.asarray(pixels[i:i + batch])
        x = bb.preprocess(trunk.transform(px) if trunk else px)
        y = s.run([name], {bb.input_name: x})[0]
        out[i:i + len(x)] = y.transpose(0, 2, 3, 1) if trunk else y
        if (i // batch) % 20 == 0 or i + batch >= n:
            out.flush()
            done_f.write_text(str(min(n, i + batch)))
            el = time.time() - t0
            k = min(n, i + batch) - start
            log(f"activations: {min(n, i + batch)} / {n} ({el:.0f} s, ~{el / k * (n - start - k):.0f} s left)")
    out.flush()
    del out
    part.rename(path)
    done_f.unlink(missing_ok=True)
    return np.load(path, mmap_mode="r"), time.time() - t0
