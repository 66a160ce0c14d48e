"""Methods (b)+(e): the periocular port, the MobileFaceNet tail (locate,
numpy reference vs onnxruntime, weights written back, trunk cut), the
distillation on a tiny synthetic set, the quick-look metrics."""
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facegate_train import distil, head, metrics, periocular  # noqa: E402

MFN_TEMPLATE = [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                [41.5493, 92.3655], [70.7299, 92.2041]]


def tiny_tail(c_in=4, c=8, k=3, out=5, seed=0, share=False):
    """A graph shaped like MobileFaceNet's tail, with its node names:
    input (N×c_in×k×k) → ×2 ("trunk") → 1×1 conv → tf2onnx PReLU → k×k
    depthwise → 1×1 → 1×1 → reshape → L2."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    P = head.MFN
    w = {"w7": rng.standard_normal((c, c_in, 1, 1)), "b7": rng.standard_normal(c),
         "c7": rng.uniform(0.05, 0.5, (1, c, 1, 1)), "wdw": rng.standard_normal((c, 1, k, k)),
         "bdw": rng.standard_normal(c), "wc": rng.standard_normal((c, c, 1, 1)), "bc": rng.standard_normal(c),
         "wl": rng.standard_normal((out, c, 1, 1)), "bl": rng.standard_normal(out)}
    w = {n: v.astype(np.float32) for n, v in w.items()}
    if share:  # tf2onnx folds equal constants: the tail's bias used elsewhere too
        w["bc"] = w["bdw"].copy()
    init = [numpy_helper.from_array(v, f"const_{n}") for n, v in w.items() if not (share and n == "bc")]
    bc = "const_bdw" if share else "const_bc"
    init += [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array([-1, out], np.int64), "shape"),
             numpy_helper.from_array(np.array([1], np.int64), "axes")]
    c7 = P + "MobileFaceNet/Conv2d_7/"
    nodes = [
        helper.make_node("Mul", ["input", "two"], ["cut"], name="trunk"),
        helper.make_node("Conv", ["cut", "const_w7", "const_b7"], ["h"], name=c7 + "BatchNorm/FusedBatchNorm"),
        helper.make_node("Relu", ["h"], ["r"], name=c7 + "Relu"),
        helper.make_node("Abs", ["h"], ["a"], name=c7 + "Abs"),
        helper.make_node("Sub", ["h", "a"], ["s"], name=c7 + "sub"),
        helper.make_node("Mul", ["s", "const_c7"], ["m"], name=c7 + "mul_1"),
        helper.make_node("Add", ["r", "m"], ["p"], name=c7 + "add"),
        helper.make_node("Conv", ["p", "const_wdw", "const_bdw"], ["g"], group=c,
                         name=P + "Logits/SeparableConv2d/BatchNorm/FusedBatchNorm"),
        helper.make_node("Conv", ["g", "const_wc", bc], ["z"], name=P + "Logits/Conv/BatchNorm/FusedBatchNorm"),
        helper.make_node("Conv", ["z", "const_wl", "const_bl"], ["e4"],
                         name=P + "Logits/LinearConv1x1/BatchNorm/FusedBatchNorm"),
        helper.make_node("Reshape", ["e4", "shape"], ["e"]),
        helper.make_node("Mul", ["e", "e"], ["sq"]),
        helper.make_node("ReduceSum", ["sq", "axes"], ["ss"], keepdims=1),
        helper.make_node("Sqrt", ["ss"], ["n"]),
        helper.make_node("Div", ["e", "n"], ["embeddings"]),
    ]
    if share:
        nodes.append(helper.make_node("Add", ["embeddings", "const_bl"], ["unused"]))
    g = helper.make_graph(nodes, "tail", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                          ["N", c_in, k, k])],
                          [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", out])], init)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), w


def run_onnx(model, x, output="embeddings"):
    import onnx
    import onnxruntime as ort
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.onnx"
        onnx.save(model, str(p))
        return ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run([output], {"input": x})[0]


class PeriocularTest(unittest.TestCase):
    def test_rows_match_the_rust_rule(self):
        # src/face/periocular.rs pins 0.0 -> 52 and 100 -> 112 for this template; 0.5 -> 69 there too.
        self.assertEqual(periocular.cut_row(MFN_TEMPLATE, 112, 0.0), 52)
        self.assertEqual(periocular.cut_row(MFN_TEMPLATE, 112, 0.5), 69)
        self.assertEqual(periocular.cut_row(MFN_TEMPLATE, 112, 100.0), 112)
        self.assertEqual(periocular.cut_row(MFN_TEMPLATE, 112, -100.0), 0)

    def test_grey_below_copies_and_greys(self):
        x = np.full((2, 112, 112, 3), 7, np.uint8)
        y = periocular.grey_below(x, MFN_TEMPLATE, 0.5)
        self.assertTrue((x == 7).all())
        self.assertTrue((y[:, :69] == 7).all() and (y[:, 69:] == periocular.GREY).all())


class TailTest(unittest.TestCase):
    def test_reference_matches_onnxruntime_and_weights_round_trip(self):
        m, w = tiny_tail()
        h = head.locate(m)
        self.assertEqual(h.cut, "cut")
        self.assertEqual(h.shape, (4, 3, 3))
        x = np.random.default_rng(1).standard_normal((6, 4, 3, 3)).astype(np.float32)
        got = run_onnx(m, x)
        np.testing.assert_allclose(head.forward(2 * x, h.weights), got, atol=1e-5)
        # the TF-layout twin, on NHWC activations
        t = distil.to_tf_layout(h.weights)
        np.testing.assert_allclose(distil.forward_nhwc((2 * x).transpose(0, 2, 3, 1), t), got, atol=1e-5)
        back = distil.from_tf_layout(t, h.weights)
        for k in w:
            np.testing.assert_array_equal(back[k], h.weights[k])
        # new weights written into the same initialisers change the ONNX as the reference says
        w2 = {k: v * 1.5 + 0.1 for k, v in h.weights.items()}
        m2 = head.write_weights(m, h, w2)
        self.assertEqual([n.name for n in m2.graph.node], [n.name for n in m.graph.node])
        np.testing.assert_allclose(run_onnx(m2, x), head.forward(2 * x, w2), atol=1e-5)
        with self.assertRaises(head.HeadError):
            head.write_weights(m, h, {**w2, "wl": w2["wl"][:3]})
        # the trunk ends at the cut
        tr = head.trunk(m, h, "input")
        np.testing.assert_allclose(run_onnx(tr, x, "cut"), 2 * x, atol=1e-6)

    def test_refuses_other_graphs_and_shared_constants(self):
        m, _ = tiny_tail()
        m.graph.node[1].name = "something else"
        with self.assertRaises(head.HeadError):
            head.locate(m)
        shared, _ = tiny_tail(share=True)
        with self.assertRaises(head.HeadError):
            head.locate(shared)

    def test_real_mobilefacenet_when_built(self):
        models = Path(__file__).resolve().parents[1] / "out" / "bundles" / "mobilefacenet-fp32" / "model.onnx"
        if not models.exists():
            self.skipTest("models/build has not run")
        import onnx
        import onnxruntime as ort
        m = onnx.load(str(models))
        h = head.locate(m)
        self.assertEqual(h.shape, (128, 7, 7))
        x = np.random.default_rng(2).uniform(-1, 1, (3, 112, 112, 3)).astype(np.float32)
        with tempfile.TemporaryDirectory() as d:
            p, q = Path(d) / "t.onnx", Path(d) / "w.onnx"
            onnx.save(head.trunk(m, h, "input"), str(p))
            act = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run([h.cut], {"input": x})[0]
            full = ort.InferenceSession(str(models), providers=["CPUExecutionProvider"]).run(
                ["embeddings"], {"input": x})[0]
            np.testing.assert_allclose(head.forward(act, h.weights), full, atol=1e-4)
            w2 = {k: v + 0.01 * np.random.default_rng(3).standard_normal(v.shape).astype(np.float32)
                  for k, v in h.weights.items()}
            onnx.save(head.write_weights(m, h, w2), str(q))
            got = ort.InferenceSession(str(q), providers=["CPUExecutionProvider"]).run(["embeddings"],
                                                                                       {"input": x})[0]
            np.testing.assert_allclose(got, head.forward(act, w2), atol=1e-4)


def tiny_set(people=24, images=3, seed=0):
    """NHWC activations of a tiny tail: per person a pattern, unmasked images
    add noise, masked ones add a shared 'mask' pattern in the lower rows; the
    periocular activations see the mask's edge only weakly."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((people, 3, 3, 4)).astype(np.float32)
    mask = np.zeros((3, 3, 4), np.float32)
    mask[2] = 2.0 * rng.standard_normal((3, 4))
    aw, ap, img, var, per = [], [], [], [], []
    for p in range(people):
        for i in range(images):
            u = base[p] + 0.2 * rng.standard_normal((3, 3, 4)).astype(np.float32)
            up = u.copy()
            up[2] = 0
            for v in range(3):
                mk = mask * (1 if v else 0) * (0.8 + 0.4 * rng.random())
                aw.append(u + mk)
                q = up + 0.5 * mk
                ap.append(q)
                img.append(p * images + i)
                var.append(v)
                per.append(p)
    return (np.asarray(aw), np.asarray(ap), np.asarray(img), np.asarray(var), np.asarray(per))


