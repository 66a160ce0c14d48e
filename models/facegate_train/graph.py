"""Graph surgery: the trained part appended to the frozen backbone, one ONNX.

The backbone's output (an L2-normalised embedding) is renamed and fed to the
embedding-unmasking adapter

    y = normalise(e + W2 · leaky_relu(W1 · e + b1, 0.2) + b2)

whose result takes the backbone's output name, so the bundle's manifest (input,
output, dimension, alignment) is unchanged. The adapter's node names start
with ``embeddings_eum/`` so that ``facegate_models.quantize.float_tail`` keeps
them (like the backbone's own L2 normalisation) in float when quantising.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PREFIX = "embeddings_eum/"


def adapter_forward(e: np.ndarray, w: dict, alpha: float = 0.2) -> np.ndarray:
    """numpy reference of the appended graph (also what training computes)."""
    h = e @ w["W1"] + w["b1"]
    h = np.where(h > 0, h, alpha * h)
    y = e + h @ w["W2"] + w["b2"]
    return y / np.sqrt(np.maximum((y * y).sum(-1, keepdims=True), 1e-10))


def append_adapter(model: onnx.ModelProto, output: str, w: dict, alpha: float = 0.2) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inner = PREFIX + "pretrained:0"
    producers = [n for n in g.node if output in n.output]
    if len(producers) != 1:
        raise ValueError(f"{output}: {len(producers)} producers")
    for n in producers:
        n.output[:] = [inner if o == output else o for o in n.output]
    for n in g.node:  # any other consumer of the old output reads the renamed tensor
        n.input[:] = [inner if i == output else i for i in n.input]

    def const(name, arr):
        g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(arr, np.float32), PREFIX + name))
        return PREFIX + name

    p = lambda s: PREFIX + s  # noqa: E731
    axes = PREFIX + "axes"
    g.initializer.append(numpy_helper.from_array(np.array([1], np.int64), axes))
    nodes = [
        helper.make_node("MatMul", [inner, const("W1", w["W1"])], [p("h0:0")], name=p("MatMul1")),
        helper.make_node("Add", [p("h0:0"), const("b1", w["b1"])], [p("h1:0")], name=p("Add1")),
        helper.make_node("LeakyRelu", [p("h1:0")], [p("h2:0")], name=p("LeakyRelu"), alpha=alpha),
        helper.make_node("MatMul", [p("h2:0"), const("W2", w["W2"])], [p("d0:0")], name=p("MatMul2")),
        helper.make_node("Add", [p("d0:0"), const("b2", w["b2"])], [p("d1:0")], name=p("Add2")),
        helper.make_node("Add", [inner, p("d1:0")], [p("y:0")], name=p("Residual")),
        helper.make_node("Mul", [p("y:0"), p("y:0")], [p("sq:0")], name=p("Square")),
        helper.make_node("ReduceSum", [p("sq:0"), axes], [p("sum:0")], name=p("Sum"), keepdims=1),
        helper.make_node("Max", [p("sum:0"), const("eps", np.array(1e-10, np.float32))], [p("max:0")],
                         name=p("Maximum")),
        helper.make_node("Sqrt", [p("max:0")], [p("norm:0")], name=p("Sqrt")),
        helper.make_node("Div", [p("y:0"), p("norm:0")], [output], name=p("Normalise")),
    ]
    g.node.extend(nodes)
    onnx.checker.check_model(m)
    return m


def identity_weights(dim: int, hidden: int | None = None) -> dict:
    hidden = hidden or dim
    return {"W1": np.zeros((dim, hidden), np.float32), "b1": np.zeros(hidden, np.float32),
            "W2": np.zeros((hidden, dim), np.float32), "b2": np.zeros(dim, np.float32)}


def tiny_backbone(dim: int = 8, size: int = 4, output: str = "embeddings:0") -> onnx.ModelProto:
    """A stand-in backbone for tests: NHWC uint8-range image -> flatten ->
    MatMul -> L2 normalise, with the same I/O conventions as a real bundle."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal((size * size * 3, dim)).astype(np.float32)
    g = helper.make_graph(
        [helper.make_node("Reshape", ["input:0", "shape"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["e"]),
         helper.make_node("Mul", ["e", "e"], ["sq"]),
         helper.make_node("ReduceSum", ["sq", "ax"], ["s"], keepdims=1),
         helper.make_node("Sqrt", ["s"], ["n"]),
         helper.make_node("Div", ["e", "n"], [output])],
        "tiny",
        [helper.make_tensor_value_info("input:0", TensorProto.FLOAT, ["N", size, size, 3])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", dim])],
        [numpy_helper.from_array(np.array([-1, size * size * 3], np.int64), "shape"),
         numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([1], np.int64), "ax")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
