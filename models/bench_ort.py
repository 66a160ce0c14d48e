"""onnxruntime side of `facegate bench embed`: one configuration, one JSON line.

Run by `facegate bench embed` with the pipeline's venv Python, on the same ONNX
file and the same real aligned crops as the tract side.
"""
import argparse
import json
import resource
import statistics
import time
import tomllib
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--crops", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--faces", type=int, default=24)
    a = ap.parse_args()
    m = tomllib.loads((a.bundle / "manifest.toml").read_text())
    t0 = time.perf_counter()
    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    s = ort.InferenceSession(str(a.bundle / m["model"]["file"]), so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t0) * 1e3
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # The reference folder holds crops of every embedder geometry: take the
    # ones of this model's size (as the tract side does).
    size = m["align"]["size"]
    crops = [c for c in (np.asarray(Image.open(f).convert("RGB")) for f in sorted(a.crops.glob("*.png")))
             if c.shape[:2] == (size, size)]
    if not crops:
        raise SystemExit(f"no {size}x{size} crops in {a.crops}")
    mean = np.array(m["input"]["mean"], np.float32)
    std = np.array(m["input"]["std"], np.float32)
    x = np.stack([crops[i % len(crops)] for i in range(a.batch)]).astype(np.float32)
    x = (x - mean) / std
    if m["input"]["layout"] == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    x = np.ascontiguousarray(x)
    name = m["input"]["name"]
    runs = max(1, -(-a.faces // a.batch))
    s.run(None, {name: x})
    times = []
    cpu0 = time.process_time()
    for _ in range(runs):
        t = time.perf_counter()
        s.run(None, {name: x})
        times.append(time.perf_counter() - t)
    print(json.dumps({
        "bundle": m["name"], "engine": "onnxruntime", "threads": a.threads, "batch": a.batch,
        "ms_per_face": statistics.median(times) * 1e3 / a.batch,
        "cpu_ms_per_face": (time.process_time() - cpu0) * 1e3 / (runs * a.batch), "load_ms": load_ms, "rss_mib": rss_mib,
    }))


if __name__ == "__main__":
    main()
