"""facegate_train.calibrate: thresholds of a two-network trained bundle."""
import sys
import tempfile
import tomllib
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facegate_train import calibrate as cal  # noqa: E402
from facegate_models import manifest as mf  # noqa: E402

A, P, X = "a" * 64, "b" * 64, "c" * 64
FAR = [1e-1, 7.944e-2, 6.31e-2, 5.012e-2]


def bundle(peri=True):
    d = {"name": "mfn-masked-distil-peri-f6-10", "kind": "embedder",
         "model": {"file": "model.onnx", "sha256": A, "bytes": 1, "format": "onnx", "precision": "fp32"},
         "provenance": {"trained_from": f"mfn-fp32 (sha256 {A})"},
         "thresholds": {"status": "uncalibrated"}}
    if peri:
        d["periocular_model"] = {"file": "periocular.onnx", "sha256": P, "bytes": 1, "format": "onnx",
                                 "precision": "fp32"}
    return d


def backbone():
    return {"name": "mfn-fp32", "model": {"sha256": A},
            "thresholds": {"status": "calibrated", "unmasked": 0.53, "masked": 0.51, "target_far": 1e-4,
                           "periocular": 0.67, "periocular_cut": 0.5, "frr_periocular": 0.49,
                           "identify_far": FAR, "identify_unmasked": [0.3, 0.4, 0.5, 0.6],
                           "identify_masked": [0.3, 0.4, 0.5, 0.6],
                           "identify_periocular": [0.3, 0.4, 0.5, 0.6], "note": "base."}}


def table(sha=P, far=FAR[:2], masked=(0.41, 0.45)):
    return {"status": "calibrated", "unmasked": 0.68, "masked": 0.674, "target_far": 1e-4,
            "frr_masked": 0.406, "model_sha256": sha, "data": "874 images", "identify_far": list(far),
            "identify_masked": list(masked)}


NAME = "mfn-masked-distil-peri-f6-10+periocular0.5"


def write_tables(path: Path, t: dict) -> None:
    """A thresholds.toml as facegate eval lfw writes it: a quoted table name."""
    mf.write(path, {"t": t})
    path.write_text(path.read_text().replace("[t]", f'["{NAME}"]'))


class Thresholds(unittest.TestCase):
    def test_whole_face_from_the_backbone_periocular_from_the_evaluation(self):
        t = cal.thresholds(bundle(), backbone(), NAME, table())
        self.assertEqual((t["unmasked"], t["masked"], t["status"]), (0.53, 0.51, "calibrated"))
        self.assertEqual((t["periocular"], t["periocular_cut"], t["frr_periocular"]), (0.674, 0.5, 0.406))
        self.assertEqual(t["identify_unmasked"], [0.3, 0.4, 0.5, 0.6])
        # Levels the periocular calibration did not reach are never met.
        self.assertEqual(t["identify_periocular"], [0.41, 0.45, 1.0, 1.0])
        self.assertIn("874 images", t["note"])

    def test_levels_stay_non_decreasing(self):
        self.assertEqual(cal.periocular_levels(FAR, FAR[:3], [0.5, 0.4, 0.6]), [0.5, 0.5, 0.6, 1.0])

    def test_refusals(self):
        cases = [
            (bundle(peri=False), backbone(), NAME, table(), "no [periocular_model]"),
            (bundle(), backbone(), NAME, table(sha=X), "not on the periocular model"),
            (bundle(), {**backbone(), "model": {"sha256": X}}, NAME, table(), "is not mfn-fp32's"),
            (bundle(), {**backbone(), "thresholds": {"status": "uncalibrated"}}, NAME, table(),
             "no calibrated thresholds"),
            (bundle(), backbone(), NAME, {**table(), "target_far": 1e-3}, "target FAR"),
            (bundle(), backbone(), "other+periocular0.5", table(), "is not mfn-masked"),
        ]
        for b, bb, name, t, want in cases:
            with self.assertRaises(cal.CalibrationError) as e:
                cal.thresholds(b, bb, name, t)
            self.assertIn(want, str(e.exception))

    def test_backbone_name_from_provenance(self):
        self.assertEqual(cal.backbone_name(bundle()), "mfn-fp32")
        with self.assertRaises(cal.CalibrationError):
            cal.backbone_name({"provenance": {}})


class Command(unittest.TestCase):
    def test_writes_the_manifest_and_drops_a_stale_signature(self):
        with tempfile.TemporaryDirectory() as d:
            d = Path(d)
            (d / "b").mkdir()
            (d / "bb").mkdir()
            mf.write(d / "b" / "manifest.toml", bundle())
            (d / "b" / "manifest.sig").write_text("stale")
            mf.write(d / "bb" / "manifest.toml", backbone())
            write_tables(d / "thresholds.toml", table())
            rc = cal.main(["--bundle", str(d / "b"), "--backbone", str(d / "bb"),
                           "--periocular-thresholds", str(d / "thresholds.toml"), "--no-sign"])
            self.assertEqual(rc, 0)
            got = tomllib.loads((d / "b" / "manifest.toml").read_text())
            self.assertEqual(got["thresholds"]["periocular"], 0.674)
            self.assertEqual(got["periocular_model"]["sha256"], P)
            self.assertFalse((d / "b" / "manifest.sig").exists())
            # A table of another model: refused, manifest unchanged.
            write_tables(d / "thresholds.toml", table(sha=X))
            before = (d / "b" / "manifest.toml").read_text()
            rc = cal.main(["--bundle", str(d / "b"), "--backbone", str(d / "bb"),
                           "--periocular-thresholds", str(d / "thresholds.toml"), "--no-sign"])
            self.assertEqual(rc, 1)
            self.assertEqual((d / "b" / "manifest.toml").read_text(), before)


if __name__ == "__main__":
    unittest.main()
