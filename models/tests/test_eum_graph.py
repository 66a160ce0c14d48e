"""SRT loss, triplet sampling, training on a tiny set, graph surgery."""
import sys
import tempfile
import unittest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facegate_train import eum, graph  # noqa: E402


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def tiny_set(people=12, images=3, dim=16, seed=0):
    """Unmasked embeddings cluster per person; masked ones are the same
    vectors pushed along a shared 'mask' direction plus noise."""
    rng = np.random.default_rng(seed)
    centre = unit(rng.standard_normal((people, dim)))
    mask_dir = unit(rng.standard_normal((1, dim)))[0]
    emb, person, variant, image = [], [], [], []
    for p in range(people):
        for i in range(images):
            u = unit(centre[p:p + 1] + 0.15 * rng.standard_normal((1, dim)))[0]
            m = unit((u + 1.2 * mask_dir + 0.1 * rng.standard_normal(dim))[None])[0]
            for v, e in ((0, u), (1, m)):
                emb.append(e)
                person.append(p)
                variant.append(v)
                image.append(p * images + i)
    return (np.asarray(emb, np.float32), np.asarray(person), np.asarray(variant), np.asarray(image))


class SrtTest(unittest.TestCase):
    def test_numpy_matches_tf_and_both_branches(self):
        rng = np.random.default_rng(1)
        a, p, n = (rng.standard_normal((32, 8)).astype(np.float32) for _ in range(3))
        for m in (0.5, 2.0):
            ref = eum.srt_numpy(a, p, n, m)
            got = float(eum.srt_tf(a, p, n, m))
            self.assertAlmostEqual(ref, got, places=4)
        # Negatives far from anchors: the restrained branch only pulls d_ap.
        p2 = unit(rng.standard_normal((32, 8)))
        a2 = p2 + 0.01
        self.assertAlmostEqual(eum.srt_numpy(a2, p2, -p2, 0.0), 0.0, places=6)
        # Identical anchor and positive, negative = anchor: full margin + 0.
        self.assertAlmostEqual(eum.srt_numpy(a2, a2, a2, 0.3), 0.3, places=5)

    def test_triplets_respect_identity(self):
        emb, person, variant, image = tiny_set()
        a, p, n = eum.triplet_index(person, variant, image, np.random.default_rng(0))
        self.assertEqual(len(a), int((variant > 0).sum()))
        self.assertTrue((variant[a] > 0).all() and (variant[p] == 0).all() and (variant[n] == 0).all())
        self.assertTrue((person[a] == person[p]).all())
        self.assertTrue((person[a] != person[n]).all())
        self.assertTrue((image[a] != image[p]).all())  # every person has several images


class TrainAndGraphTest(unittest.TestCase):
    def test_loss_falls_and_masked_moves_to_unmasked(self):
        emb, person, variant, image = tiny_set()
        cfg = eum.Config(epochs=40, batch=16, lr=3e-3, margin=0.5, keep=1.0, val_people=0.0)
        r = eum.train(emb, person, variant, image, cfg, log=lambda *_: None)
        self.assertLess(r.history[-1]["train"], 0.7 * r.history[0]["train"])
        y = graph.adapter_forward(emb, r.weights, cfg.alpha)
        m, u = variant == 1, variant == 0
        before = float((emb[m] * emb[u]).sum(1).mean())
        after = float((y[m] * emb[u]).sum(1).mean())
        self.assertGreater(after, before + 0.05)
        # The keep term holds unmasked embeddings near the pretrained ones.
        self.assertGreater(float((y[u] * emb[u]).sum(1).mean()), 0.9)

    def test_surgery_matches_numpy_and_starts_as_identity(self):
        import onnx
        import onnxruntime as ort
        dim, size = 8, 4
        base = graph.tiny_backbone(dim, size)
        rng = np.random.default_rng(3)
        x = rng.uniform(-1, 1, (5, size, size, 3)).astype(np.float32)
        with tempfile.TemporaryDirectory() as d:
            def run(m):
                p = Path(d) / "m.onnx"
                onnx.save(m, str(p))
                return ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(
                    ["embeddings:0"], {"input:0": x})[0]
            e = run(base)
            ident = run(graph.append_adapter(base, "embeddings:0", graph.identity_weights(dim)))
            np.testing.assert_allclose(ident, e, atol=1e-6)
            w = {"W1": rng.standard_normal((dim, 6)).astype(np.float32),
                 "b1": rng.standard_normal(6).astype(np.float32),
                 "W2": rng.standard_normal((6, dim)).astype(np.float32),
                 "b2": rng.standard_normal(dim).astype(np.float32)}
            m = graph.append_adapter(base, "embeddings:0", w)
            np.testing.assert_allclose(run(m), graph.adapter_forward(e, w), atol=1e-5)
            self.assertEqual([o.name for o in m.graph.output], ["embeddings:0"])
            self.assertTrue(all(n.name.startswith(graph.PREFIX) for n in m.graph.node[-11:]))


if __name__ == "__main__":
    unittest.main()
