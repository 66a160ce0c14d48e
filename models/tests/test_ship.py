"""facegate_train.ship: the trained bundle as the device default."""
import re
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facegate_train import calibrate as cal  # noqa: E402
from facegate_train import ship  # noqa: E402
from facegate_models import manifest as mf  # noqa: E402

from tests.test_calibrate import A, P, backbone, table  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def trained():
    return {"name": ship.trained_name("6-10"), "kind": "embedder",
            "model": {"file": "model.onnx", "sha256": A, "bytes": 1, "format": "onnx", "precision": "fp32"},
            "periocular_model": {"file": "periocular.onnx", "sha256": P, "bytes": 1, "format": "onnx",
                                 "precision": "fp32"},
            "provenance": {"trained_from": f"mfn-fp32 (sha256 {A})", "training_split": "f6-10"},
            "thresholds": {"status": "uncalibrated"}}


def tables(name=None):
    return {f"{name or ship.trained_name('6-10')}+periocular0.5": table()}


class Names(unittest.TestCase):
    def test_the_trained_name_is_the_one_rust_prefers(self):
        src = (REPO / "src" / "bundle.rs").read_text()
        self.assertEqual(re.search(r'TRAINED_EMBEDDER: &str = "([^"]+)"', src).group(1), ship.TRAINED)
        self.assertEqual(re.search(r'DEFAULT_EMBEDDER: &str = "([^"]+)"', src).group(1), ship.BACKBONE)

    def test_the_name_models_train_writes(self):
        self.assertEqual(ship.trained_name("6-10"), "mobilefacenet-masked-distil-peri-f6-10")


class Finish(unittest.TestCase):
    def test_calibrated_and_renamed(self):
        doc = ship.finish(trained(), backbone(), tables())
        self.assertEqual(doc["name"], ship.TRAINED)
        self.assertEqual(doc["thresholds"]["periocular"], 0.674)
        self.assertEqual(doc["thresholds"]["unmasked"], 0.53, "whole faces: the backbone's")
        self.assertIn(ship.trained_name("6-10"), doc["provenance"]["shipped_as"])
        self.assertEqual(doc["provenance"]["training_split"], "f6-10")

    def test_a_table_of_another_bundle_is_refused(self):
        with self.assertRaises(cal.CalibrationError):
            ship.finish(trained(), backbone(), tables("mobilefacenet-masked-distil-peri-f1-5"))

    def test_a_table_of_another_model_is_refused(self):
        t = tables()
        next(iter(t.values()))["model_sha256"] = "d" * 64
        with self.assertRaises(cal.CalibrationError):
            ship.finish(trained(), backbone(), t)


class Presence(unittest.TestCase):
    def test_the_backbones_classifier_is_kept_only_for_its_model(self):
        doc = trained()
        bb = backbone()
        self.assertNotIn("presence", ship.with_presence(doc, bb))
        bb["presence"] = {"kind": "logistic-embedding", "model_sha256": A, "threshold": 0.4}
        self.assertEqual(ship.with_presence(doc, bb)["presence"]["threshold"], 0.4)
        bb["presence"]["model_sha256"] = "e" * 64
        doc["presence"] = {"model_sha256": A}
        self.assertNotIn("presence", ship.with_presence(doc, bb), "a stale section is dropped too")


class Install(unittest.TestCase):
    def test_install_replaces_the_bundle_unsigned(self):
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            stored = d / "store"
            stored.mkdir()
            (stored / "model.onnx").write_bytes(b"m")
            (stored / "periocular.onnx").write_bytes(b"p")
            mf.write(stored / "manifest.toml", ship.finish(trained(), backbone(), tables()))
            old = d / "models" / "bundles" / ship.TRAINED
            old.mkdir(parents=True)
            (old / "manifest.sig").write_text("old signature")
            (old / "stale.onnx").write_bytes(b"x")
            bb = backbone()
            bb["presence"] = {"kind": "logistic-embedding", "model_sha256": A}
            dest = ship.install(stored, d / "models", bb)
            self.assertEqual(sorted(p.name for p in dest.iterdir()),
                             ["manifest.toml", "model.onnx", "periocular.onnx"])
            doc = tomllib.loads((dest / "manifest.toml").read_text())
            self.assertEqual(doc["name"], ship.TRAINED)
            self.assertEqual(doc["presence"]["model_sha256"], A)
            self.assertEqual((dest / "periocular.onnx").read_bytes(), b"p")

    def test_a_stored_bundle_under_another_name_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            mf.write(d / "manifest.toml", trained())
            with self.assertRaises(ship.ShipError):
                ship.install(d, d / "models", backbone())


class Reference(unittest.TestCase):
    def test_the_backbones_reference_embeddings_are_shared(self):
        import json
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            (d / "reference").mkdir()
            ref = {"crops": [{"file": "a.png", "size": "112", "embeddings": {"mfn-fp32": [0.6, 0.8]}},
                             {"file": "b.png", "size": "160", "embeddings": {"facenet-fp32": [1.0, 0.0]}}]}
            (d / "reference" / "reference.json").write_text(json.dumps(ref))
            doc = ship.finish(trained(), backbone(), tables())
            self.assertEqual(ship.add_reference(d, ship.TRAINED, backbone(), doc), 1)
            got = json.loads((d / "reference" / "reference.json").read_text())["crops"]
            self.assertEqual(got[0]["embeddings"][ship.TRAINED], [0.6, 0.8])
            self.assertNotIn(ship.TRAINED, got[1]["embeddings"])

    def test_another_model_gets_no_borrowed_reference(self):
        with tempfile.TemporaryDirectory() as d:
            doc = trained()
            doc["model"] = dict(doc["model"], sha256="9" * 64)
            with self.assertRaises(ship.ShipError):
                ship.add_reference(Path(d), ship.TRAINED, backbone(), doc)


class Key(unittest.TestCase):
    def test_the_key_follows_backbone_thresholds_data_and_options(self):
        bb, det = backbone(), {"model": {"sha256": "f" * 64}}
        k = ship.ship_key(bb, det, "L", {"split": "6-10"})
        self.assertEqual(k, ship.ship_key(backbone(), det, "L", {"split": "6-10"}))
        bb2 = backbone()
        bb2["thresholds"]["unmasked"] = 0.6
        self.assertNotEqual(k, ship.ship_key(bb2, det, "L", {"split": "6-10"}))
        self.assertNotEqual(k, ship.ship_key(bb, det, "L2", {"split": "6-10"}))
        self.assertNotEqual(k, ship.ship_key(bb, det, "L", {"split": "1-5"}))

    def test_lfw_listing_sees_a_changed_image(self):
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            (d / "deepfunneled" / "A_B").mkdir(parents=True)
            (d / "pairs.txt").write_text("10\t300\n")
            img = d / "deepfunneled" / "A_B" / "A_B_0001.jpg"
            img.write_bytes(b"12")
            a = ship.lfw_listing(d)
            img.write_bytes(b"123")
            self.assertNotEqual(a, ship.lfw_listing(d))


if __name__ == "__main__":
    unittest.main()
