"""The anti-spoofing bundle's conversion steps (facegate_models.antispoof):
the TArgs patch TensorFlow needs to import a TF.js fused convolution, and
the face crop the Rust side repeats."""
from __future__ import annotations

import copy
import unittest

import numpy as np

from facegate_models import antispoof


def fused_conv_graph() -> tuple[dict, bytes, np.ndarray, np.ndarray]:
    """A one-layer TF.js graph model as the converter writes it: input ->
    _FusedConv2D (BiasAdd, Relu) without TArgs -> Identity."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((3, 3, 3, 2)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    nodes = [
        {"name": "x", "op": "Placeholder",
         "attr": {"dtype": {"type": "DT_FLOAT"},
                  "shape": {"shape": {"dim": [{"size": "-1"}, {"size": "8"}, {"size": "8"}, {"size": "3"}]}}}},
        {"name": "w", "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}, "value": {"tensor": {}}}},
        {"name": "b", "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}, "value": {"tensor": {}}}},
        {"name": "conv", "op": "_FusedConv2D", "input": ["x", "w", "b"],
         "attr": {"T": {"type": "DT_FLOAT"}, "num_args": {"i": "1"}, "strides": {"list": {"i": ["1", "1", "1", "1"]}},
                  "padding": {"s": "U0FNRQ=="}, "data_format": {"s": "TkhXQw=="},
                  "fused_ops": {"list": {"s": ["Qmlhc0FkZA==", "UmVsdQ=="]}}}},
        {"name": "y", "op": "Identity", "input": ["conv"], "attr": {"T": {"type": "DT_FLOAT"}}},
    ]
    doc = {"modelTopology": {"node": nodes},
           "signature": {"inputs": {"x": {"name": "x:0"}}, "outputs": {"y": {"name": "y:0"}}},
           "weightsManifest": [{"weights": [{"name": "w", "shape": list(w.shape), "dtype": "float32"},
                                            {"name": "b", "shape": list(b.shape), "dtype": "float32"}]}]}
    return doc, w.tobytes() + b.tobytes(), w, b


class PatchTest(unittest.TestCase):
    def test_adds_one_dtype_per_extra_argument_to_fused_convolutions_only(self):
        topo = {"node": [
            {"name": "c", "op": "_FusedConv2D", "attr": {"T": {"type": "DT_FLOAT"}, "num_args": {"i": "2"}}},
            {"name": "m", "op": "_FusedMatMul", "attr": {"T": {"type": "DT_FLOAT"}, "num_args": {"i": "1"}}},
            {"name": "d", "op": "_FusedConv2D", "attr": {"TArgs": {"list": {"type": ["DT_HALF"]}}}},
        ]}
        self.assertEqual(antispoof.patch_fused_targs(topo), 1)
        self.assertEqual(topo["node"][0]["attr"]["TArgs"], {"list": {"type": ["DT_FLOAT", "DT_FLOAT"]}})
        self.assertNotIn("TArgs", topo["node"][1]["attr"])
        self.assertEqual(topo["node"][2]["attr"]["TArgs"], {"list": {"type": ["DT_HALF"]}})
        self.assertEqual(antispoof.patch_fused_targs(topo), 0)

    def test_tensorflow_refuses_the_graph_without_it_and_computes_the_layer_with_it(self):
        doc, weights, w, b = fused_conv_graph()
        x = np.random.default_rng(2).random((2, 8, 8, 3)).astype(np.float32)
        with self.assertRaisesRegex(Exception, "TArgs"):
            antispoof.tensorflow_scores(copy.deepcopy(doc), weights, x)
        antispoof.patch_fused_targs(doc["modelTopology"])
        y = antispoof.tensorflow_scores(doc, weights, x)
        # The layer by its definition: SAME 3x3 convolution, bias, ReLU.
        xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        want = np.zeros((2, 8, 8, 2), np.float32)
        for i in range(8):
            for j in range(8):
                want[:, i, j, :] = np.einsum("nhwc,hwco->no", xp[:, i:i + 3, j:j + 3, :], w)
        want = np.maximum(want + b, 0)
        np.testing.assert_allclose(y, want, atol=1e-5)


class CropTest(unittest.TestCase):
    def test_square_box_is_centred_on_the_face_and_as_long_as_its_longer_side(self):
        self.assertEqual(antispoof.square_crop_box([10, 20, 30, 60], 1.0), (0.0, 20.0, 40.0))
        self.assertEqual(antispoof.square_crop_box([10, 20, 30, 60], 1.5), (-10.0, 10.0, 60.0))

    def test_crop_repeats_edge_pixels_outside_the_image(self):
        from PIL import Image
        a = np.zeros((4, 4, 3), np.uint8)
        a[:, 0] = 200  # the left column
        img = Image.fromarray(a)
        c = np.asarray(antispoof.crop(img, [-2, 0, 2, 4], 1.0))
        self.assertEqual(c.shape, (antispoof.SIZE, antispoof.SIZE, 3))
        # Crop columns -2..1: three copies of column 0 (200) and column 1 (0).
        self.assertGreater(c[:, : antispoof.SIZE // 2].mean(), 190)
        self.assertLess(c[:, -antispoof.SIZE // 8:].mean(), 10)


if __name__ == "__main__":
    unittest.main()
