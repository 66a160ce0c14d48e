"""Unit tests of the MobileFaceNet pipeline logic on tiny synthetic graphs
(no download, no TensorFlow): run by scripts/test with the models venv,
`cd models && python -m unittest discover -s tests`."""
from __future__ import annotations

import unittest

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from facegate_models import align, build, convert, mobilefacenet, quantize


def head_graph(batch: int = 2, shapes=((2, 8, 1, 1), (2, 4))) -> onnx.ModelProto:
    """input [batch,8] -> Reshape [b,8,1,1] -> Conv 1x1 (8->4) -> Reshape [b,4]
    -> output `embeddings`, like MobileFaceNet's head."""
    w = np.arange(32, dtype=np.float32).reshape(4, 8, 1, 1) / 32 - 0.5
    inits = [numpy_helper.from_array(np.array(shapes[0], np.int64), "s1"),
             numpy_helper.from_array(np.array(shapes[1], np.int64), "s2"),
             numpy_helper.from_array(w, "w")]
    nodes = [helper.make_node("Reshape", ["input", "s1"], ["r1"], name="r1"),
             helper.make_node("Conv", ["r1", "w"], ["c"], name="conv"),
             helper.make_node("Reshape", ["c", "s2"], ["embeddings"], name="r2")]
    g = helper.make_graph(nodes, "head", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 8])],
                          [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, [batch, 4])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"input": x})[0]


class BatchAndNorm(unittest.TestCase):
    def test_batch_becomes_dynamic_and_output_unit_length(self):
        m = head_graph()
        found = convert.patch_batch_constants(m, 2, [[2, 8, 1, 1], [2, 4]])
        self.assertEqual(found, [[2, 4], [2, 8, 1, 1]])
        convert.set_batch_dim(m)
        raw = run(m, np.ones((3, 8), np.float32))
        convert.append_l2_normalise(m, "embeddings")
        onnx.checker.check_model(m)
        x = np.random.default_rng(0).normal(size=(5, 8)).astype(np.float32)
        before = head_graph()
        convert.patch_batch_constants(before, 2, [[2, 8, 1, 1], [2, 4]])
        convert.set_batch_dim(before)
        e, r = run(m, x), run(before, x)
        self.assertEqual(e.shape, (5, 4))
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-6)
        np.testing.assert_allclose(e, r / np.linalg.norm(r, axis=1, keepdims=True), atol=1e-6)
        self.assertEqual(raw.shape, (3, 4))
        self.assertEqual([o.name for o in m.graph.output], ["embeddings"])

    def test_zero_embedding_does_not_divide_by_zero(self):
        m = head_graph()
        convert.patch_batch_constants(m, 2, [[2, 8, 1, 1], [2, 4]])
        convert.set_batch_dim(m)
        convert.append_l2_normalise(m, "embeddings")
        self.assertTrue(np.isfinite(run(m, np.zeros((1, 8), np.float32))).all())

    def test_unexpected_constants_are_refused(self):
        with self.assertRaises(RuntimeError):
            convert.patch_batch_constants(head_graph(), 2, [[2, 512, 1, 1], [2, 192]])
        with self.assertRaises(RuntimeError):  # batch 1 model: nothing to patch
            convert.patch_batch_constants(head_graph(1, ((1, 8, 1, 1), (1, 4))), 2, [[2, 8, 1, 1], [2, 4]])

    def test_canonicalise_is_independent_of_initializer_names(self):
        a, b = head_graph(), head_graph()
        for i in b.graph.initializer:
            old = i.name
            i.name = "renamed_" + old
            for n in b.graph.node:
                for k, x in enumerate(n.input):
                    if x == old:
                        n.input[k] = i.name
        convert.canonicalise(a, "doc")
        convert.canonicalise(b, "doc")
        self.assertEqual(a.SerializeToString(deterministic=True), b.SerializeToString(deterministic=True))


