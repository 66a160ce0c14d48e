"""Calibrated thresholds for a two-network trained bundle (`--tail-for periocular`).

The bundle's model.onnx is the pretrained backbone unchanged, so its whole-face
thresholds (`unmasked`, `masked`, `identify_*`) are the backbone's, calibrated by
models/build (models/thresholds.toml) on LFW images outside pairs.txt; only the
periocular comparison is new. Its threshold comes from `facegate eval lfw
--folds <the model's held-out folds> --bundle <bundle> --periocular CUT`, whose
calibration images are people of those folds only — never in the model's
training — and whose thresholds.toml table `<bundle>+periocular<CUT>` was
computed on the periocular model (its `model_sha256`, checked here).

    python3 -m facegate_train.calibrate --bundle models/trained/bundles/NAME \\
        --periocular-thresholds OUT/thresholds.toml [--backbone DIR] [--key PATH | --no-sign]

Identification levels: the periocular calibration set is smaller than the
backbone's, so its per-person FAR levels stop earlier; the levels it does not
reach get the threshold 1.0 (a masked probe is never identified at a gallery
size that needs them), never an extrapolation.
"""
from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facegate_models import manifest as mf  # noqa: E402

UNREACHED = 1.0


class CalibrationError(Exception):
    pass


def backbone_name(doc: dict) -> str:
    m = re.match(r"(\S+) \(sha256 ([0-9a-f]{64})\)", doc.get("provenance", {}).get("trained_from", ""))
    if not m:
        raise CalibrationError("the bundle's [provenance] trained_from does not name its backbone")
    return m.group(1)


def periocular_levels(far: list, peri_far: list, peri: list) -> list:
    """The periocular thresholds at the backbone's levels `far`: the
    calibration's own value where it reached that level, else UNREACHED."""
    by = {round(f, 12): t for f, t in zip(peri_far, peri)}
    out, last = [], -1.0
    for f in far:
        t = by.get(round(f, 12), UNREACHED)
        last = max(last, t)  # keep the table non-decreasing
        out.append(last)
    return out


def thresholds(bundle: dict, backbone: dict, table_name: str, table: dict) -> dict:
    """The bundle's [thresholds]: the backbone's, with the periocular entries
    from the evaluation's table."""
    pm = bundle.get("periocular_model")
    if not pm:
        raise CalibrationError(f"{bundle['name']} has no [periocular_model]: its one network is new, "
                               f"calibrate it with facegate eval lfw on its held-out folds")
    if backbone["model"]["sha256"] != bundle["model"]["sha256"]:
        raise CalibrationError(f"{bundle['name']}'s model.onnx is not {backbone['name']}'s")
    base = backbone.get("thresholds", {})
    if base.get("status") != "calibrated":
        raise CalibrationError(f"{backbone['name']} has no calibrated thresholds (models/build)")
    if table.get("model_sha256") != pm["sha256"]:
        raise CalibrationError(f"table [{table_name}] was calibrated on model {table.get('model_sha256')}, "
                               f"not on the periocular model {pm['sha256']}")
    if table.get("status") != "calibrated" or table.get("target_far") != base.get("target_far"):
        raise CalibrationError(f"table [{table_name}] is not calibrated at the backbone's target FAR "
                               f"{base.get('target_far')}")
    m = re.fullmatch(re.escape(bundle["name"]) + r"\+periocular([0-9.]+)", table_name)
    if not m:
        raise CalibrationError(f"table [{table_name}] is not {bundle['name']}+periocular<CUT>")
    t = dict(base)
    t["periocular"] = table["masked"]
    t["periocular_cut"] = float(m.group(1))
    t["frr_periocular"] = table["frr_masked"]
    t.pop("identify_periocular", None)
    if "identify_far" in base and "identify_masked" in table:
        t["identify_periocular"] = periocular_levels(base["identify_far"], table["identify_far"],
                                                     table["identify_masked"])
    t["note"] = (f"{base.get('note', '')} Whole faces: {backbone['name']}'s calibration (the same model.onnx). "
                 f"Periocular (masked probes, the trained periocular model): {table.get('data', '')}; "
                 f"levels it does not reach are {UNREACHED}.").strip()
    return t


def pick_table(doc: dict, bundle_name: str) -> tuple[str, dict]:
    names = [k for k in doc if k.startswith(bundle_name + "+periocular")]
    if len(names) != 1:
        raise CalibrationError(f"expected one table {bundle_name}+periocular<CUT>, found {names}")
    return names[0], doc[names[0]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m facegate_train.calibrate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--periocular-thresholds", type=Path, required=True,
                    help="thresholds.toml of facegate eval lfw --folds HELD-OUT --periocular CUT on this bundle")
    ap.add_argument("--backbone", type=Path, default=None,
                    help="the backbone's bundle folder (default: $FACEGATE_MODELS or models/out, "
                         "bundles/<provenance trained_from>)")
    ap.add_argument("--key", type=Path, default=None)
    ap.add_argument("--no-sign", action="store_true")
    a = ap.parse_args(argv)
    try:
        doc = tomllib.loads((a.bundle / "manifest.toml").read_text())
        bb_dir = a.backbone
        if bb_dir is None:
            import os
            models = Path(os.environ.get("FACEGATE_MODELS", Path(__file__).resolve().parents[1] / "out"))
            bb_dir = models / "bundles" / backbone_name(doc)
        backbone = tomllib.loads((bb_dir / "manifest.toml").read_text())
        name, table = pick_table(tomllib.loads(a.periocular_thresholds.read_text()), doc["name"])
        doc["thresholds"] = thresholds(doc, backbone, name, table)
    except (CalibrationError, OSError, KeyError, tomllib.TOMLDecodeError) as e:
        print(f"calibrate: {e}", file=sys.stderr)
        return 1
    path = a.bundle / "manifest.toml"
    mf.write(path, doc)
    (a.bundle / "manifest.sig").unlink(missing_ok=True)
    t = doc["thresholds"]
    print(f"{doc['name']}: unmasked {t.get('unmasked')}, masked {t.get('masked')} ({backbone['name']}); "
          f"periocular {t['periocular']} at cut {t['periocular_cut']} (FRR {t['frr_periocular']})")
    if not a.no_sign:
        import facegate_sign
        key = facegate_sign.load_key(a.key or facegate_sign.default_key_path(), log=print)
        facegate_sign.sign_bundle(a.bundle, key)
        print(f"signed by {facegate_sign.public_key_string(key)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
