"""The exact int8 reference (facegate_models.reference): QLinearConv expanded
to its float definition computes what integer arithmetic computes, on any
CPU, including weights large enough to saturate onnxruntime's AVX2 kernel."""
from __future__ import annotations

import tempfile
import unittest
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from facegate_models import reference


def qlinear_conv_model(w: np.ndarray, w_scale: np.ndarray, bias: np.ndarray, group: int = 1,
                       x_scale: float = 0.02, x_zp: int = 128, y_scale: float = 0.05, y_zp: int = 100,
                       shape=(1, 4, 5, 5), **attrs) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(np.array(x_scale, np.float32), "xs"),
             numpy_helper.from_array(np.array(x_zp, np.uint8), "xz"),
             numpy_helper.from_array(w.astype(np.int8), "w"),
             numpy_helper.from_array(w_scale.astype(np.float32), "ws"),
             numpy_helper.from_array(np.zeros(w_scale.shape, np.int8), "wz"),
             numpy_helper.from_array(np.array(y_scale, np.float32), "ys"),
             numpy_helper.from_array(np.array(y_zp, np.uint8), "yz"),
             numpy_helper.from_array(bias.astype(np.int32), "b")]
    node = helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz", "b"], ["y"],
                            group=group, **attrs)
    g = helper.make_graph([node], "q", [helper.make_tensor_value_info("x", TensorProto.UINT8, list(shape))],
                          [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def integer_1x1(x: np.ndarray, w: np.ndarray, w_scale: np.ndarray, bias: np.ndarray,
                x_scale=0.02, x_zp=128, y_scale=0.05, y_zp=100) -> np.ndarray:
    """QLinearConv's definition for a 1x1, group-1 convolution, in integers."""
    acc = np.einsum("nchw,oc->nohw", x.astype(np.int64) - x_zp, w[:, :, 0, 0].astype(np.int64))
    acc = acc + bias.reshape(1, -1, 1, 1)
    real = acc * (x_scale * w_scale.reshape(1, -1, 1, 1).astype(np.float64)) / y_scale
    return np.clip(np.rint(real) + y_zp, 0, 255).astype(np.uint8)


def run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    with tempfile.TemporaryDirectory() as t:
        p = Path(t) / "m.onnx"
        onnx.save(m, str(p))
        return reference.session(p, "int8").run(None, {"x": x})[0]


class ExactInt8(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(7)

    def test_large_weights_match_integer_arithmetic(self):
        # Full-range weights and inputs: u8*s8 pair sums reach 64,770, past
        # the 16-bit saturation of onnxruntime's non-VNNI AVX2 kernel.
        c, o = 64, 8
        w = self.rng.integers(-127, 128, size=(o, c, 1, 1))
        w[0] = 127
        x = self.rng.integers(0, 256, size=(2, c, 3, 3)).astype(np.uint8)
        x[0, :, 0, 0] = 255
        for w_scale in (np.array([0.001], np.float32), self.rng.uniform(5e-4, 2e-3, o).astype(np.float32)):
            bias = self.rng.integers(-5000, 5000, size=o)
            m = qlinear_conv_model(w, w_scale if w_scale.size > 1 else w_scale.reshape(()), bias,
                                   shape=x.shape, kernel_shape=[1, 1])
            got = run(m, x).astype(int)
            want = integer_1x1(x, w, w_scale, bias).astype(int)
            # Float accumulation may move a value by one step on a rounding edge.
            self.assertLessEqual(np.abs(got - want).max(), 1)
            self.assertGreater((got == want).mean(), 0.98)

    def test_attributes_survive_the_expansion(self):
        # A depthwise 3x3, stride 2, padded: the expanded graph has the same
        # output shape and values as onnxruntime's own kernel on small
        # weights (no saturation anywhere).
        c = 4
        w = self.rng.integers(-20, 21, size=(c, 1, 3, 3))
        bias = self.rng.integers(-100, 100, size=c)
        m = qlinear_conv_model(w, np.array(0.01, np.float32), bias, group=c, kernel_shape=[3, 3],
                               strides=[2, 2], pads=[1, 1, 1, 1])
        x = self.rng.integers(0, 256, size=(1, c, 5, 5)).astype(np.uint8)
        import onnxruntime as ort
        fused = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
        got = run(m, x)
        self.assertEqual(got.shape, (1, c, 3, 3))
        self.assertLessEqual(np.abs(got.astype(int) - fused.astype(int)).max(), 1)
        ops = [n.op_type for n in reference.expand_qlinear(m).graph.node]
        self.assertEqual(ops, ["DequantizeLinear", "Conv", "QuantizeLinear"])

    def test_unknown_qlinear_operators_are_refused(self):
        g = helper.make_graph([helper.make_node("QLinearMatMul", ["a", "as", "az", "b", "bs", "bz", "ys", "yz"],
                                                ["y"])], "q", [], [])
        with self.assertRaisesRegex(ValueError, "QLinearMatMul"):
            reference.expand_qlinear(helper.make_model(g))

    def test_fp32_models_are_left_to_onnxruntime(self):
        # No expansion and default optimisation for fp32: the session runs the
        # file as is.
        w = np.ones((1, 1, 1, 1), np.float32) * 2
        g = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "f",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])
        with tempfile.TemporaryDirectory() as t:
            p = Path(t) / "f.onnx"
            onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
            y = reference.session(p, "fp32").run(None, {"x": np.ones((1, 1, 2, 2), np.float32)})[0]
        np.testing.assert_array_equal(y, np.full((1, 1, 2, 2), 2, np.float32))


if __name__ == "__main__":
    unittest.main()