class FloatNodes(unittest.TestCase):
    def test_first_and_depthwise_convs_and_l2_tail_stay_float(self):
        nodes = [helper.make_node("Conv", ["x", "w0"], ["a"], name="first"),
                 helper.make_node("Conv", ["a", "w1"], ["b"], name="pointwise"),
                 helper.make_node("Conv", ["b", "w2"], ["c"], name="depthwise", group=8),
                 helper.make_node("Conv", ["c", "w3"], ["d"], name="pointwise2", group=1),
                 helper.make_node("Relu", ["d"], ["e"], name="l2norm/Div")]
        g = helper.make_graph(nodes, "g", [], [])
        self.assertEqual(quantize.mobilefacenet_float_nodes(helper.make_model(g)),
                         ["first", "depthwise", "l2norm/Div"])

    def test_variants_are_named_like_the_bundles(self):
        self.assertEqual([v.name for v in quantize.MFN_VARIANTS],
                         ["mobilefacenet-int8-qdq-pc", "mobilefacenet-int8-qlinear"])


class Geometry(unittest.TestCase):
    def test_template_112_is_insightface_and_crops_are_112(self):
        np.testing.assert_array_equal(align.TEMPLATE_112, align.ARCFACE_112)
        rgb = np.random.default_rng(1).integers(0, 255, (200, 180, 3), dtype=np.uint8)
        # Landmarks already at the template: the crop is the image's top-left 112x112.
        crop = align.align(rgb, align.TEMPLATE_112, align.TEMPLATE_112, align.CROP_112)
        self.assertEqual(crop.shape, (112, 112, 3))
        np.testing.assert_array_equal(crop, rgb[:112, :112])

    def test_manifest_sections_agree_with_the_input_shape(self):
        i, a = mobilefacenet.input_section(), mobilefacenet.align_section()
        self.assertEqual(i["shape"], [-1, a["size"], a["size"], 3])
        self.assertEqual((i["mean"], i["std"]), ([127.5] * 3, [128.0] * 3))
        self.assertEqual(len(a["template"]), 5)

    def test_crop_names_and_sets(self):
        self.assertEqual(build.crop_name("skimage", "astronaut", 0, 160), "skimage_astronaut_0.png")
        self.assertEqual(build.crop_name("skimage", "astronaut", 0, 112), "skimage_astronaut_0_112.png")
        recs = [{"faces": [{"crops": {"160": "a.png", "112": "a_112.png"}}]},
                {"faces": []},
                {"faces": [{"crops": {"160": "b.png", "112": "b_112.png"}}]}]
        self.assertEqual(build.crop_sets(recs), {160: ["a.png", "b.png"], 112: ["a_112.png", "b_112.png"]})

    def test_fp32_counterpart(self):
        self.assertEqual(build.fp32_counterpart("facenet-int8-qlinear"), "facenet-fp32")
        self.assertEqual(build.fp32_counterpart("mobilefacenet-int8-qdq-pc"), "mobilefacenet-fp32")
        self.assertEqual(build.fp32_counterpart("mobilefacenet-fp32"), "mobilefacenet-fp32")


class Agreement(unittest.TestCase):
    def test_compare_normalises_and_finds_the_worst_row(self):
        a = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
        b = np.array([[3.0, 0.0], [1.0, 1.0]], np.float32)
        r = mobilefacenet.compare(a, b)
        self.assertAlmostEqual(r["min_cos"], 2 ** -0.5, places=6)
        self.assertAlmostEqual(r["mean_cos"], (1 + 2 ** -0.5) / 2, places=6)

    def test_check_refuses_a_bad_conversion_or_int8(self):
        good = {"mobilefacenet-fp32": {"vs_tflite": {"min_cos": 0.99999}, "vs_fp32_onnxruntime": {"min_cos": 1.0}},
                "mobilefacenet-int8-qlinear": {"vs_tflite": {"min_cos": 0.99}, "vs_fp32_onnxruntime": {"min_cos": 0.99}}}
        mobilefacenet.check(good)
        bad = {k: {kk: dict(vv) for kk, vv in v.items()} for k, v in good.items()}
        bad["mobilefacenet-fp32"]["vs_tflite"]["min_cos"] = 0.999
        with self.assertRaises(RuntimeError):
            mobilefacenet.check(bad)
        bad = {k: {kk: dict(vv) for kk, vv in v.items()} for k, v in good.items()}
        bad["mobilefacenet-int8-qlinear"]["vs_fp32_onnxruntime"]["min_cos"] = 0.9
        with self.assertRaises(RuntimeError):
            mobilefacenet.check(bad)


if __name__ == "__main__":
    unittest.main()
