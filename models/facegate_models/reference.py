"""onnxruntime sessions that compute a bundle's function the same way on
every CPU, for the reference embeddings the Rust parity tests compare tract
with, and for the build's int8-vs-fp32 checks.

onnxruntime's fused int8 kernels are not exact everywhere: on x86-64 without
VNNI (AVX2 only, e.g. AMD Zen 3) its u8 x s8 products go through
`vpmaddubsw`, whose 16-bit pair sums saturate, and the error depends on the
weights (measured on Zen 3: facenet-int8-qdq-pc 0.83 worst cosine to fp32
fused, 0.998 exact). A reference that moves with the build machine's CPU
cannot tell a tract bug from an onnxruntime approximation, so int8 models
are run here as the ONNX operators define them:

- graph optimisations off, so QDQ models run DequantizeLinear -> float op ->
  QuantizeLinear (nothing is fused into an integer kernel);
- QLinearConv expanded to DequantizeLinear(x) -> float Conv (weights and
  int32 bias dequantised into float initialisers) -> QuantizeLinear(y), the
  operator's definition; float accumulation may move a requantised value by
  one step where the integer sum lands on a rounding edge.

fp32 models keep onnxruntime's default optimisations (exact enough: cosine
1.0000000 to tract on both kinds of CPU).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

# The operators this expansion knows; a quantised model holding another
# QLinear* operator fails loudly instead of running fused.
EXPANDED = {"QLinearConv"}


def _array(inits: dict, name: str) -> np.ndarray:
    from onnx import numpy_helper
    if name not in inits:
        raise ValueError(f"QLinearConv input {name!r} is not an initialiser: cannot expand it")
    return numpy_helper.to_array(inits[name])


def expand_qlinear(model):
    """A copy of `model` with each QLinearConv replaced by its float
    definition (DequantizeLinear -> Conv -> QuantizeLinear). Scales, zero
    points, weights and bias must be initialisers (as the static quantiser
    writes them)."""
    import onnx
    from onnx import helper, numpy_helper
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    others = sorted({n.op_type for n in g.node if n.op_type.startswith("QLinear")} - EXPANDED)
    if others:
        raise ValueError(f"cannot expand {', '.join(others)}: only {', '.join(sorted(EXPANDED))}")
    inits = {t.name: t for t in g.initializer}
    nodes, new_inits = [], []
    for k, n in enumerate(g.node):
        if n.op_type != "QLinearConv":
            nodes.append(n)
            continue
        ins = list(n.input) + [""] * (9 - len(n.input))
        x, xs, xz, w, ws, wz, ys, yz, b = ins[:9]
        x_scale = _array(inits, xs).astype(np.float32)
        w_q = _array(inits, w).astype(np.int64)
        w_scale = _array(inits, ws).astype(np.float32)
        w_zp = _array(inits, wz).astype(np.int64)
        per_channel = w_scale.ndim == 1 and w_scale.size > 1
        shape = (-1,) + (1,) * (w_q.ndim - 1) if per_channel else ()
        w_f = ((w_q - w_zp.reshape(shape)) * w_scale.reshape(shape).astype(np.float64)).astype(np.float32)
        tag = f"_fg_expanded_{k}"
        dq, conv = f"{tag}_x", f"{tag}_y"
        new_inits.append(numpy_helper.from_array(w_f, f"{tag}_w"))
        conv_in = [dq, f"{tag}_w"]
        if b:
            bias = _array(inits, b).astype(np.float64) * (x_scale.astype(np.float64) * w_scale.astype(np.float64))
            new_inits.append(numpy_helper.from_array(bias.astype(np.float32).reshape(-1), f"{tag}_b"))
            conv_in.append(f"{tag}_b")
        nodes.append(helper.make_node("DequantizeLinear", [x, xs, xz], [dq], name=f"{tag}_dq"))
        nodes.append(helper.make_node("Conv", conv_in, [conv], name=f"{tag}_conv",
                                      **{a.name: helper.get_attribute_value(a) for a in n.attribute}))
        nodes.append(helper.make_node("QuantizeLinear", [conv, ys, yz], list(n.output), name=f"{tag}_q"))
    del g.node[:]
    g.node.extend(nodes)
    used = {i for n in nodes for i in n.input}
    kept = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(kept + new_inits)
    return m


def session(model_path: Path, precision: str):
    """An onnxruntime session computing the model exactly as defined
    (see the module's doc): `precision` is the manifest's ("fp32", "int8")."""
    import onnx
    import onnxruntime as ort
    if precision == "fp32":
        return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    m = expand_qlinear(onnx.load(str(model_path)))
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


def fused_session(model_path: Path):
    """onnxruntime as a deployment would run it (all optimisations): its int8
    result on this CPU, reported beside the exact one."""
    import onnxruntime as ort
    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
