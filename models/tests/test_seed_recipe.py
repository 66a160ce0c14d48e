"""facegate_train.seed_recipe (method (a)): triplets, the last layer located
and replaced in a FaceNet-shaped graph, a tiny training whose loss falls."""
import sys
import unittest
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facegate_train import seed_recipe as sr  # noqa: E402

C, D = 6, 4  # pooled features, embedding


def tiny_facenet(seed=0) -> onnx.ModelProto:
    """input (N, C, 2, 2) -> AvgPool -> Flatten -> Bottleneck MatMul ->
    BatchNorm -> L2 normalisation, with FaceNet's tensor and node names."""
    rng = np.random.default_rng(seed)
    init = {
        "flat_shape": np.array([-1, C], np.int64), "bn_in": np.array([-1, D, 1, 1], np.int64),
        "bn_out": np.array([-1, D], np.int64), "W": rng.standard_normal((C, D)).astype(np.float32),
        "gamma": np.ones(D, np.float32), "beta": rng.standard_normal(D).astype(np.float32),
        "mean": rng.standard_normal(D).astype(np.float32),
        "var": rng.uniform(0.5, 2, D).astype(np.float32),
        "axes": np.array([1], np.int64), "eps": np.array(1e-10, np.float32),
    }
    nodes = [
        helper.make_node("AveragePool", ["input:0"], [sr.POOL], kernel_shape=[2, 2],
                         name="InceptionResnetV1/Logits/AvgPool_1a_8x8/AvgPool"),
        helper.make_node("Reshape", [sr.POOL, "flat_shape"], [sr.FLAT], name="InceptionResnetV1/Logits/Flatten"),
        helper.make_node("MatMul", [sr.FLAT, "W"], ["mm:0"], name=sr.BOTTLENECK),
        helper.make_node("Reshape", ["mm:0", "bn_in"], ["bn_in:0"], name="InceptionResnetV1/Bottleneck/BatchNorm/r"),
        helper.make_node("BatchNormalization", ["bn_in:0", "gamma", "beta", "mean", "var"], ["bn:0"],
                         name="InceptionResnetV1/Bottleneck/BatchNorm/cond/FusedBatchNorm_1", epsilon=1e-3),
        helper.make_node("Reshape", ["bn:0", "bn_out"], [sr.BN_OUT], name="InceptionResnetV1/Bottleneck/BatchNorm/Reshape_1"),
        helper.make_node("Mul", [sr.BN_OUT, sr.BN_OUT], ["sq:0"], name="embeddings/Square"),
        helper.make_node("ReduceSum", ["sq:0", "axes"], ["sum:0"], name="embeddings/Sum", keepdims=1),
        helper.make_node("Max", ["sum:0", "eps"], ["max:0"], name="embeddings/Maximum"),
        helper.make_node("Sqrt", ["max:0"], ["norm:0"], name="embeddings/Sqrt"),
        helper.make_node("Div", [sr.BN_OUT, "norm:0"], ["embeddings:0"], name="embeddings"),
    ]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input:0", TensorProto.FLOAT, [None, C, 2, 2])],
                          [helper.make_tensor_value_info("embeddings:0", TensorProto.FLOAT, [None, D])],
                          [numpy_helper.from_array(v, k) for k, v in init.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def run(model, x):
    import onnxruntime as ort
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"input:0": x})[0]


