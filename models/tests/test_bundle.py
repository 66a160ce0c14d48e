"""Trained bundles (facegate_train.bundle.write): one network or two
(model.onnx = the backbone unchanged + periocular.onnx = the trained one in
[periocular_model]), and the backbone's [presence] classifier kept only for
the model it was trained on. Tiny fake files, no ONNX needed."""
import hashlib
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facegate_train import bundle  # noqa: E402
from facegate_train.backbone import Backbone  # noqa: E402

TRAINING = {"method": "distil", "split": "f1-5", "tail_for": "periocular"}
MODEL_KEYS = ["file", "sha256", "bytes", "format", "precision"]


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


class WriteTest(unittest.TestCase):
    BACKBONE = b"pretrained backbone bytes"
    TRAINED = b"trained tail, a different network"

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = Path(self.tmp.name)
        self.trained = self.dir / "model-fp32.onnx"
        self.trained.write_bytes(self.TRAINED)
        self.out = self.dir / "trained"

    def tearDown(self):
        self.tmp.cleanup()

    def backbone(self, presence_sha: str | None = "backbone") -> Backbone:
        d = self.dir / "models" / "bundles" / "mobilefacenet-fp32"
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.onnx").write_bytes(self.BACKBONE)
        m = {"schema": 1, "name": "mobilefacenet-fp32", "kind": "embedder", "version": "mfn-1+fp32",
             "model": {"file": "model.onnx", "sha256": sha(self.BACKBONE), "bytes": len(self.BACKBONE),
                       "format": "onnx", "precision": "fp32"},
             "input": {"name": "input", "layout": "NHWC", "shape": [-1, 112, 112, 3]},
             "output": {"name": "embeddings", "dim": 192},
             "provenance": {"package": "x"},
             "thresholds": {"status": "calibrated", "unmasked": 0.5}}
        if presence_sha is not None:
            m["presence"] = {"kind": "logistic-embedding",
                             "model_sha256": sha(self.BACKBONE) if presence_sha == "backbone" else presence_sha,
                             "threshold": 0.5, "bias": 0.0, "weights": [0.1, 0.2]}
        return Backbone("mobilefacenet-fp32", d, m)

    def read(self, d: Path) -> tuple[dict, str]:
        text = (d / "manifest.toml").read_text()
        return tomllib.loads(text), text

    def test_periocular_bundle_carries_both_models(self):
        bb = self.backbone()
        d = bundle.write(self.out, "mfn-masked-distil-peri-f1-5", bb, bb.model, "fp32", TRAINING,
                         periocular=self.trained)
        self.assertEqual((d / "model.onnx").read_bytes(), self.BACKBONE)
        self.assertEqual((d / "periocular.onnx").read_bytes(), self.TRAINED)
        m, text = self.read(d)
        self.assertEqual(m["model"], {"file": "model.onnx", "sha256": sha(self.BACKBONE),
                                      "bytes": len(self.BACKBONE), "format": "onnx", "precision": "fp32"})
        self.assertEqual(m["model"]["sha256"], bb.sha256)
        self.assertEqual(m["periocular_model"], {"file": "periocular.onnx", "sha256": sha(self.TRAINED),
                                                 "bytes": len(self.TRAINED), "format": "onnx",
                                                 "precision": "fp32"})
        self.assertEqual(list(m["periocular_model"]), MODEL_KEYS)
        # A flat top-level table, like [model] (what src/bundle.rs's toml reads).
        self.assertIn("\n[periocular_model]\nfile = \"periocular.onnx\"\n", text)
        self.assertNotEqual(m["periocular_model"]["file"], m["model"]["file"])
        self.assertTrue(m["version"].endswith("+distil-f1-5+fp32+periocular"), m["version"])
        self.assertEqual(m["provenance"]["training_tail_for"], "periocular")
        self.assertEqual(m["thresholds"]["status"], "uncalibrated")

    def test_periocular_model_keeps_the_backbones_precision(self):
        bb = self.backbone()
        bb.manifest["model"]["precision"] = "fp16"
        d = bundle.write(self.out, "p", bb, bb.model, "fp32", TRAINING, periocular=self.trained)
        m, _ = self.read(d)
        self.assertEqual(m["model"]["precision"], "fp16")
        self.assertEqual(m["periocular_model"]["precision"], "fp32")

    def test_periocular_needs_the_backbones_model_unchanged(self):
        bb = self.backbone()
        with self.assertRaises(ValueError):
            bundle.write(self.out, "p", bb, self.trained, "fp32", TRAINING, periocular=self.trained)

    def test_presence_kept_when_model_onnx_is_the_backbones(self):
        bb = self.backbone()
        d = bundle.write(self.out, "p", bb, bb.model, "fp32", TRAINING, periocular=self.trained)
        m, _ = self.read(d)
        self.assertEqual(m["presence"], bb.manifest["presence"])
        self.assertEqual(m["presence"]["model_sha256"], m["model"]["sha256"])
        self.assertEqual(m["provenance"]["training_presence"], bundle.PRESENCE_KEPT)

    def test_presence_dropped_for_a_trained_single_network(self):
        bb = self.backbone()
        d = bundle.write(self.out, "s", bb, self.trained, "fp32", dict(TRAINING, tail_for="all"))
        m, _ = self.read(d)
        self.assertNotIn("presence", m)
        self.assertEqual(m["provenance"]["training_presence"], bundle.PRESENCE_DROPPED)
        self.assertEqual(m["model"]["sha256"], sha(self.TRAINED))
        self.assertNotIn("periocular_model", m)
        self.assertFalse((d / "periocular.onnx").exists())

    def test_presence_dropped_when_made_for_another_model(self):
        bb = self.backbone(presence_sha="ab" * 32)
        d = bundle.write(self.out, "p", bb, bb.model, "fp32", TRAINING, periocular=self.trained)
        m, _ = self.read(d)
        self.assertNotIn("presence", m)
        self.assertEqual(m["provenance"]["training_presence"], bundle.PRESENCE_DROPPED)

    def test_no_presence_no_note(self):
        bb = self.backbone(presence_sha=None)
        d = bundle.write(self.out, "s", bb, self.trained, "fp32", TRAINING)
        m, _ = self.read(d)
        self.assertNotIn("presence", m)
        self.assertNotIn("training_presence", m["provenance"])

    def test_rewrite_without_periocular_removes_it(self):
        bb = self.backbone()
        d = bundle.write(self.out, "x", bb, bb.model, "fp32", TRAINING, periocular=self.trained)
        self.assertTrue((d / "periocular.onnx").exists())
        d2 = bundle.write(self.out, "x", bb, self.trained, "fp32", dict(TRAINING, tail_for="all"))
        self.assertEqual(d2, d)
        self.assertFalse((d / "periocular.onnx").exists())
        m, text = self.read(d)
        self.assertNotIn("periocular_model", m)
        self.assertNotIn("periocular_model", text)
        self.assertFalse(m["version"].endswith("+periocular"))
        self.assertEqual((d / "model.onnx").read_bytes(), self.TRAINED)
        self.assertEqual(m["model"]["sha256"], sha(self.TRAINED))

    def test_a_backbone_with_a_periocular_model_does_not_pass_it_on(self):
        bb = self.backbone()
        bb.manifest["periocular_model"] = dict(bb.manifest["model"], file="periocular.onnx")
        d = bundle.write(self.out, "s", bb, self.trained, "fp32", TRAINING)
        m, _ = self.read(d)
        self.assertNotIn("periocular_model", m)


if __name__ == "__main__":
    unittest.main()
