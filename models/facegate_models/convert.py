"""FaceNet: frozen TensorFlow graph -> ONNX with a dynamic batch.  RetinaFace: bytes -> ONNX."""
from __future__ import annotations

import ast
import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

FACENET_INPUT = "input:0"
FACENET_OUTPUT = "embeddings:0"
OPSET = 17


def facenet_to_onnx(graph_pb: Path, out: Path, work: Path) -> None:
    raw = work / "facenet_raw.onnx"
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--graphdef", str(graph_pb),
           "--inputs", FACENET_INPUT, "--outputs", FACENET_OUTPUT,
           "--opset", str(OPSET), "--output", str(raw)]
    print("[convert] tf2onnx (about 30 s)", flush=True)
    log = work / "tf2onnx.log"
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError(f"tf2onnx failed, see {log}")
    m = onnx.load(str(raw))
    make_batch_dynamic(m)
    canonicalise(m)
    onnx.checker.check_model(m)
    onnx.save(m, str(out))


def canonicalise(m: onnx.ModelProto) -> None:
    """Make the converted graph byte-reproducible. tf2onnx merges identical
    constants keeping whichever name it meets first (which varies from run
    to run even with a fixed PYTHONHASHSEED) and records the input's path in
    doc_string. Name every initializer by its content (which also merges
    duplicates), sort them, and fix the doc string, so that the same inputs
    give the same sha256 on every machine -- the calibrated thresholds are
    keyed by that sha256."""
    g = m.graph
    rename: dict[str, str] = {}
    kept: dict[str, onnx.TensorProto] = {}
    for init in g.initializer:
        t = onnx.TensorProto()
        t.CopyFrom(init)
        t.name = ""
        new = "const_" + hashlib.sha256(t.SerializeToString(deterministic=True)).hexdigest()[:20]
        rename[init.name] = new
        if new not in kept:
            t.name = new
            kept[new] = t
    del g.initializer[:]
    g.initializer.extend(kept[k] for k in sorted(kept))
    for n in g.node:
        for k, x in enumerate(n.input):
            if x in rename:
                n.input[k] = rename[x]
    g.doc_string = "FaceNet 20180408-102900 converted by tf2onnx (facegate models/build)"


def make_batch_dynamic(m: onnx.ModelProto) -> None:
    """The TF graph fixes batch 1 in its inputs/outputs and in the Reshape
    constants of the head ([1,-1], [1,512,1,1], [1,512]); make it symbolic."""
    g = m.graph
    for vi in list(g.input) + list(g.output):
        vi.type.tensor_type.shape.dim[0].ClearField("dim_value")
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    inferred = onnx.shape_inference.infer_shapes(m).graph.value_info
    known = {vi.name: vi for vi in inferred}
    inits = {i.name: i for i in g.initializer}
    patched = 0
    for n in g.node:
        if n.op_type != "Reshape" or n.input[1] not in inits:
            continue
        init = inits[n.input[1]]
        shape = numpy_helper.to_array(init).copy()
        if shape[0] != 1:
            continue
        if -1 in shape[1:]:
            # [1, -1] flattens the 1x1x1792 pool: spell the feature size out.
            src = known.get(n.input[0])
            dims = [d.dim_value for d in src.type.tensor_type.shape.dim[1:]] if src else []
            if not dims or 0 in dims:
                raise RuntimeError(f"cannot infer the flattened size at {n.name}")
            shape = np.array([-1, int(np.prod(dims))], dtype=shape.dtype)
        else:
            shape[0] = -1
        init.CopyFrom(numpy_helper.from_array(shape, init.name))
        patched += 1
    if patched != 3:
        raise RuntimeError(f"expected to patch 3 Reshape constants, patched {patched}")
    # value_info still carries the batch-1 shapes; drop it (it is only a hint).
    del g.value_info[:]


def retinaface_bytes(weights_py: bytes) -> bytes:
    """weights.py holds `WEIGHTS = b'...'`; read the literal without executing the file."""
    tree = ast.parse(weights_py)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "WEIGHTS" for t in node.targets):
            value = ast.literal_eval(node.value)
            if isinstance(value, bytes):
                return value
    raise RuntimeError("no WEIGHTS bytes literal in retinaface/weights.py")


def retinaface_to_onnx(weights_py: bytes, out: Path) -> None:
    m = onnx.load_from_string(retinaface_bytes(weights_py))
    onnx.checker.check_model(m)
    onnx.save(m, str(out))