class Graph(unittest.TestCase):
    def test_the_last_layer_reference_matches_the_graph(self):
        m = tiny_facenet()
        w = sr.locate(m)
        x = np.random.default_rng(1).standard_normal((5, C, 2, 2)).astype(np.float32)
        pooled = x.mean((2, 3))
        np.testing.assert_allclose(run(m, x), sr.pretrained_forward(pooled, w), atol=1e-5)

    def test_the_trunk_ends_at_the_pool(self):
        m = tiny_facenet()
        t = sr.trunk(m, "input:0")
        self.assertEqual([o.name for o in t.graph.output], [sr.POOL])
        x = np.random.default_rng(2).standard_normal((3, C, 2, 2)).astype(np.float32)
        import onnxruntime as ort
        s = ort.InferenceSession(t.SerializeToString(), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(s.run(None, {"input:0": x})[0].reshape(3, C), x.mean((2, 3)), atol=1e-6)

    def test_export_replaces_the_last_layer_with_the_trained_tail(self):
        m = tiny_facenet()
        w = sr.locate(m)
        rng = np.random.default_rng(3)
        w.update(sr.added_init(D, D, 0))
        w["W1"] = w["W1"] + 0.1 * rng.standard_normal(w["W1"].shape).astype(np.float32)
        w["bn2_mean"] = rng.standard_normal(D).astype(np.float32)
        w["bn2_var"] = rng.uniform(0.5, 2, D).astype(np.float32)
        w["bn2_gamma"] = rng.uniform(0.5, 2, D).astype(np.float32)
        w["b2"] = rng.standard_normal(D).astype(np.float32)
        e = sr.export(m, w)
        names = [n.name for n in e.graph.node]
        self.assertNotIn(sr.BOTTLENECK, names)
        self.assertFalse(any(n.op_type == "BatchNormalization" for n in e.graph.node))
        x = rng.standard_normal((4, C, 2, 2)).astype(np.float32)
        got = run(e, x)
        np.testing.assert_allclose(got, sr.forward(x.mean((2, 3)), w), atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        self.assertEqual(len(got[0]), D)

    def test_another_graph_is_refused(self):
        m = tiny_facenet()
        for n in m.graph.node:
            if n.name == sr.BOTTLENECK:
                n.name = "Other/MatMul"
        with self.assertRaises(ValueError):
            sr.locate(m)


def tiny_rows(people=10, images=3, masks=2):
    person, image, variant = [], [], []
    for p in range(people):
        for i in range(images):
            for v in range(masks + 1):
                person.append(p)
                image.append(p * images + i)
                variant.append(v)
    return np.array(person), np.array(image), np.array(variant)


class Triplets(unittest.TestCase):
    def test_anchor_unmasked_positive_masked_same_person_negative_masked_other(self):
        person, image, variant = tiny_rows()
        rows = np.arange(len(person))
        un, masked, by = sr.group(person, image, variant, rows)
        self.assertEqual(len(un), 30)
        rng = np.random.default_rng(0)
        t1 = sr.triplets(rng, person, un, masked, by)
        t2 = sr.triplets(rng, person, un, masked, by)
        for a, p, n in t1:
            self.assertEqual(variant[a], 0)
            self.assertGreater(variant[p], 0)
            self.assertGreater(variant[n], 0)
            self.assertEqual(person[a], person[p])
            self.assertNotEqual(person[a], person[n])
            self.assertNotEqual(image[a], image[p], "another image of the person when there is one")
        self.assertFalse(np.array_equal(t1[:, 2], t2[:, 2]), "negatives are drawn anew each epoch")

    def test_one_image_people_use_their_own_masked_crop(self):
        person, image, variant = tiny_rows(people=3, images=1)
        un, masked, by = sr.group(person, image, variant, np.arange(len(person)))
        t = sr.triplets(np.random.default_rng(0), person, un, masked, by)
        for a, p, _ in t:
            self.assertEqual(image[a], image[p])

    def test_one_person_is_refused(self):
        person, image, variant = tiny_rows(people=1)
        un, masked, by = sr.group(person, image, variant, np.arange(len(person)))
        with self.assertRaises(ValueError):
            sr.triplets(np.random.default_rng(0), person, un, masked, by)


class Training(unittest.TestCase):
    def test_the_triplet_loss_falls_on_a_tiny_set(self):
        # Pooled features: a person centre, plus a shared "mask" shift on masked rows.
        people, images, masks = 16, 3, 2
        person, image, variant = tiny_rows(people, images, masks)
        rng = np.random.default_rng(0)
        centre = rng.standard_normal((people, C * 4)).astype(np.float32)
        shift = 3.0 * rng.standard_normal(C * 4).astype(np.float32)
        act = centre[person] + 0.3 * rng.standard_normal((len(person), C * 4)).astype(np.float32)
        act[variant > 0] += shift
        w0 = {"W1": rng.standard_normal((C * 4, 8)).astype(np.float32) * 0.3,
              "bn1_gamma": np.ones(8, np.float32), "bn1_beta": np.zeros(8, np.float32),
              "bn1_mean": np.zeros(8, np.float32), "bn1_var": np.ones(8, np.float32),
              "bn1_eps": np.float32(1e-3)}
        cfg = sr.Config(epochs=12, lr=0.01, margin=0.5, batch=16, hidden=8, val_share=0.2, seed=0)
        res = sr.train(act, person, image, variant, np.arange(len(person)), w0, cfg, log=lambda *_: None)
        h = res.history
        self.assertEqual(len(h), 13)
        last = np.mean([x["train"] for x in h[-3:]])
        self.assertLess(last, 0.5 * h[0]["train"], h)
        e = sr.forward(act, res.weights)
        np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
        for k in ("W1", "W2", "b2", "bn1_mean", "bn2_mean", "bn2_var"):
            self.assertIn(k, res.weights)


if __name__ == "__main__":
    unittest.main()