class DistilTest(unittest.TestCase):
    def test_grouping(self):
        img = np.array([0, 0, 0, 1, 1, 2])
        var = np.array([0, 1, 2, 1, 0, 1])
        per = np.array([5, 5, 5, 6, 6, 7])
        g = distil.group(img, var, per, np.arange(6))
        self.assertEqual(g.unmasked.tolist(), [0, 4])      # image 2 has no unmasked crop
        self.assertEqual(g.masked, [[1, 2], [3]])
        self.assertEqual(g.person.tolist(), [5, 6])

    def test_loss_falls_and_masked_periocular_moves_to_unmasked(self):
        _, w = tiny_tail(c_in=4, c=8, k=3, out=5)
        aw, ap, img, var, per = tiny_set()
        g = distil.group(img, var, per, np.arange(len(img)))
        cfg = distil.Config(epochs=25, lr=1e-2, batch=16, ident=0.1, l2sp=0.0, val_share=0.25)
        r = distil.train(aw, ap, w, g, cfg, log=lambda *_: None)
        self.assertLess(r.history[-1]["train"], 0.85 * r.history[1]["train"])
        # the kept epoch: held-out people's loss well below the pretrained one's
        self.assertLess(r.history[r.best_epoch]["val"], 0.8 * r.history[0]["val"])
        t0, t1 = distil.to_tf_layout(w), distil.to_tf_layout(r.weights)
        m = np.array([x[0] for x in g.masked])

        def gap(t):  # masked periocular vs the teacher's unmasked periocular, same image
            return float((distil.embed(ap[m], t) * distil.embed(ap[g.unmasked], t0)).sum(1).mean())
        self.assertGreater(gap(t1), gap(t0) + 0.03)
        # keep: unmasked whole embeddings stay near the teacher's
        keep = (distil.embed(aw[g.unmasked], t1) * distil.embed(aw[g.unmasked], t0)).sum(1).mean()
        self.assertGreater(float(keep), 0.8)
        self.assertTrue(0 <= r.best_epoch <= cfg.epochs)


