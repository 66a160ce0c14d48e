"""Mask presence classifier trainer (facegate_train/presence.py). Run: the
models venv's python -m unittest discover -s models/tests."""
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import facegate_sign as fs  # noqa: E402
from facegate_models import manifest  # noqa: E402
from facegate_train import presence  # noqa: E402

SHA = "ab" * 32


def synthetic(n_people=60, per=4, dim=8, gap=1.5, seed=1):
    """Unit embeddings; masked ones are shifted along one direction."""
    rng = np.random.default_rng(seed)
    x, y, who = [], [], []
    for p in range(n_people):
        centre = 0.5 * rng.normal(size=dim)
        for k in range(per):
            masked = k % 2
            v = centre + 0.3 * rng.normal(size=dim)
            v[0] += gap if masked else -gap
            x.append(v / np.linalg.norm(v))
            y.append(masked)
            who.append(f"p{p}")
    return np.array(x), np.array(y, float), who


def bundle_doc(dim=8):
    return {"schema": 1, "name": "emb", "kind": "embedder", "version": "1",
            "model": {"file": "model.onnx", "sha256": SHA, "bytes": 5, "format": "onnx",
                      "precision": "fp32"},
            "output": {"name": "e", "dim": dim, "l2_normalised": True},
            "thresholds": {"status": "calibrated", "unmasked": 0.5}}


class PresenceTest(unittest.TestCase):
    def test_learns_separable_embeddings(self):
        x, y, who = synthetic()
        m = presence.train(x, y, who, max_bare=0.02)
        p = presence.predict(x, m["weights"], m["bias"])
        self.assertGreater(((p >= m["threshold"]) == (y > 0.5)).mean(), 0.97)
        self.assertLessEqual(m["oof_bare_masked"], 0.02)
        self.assertGreater(m["oof_masked_masked"], 0.9)
        self.assertEqual(m["people"], 60)
        self.assertIn(m["lambda"], presence.LAMBDAS)
        # The weight on the shifted direction dominates and points to "masked".
        self.assertEqual(int(np.argmax(np.abs(m["weights"]))), 0)
        self.assertGreater(m["weights"][0], 0)

    def test_unlearnable_data_is_not_called_separable(self):
        rng = np.random.default_rng(3)
        x = rng.normal(size=(240, 8))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        y = np.tile([0.0, 1.0], 120)
        who = [f"p{i // 4}" for i in range(240)]
        m = presence.train(x, y, who, max_bare=0.02)
        self.assertLess(m["oof_masked_masked"], 0.3)

    def test_threshold_rule(self):
        bare = np.array([0.1, 0.2, 0.3, 0.9, 0.5, 0.4, 0.05, 0.15, 0.25, 0.35])
        # 10 % of 10 = 1 bare face may be called masked: the 0.9 one.
        t = presence.threshold_for(bare, 0.1)
        self.assertEqual(((bare >= t).sum()), 1)
        self.assertTrue(0.5 < t <= 0.9)
        # None may: above the largest.
        t0 = presence.threshold_for(bare, 0.0)
        self.assertEqual(((bare >= t0).sum()), 0)
        self.assertGreater(t0, 0.9)
        with self.assertRaises(ValueError):
            presence.threshold_for(np.array([]), 0.02)
        with self.assertRaises(ValueError):
            presence.threshold_for(bare, 1.0)

    def test_person_groups_keep_a_person_in_one_fold(self):
        who = ["a", "a", "b", "c", "c", "c", "d"]
        g = presence.groups_of(who, 2, 0)
        for p in set(who):
            self.assertEqual(len({g[i] for i, w in enumerate(who) if w == p}), 1)

    def test_section_is_written_into_the_manifest_and_signed(self):
        x, y, who = synthetic()
        m = presence.train(x, y, who, max_bare=0.02)
        with tempfile.TemporaryDirectory() as d:
            b = Path(d) / "bundles" / "emb"
            b.mkdir(parents=True)
            manifest.write(b / "manifest.toml", bundle_doc())
            (b / "model.onnx").write_bytes(b"model")
            sec = presence.section(m, SHA, "synthetic")
            self.assertTrue(presence.install(b / "manifest.toml", sec))
            self.assertFalse(presence.install(b / "manifest.toml", sec), "idempotent")
            doc = tomllib.loads((b / "manifest.toml").read_text())
            p = doc["presence"]
            self.assertEqual(p["kind"], "logistic-embedding")
            self.assertEqual(p["model_sha256"], SHA)
            self.assertEqual(len(p["weights"]), 8)
            self.assertAlmostEqual(p["threshold"], m["threshold"], places=5)
            self.assertEqual(doc["thresholds"]["unmasked"], 0.5, "other sections kept")
            key = fs.key_from_seed(bytes(range(32)))
            self.assertTrue(fs.sign_bundle(b, key))
            self.assertIn("signed by", fs.verify(b))
            # Another model or dimension is refused.
            with self.assertRaises(ValueError):
                presence.install(b / "manifest.toml", {**sec, "model_sha256": "cd" * 32})
            with self.assertRaises(ValueError):
                presence.install(b / "manifest.toml", {**sec, "weights": sec["weights"][:4]})


if __name__ == "__main__":
    unittest.main()