class MetricsTest(unittest.TestCase):
    def test_tar_and_eer(self):
        gen = np.linspace(0.5, 1.0, 100)
        imp = np.linspace(0.0, 0.6, 10000)
        # 1e-3 of 10,000 impostors = 10 above the threshold: ~0.5994
        self.assertAlmostEqual(metrics.tar_at(gen, imp, 1e-3), float((gen > imp[-11]).mean()))
        self.assertEqual(metrics.tar_at(np.array([2.0]), imp, 1e-4), 1.0)
        self.assertLess(metrics.eer(np.array([0.9, 0.8]), np.array([0.1, 0.2])), 1e-9)
        e = metrics.eer(gen, imp)
        self.assertTrue(0.0 < e < 0.2, e)

    def test_scores_pairs(self):
        a = np.eye(3, dtype=np.float32)
        g, i = metrics.scores(a, np.array([0, 0, 1]), np.array([0, 1, 2]), a, np.array([0, 0, 1]),
                              np.array([0, 1, 2]))
        self.assertEqual(sorted(g.tolist()), [0.0, 0.0])   # same person, other photo
        self.assertEqual(len(i), 4)


if __name__ == "__main__":
    unittest.main()


class LossCurve(unittest.TestCase):
    def test_epoch_without_train_entry_and_nan(self):
        # Epoch 0 is a held-out pass only: it has "val" but no "train" (this crashed a real run).
        from facegate_train import plot
        hist = [{"epoch": 0, "val": 0.18}, {"epoch": 1, "train": 0.38, "val": 0.17},
                {"epoch": 2, "train": float("nan"), "val": 0.16}]
        with tempfile.TemporaryDirectory() as d:
            p = Path(d) / "loss.png"
            plot.loss_curve(hist, p, "t")
            from PIL import Image
            im = Image.open(p)
            self.assertEqual(im.size, (640, 400))
            # Both series are drawn in the plot area, outside the legend (top right): the
            # train series has a single finite epoch (a marker), val a line.
            px = im.load()
            area = [px[x, y] for x in range(60, 490) for y in range(30, 360)]
            self.assertIn((31, 119, 180), area)
            self.assertIn((214, 39, 40), area)
