"""Ship the masked-trained embedder as the device default (issue 14 §4).

`models/build --lfw PATH --train` runs this after installing the pretrained
bundles (and the presence classifier) into the models folder:

1. **train** `models/train --backbone mobilefacenet-fp32 --method distil`
   on split `f6-10` (every LFW person outside folds 6–10; the crops and
   trunk activations are cached under CACHE/train);
2. **calibrate** its periocular threshold with `facegate eval lfw --folds
   6-10 --periocular 0.5` (the device pipeline, people the model never saw)
   and `facegate_train.calibrate` (whole-face thresholds: the backbone's,
   the same model.onnx);
3. **install** it into the models folder as `mobilefacenet-masked`
   (`TRAINED` here, `bundle::TRAINED_EMBEDDER` in Rust), which the daemon,
   the CLI and scripts/demo use when no embedder is named. Its [presence]
   is the backbone's classifier when that was trained on the same
   model.onnx. models/build signs it with the other bundles.

The calibrated bundle is kept in CACHE/ship/<key>, the key covering this
package's sources, the backbone (model and thresholds), the detector, the
LFW listing and the options, so a rebuild of the models folder reinstalls
it in a second; anything else retrains (~20 min on 2 cores once the crops
and activations are cached, ~35 min before).

    python3 -m facegate_train.ship --lfw LFW --models models/out --cache ~/.cache/facegate
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facegate_models import manifest as mf  # noqa: E402

from . import calibrate  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
TRAINED = "mobilefacenet-masked"
BACKBONE = "mobilefacenet-fp32"
DETECTOR = "retinaface-mnet025"
VERSION = "1"


class ShipError(Exception):
    pass


def log(msg: str) -> None:
    print(f"[ship {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def trained_name(split: str) -> str:
    """The bundle models/train --method distil writes for `split` ("6-10")."""
    return f"{BACKBONE.removesuffix('-fp32')}-masked-distil-peri-f{split}"


def lfw_listing(lfw: Path) -> str:
    """sha256 of pairs.txt and of the image names and sizes."""
    h = hashlib.sha256((lfw / "pairs.txt").read_bytes())
    for person in sorted(os.listdir(lfw / "deepfunneled")):
        d = lfw / "deepfunneled" / person
        if d.is_dir():
            for f in sorted(os.listdir(d)):
                h.update(f"{person}/{f} {(d / f).stat().st_size}\n".encode())
    return h.hexdigest()


def ship_key(backbone: dict, detector: dict, listing: str, options: dict) -> str:
    h = hashlib.sha256(VERSION.encode())
    for p in sorted(HERE.glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    h.update(backbone["model"]["sha256"].encode())
    h.update(json.dumps(backbone.get("thresholds", {}), sort_keys=True).encode())
    h.update(detector["model"]["sha256"].encode())
    h.update(listing.encode())
    h.update(json.dumps(options, sort_keys=True).encode())
    return h.hexdigest()[:16]


def finish(doc: dict, backbone: dict, table_doc: dict) -> dict:
    """The trained bundle's manifest, calibrated and renamed TRAINED.
    `doc`: the trained bundle's manifest as models/train wrote it;
    `table_doc`: the thresholds.toml of its held-out evaluation."""
    name, table = calibrate.pick_table(table_doc, doc["name"])
    out = dict(doc)
    out["thresholds"] = calibrate.thresholds(doc, backbone, name, table)
    prov = dict(out.get("provenance", {}))
    prov["shipped_as"] = f"{TRAINED}: {doc['name']} calibrated by facegate_train.ship"
    out["provenance"] = prov
    out["name"] = TRAINED
    return out


def with_presence(doc: dict, backbone: dict) -> dict:
    """`doc` with the backbone's current [presence] when it was trained on
    the same model.onnx, else none (the daemon refuses a mismatch)."""
    out = {k: v for k, v in doc.items() if k != "presence"}
    p = backbone.get("presence")
    if p is not None and p.get("model_sha256") == doc["model"]["sha256"]:
        out["presence"] = p
    return out


def install(stored: Path, models: Path, backbone: dict) -> Path:
    """Copy the stored bundle into `models`/bundles/TRAINED (replacing any),
    unsigned (models/build signs the folder afterwards)."""
    doc = tomllib.loads((stored / "manifest.toml").read_text())
    if doc.get("name") != TRAINED:
        raise ShipError(f"{stored}: manifest names {doc.get('name')!r}, not {TRAINED!r}")
    dest = models / "bundles" / TRAINED
    tmp = dest.with_name(f".{TRAINED}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for sec in ("model", "periocular_model"):
        if sec in doc:
            shutil.copyfile(stored / doc[sec]["file"], tmp / doc[sec]["file"])
    mf.write(tmp / "manifest.toml", with_presence(doc, backbone))
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    return dest


def add_reference(models: Path, name: str, backbone: dict, doc: dict) -> int:
    """Give bundle `name` the backbone's onnxruntime reference embeddings in
    `models`/reference/reference.json (tests/embed_parity.rs checks every
    embedder bundle against them): its model.onnx is the backbone's, so they
    are its reference too. Returns the number of crops."""
    if doc["model"]["sha256"] != backbone["model"]["sha256"]:
        raise ShipError(f"{name}: model.onnx is not {backbone['name']}'s: no reference to share")
    path = models / "reference" / "reference.json"
    ref = json.loads(path.read_text())
    n = 0
    for crop in ref.get("crops", []):
        e = crop.get("embeddings", {})
        if backbone["name"] in e:
            e[name] = e[backbone["name"]]
            n += 1
    if not n:
        raise ShipError(f"{path}: no reference embeddings of {backbone['name']}")
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(ref, indent=1))
    os.replace(tmp, path)
    return n


def facegate_binary() -> Path:
    if os.environ.get("FACEGATE_BIN"):
        return Path(os.environ["FACEGATE_BIN"])
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "facegate"], cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return target / "release" / "facegate"


def build(a, store: Path) -> None:
    """Train, evaluate and calibrate into `store` (made atomically)."""
    from . import cli
    timings = {}
    trained = a.trained
    t = time.time()
    argv = ["--lfw", str(a.lfw), "--models", str(a.models), "--out", str(trained),
            "--cache", str(a.cache / "train"), "--backbone", BACKBONE, "--method", "distil",
            "--int8", "none", "--threads", str(a.threads), "--epochs", str(a.epochs),
            "--splits", a.split, "--seed", str(a.seed), "--no-sign"]
    if cli.main(argv) != 0:
        raise ShipError("models/train failed")
    timings["train"] = time.time() - t
    name = trained_name(a.split)
    bdir = trained / "bundles" / name
    t = time.time()
    ev = store.with_name(store.name + ".eval")
    cmd = [str(facegate_binary()), "--models", str(trained), "eval", "lfw", "--data", str(a.lfw),
           "--folds", a.split, "--bundle", name, "--masks", "procedural", "--periocular", str(a.cut),
           "--threads", str(a.threads), "--out", str(ev)]
    log(" ".join(cmd))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    timings["evaluate"] = time.time() - t
    doc = tomllib.loads((bdir / "manifest.toml").read_text())
    backbone = tomllib.loads((a.models / "bundles" / BACKBONE / "manifest.toml").read_text())
    shipped = finish(doc, backbone, tomllib.loads((ev / "thresholds.toml").read_text()))
    part = store.with_name(store.name + ".partial")
    shutil.rmtree(part, ignore_errors=True)
    part.mkdir(parents=True)
    for sec in ("model", "periocular_model"):
        shutil.copyfile(bdir / doc[sec]["file"], part / doc[sec]["file"])
    mf.write(part / "manifest.toml", shipped)
    shutil.copyfile(ev / "report.md", part / "report.md")
    (part / "timings.json").write_text(json.dumps(timings, indent=1))
    shutil.rmtree(store, ignore_errors=True)
    os.replace(part, store)
    t = shipped["thresholds"]
    log(f"{name} -> {TRAINED}: periocular {t['periocular']} at cut {t['periocular_cut']} "
        f"(calibration FRR {t['frr_periocular']}); train {timings['train']:.0f} s, "
        f"evaluate {timings['evaluate']:.0f} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m facegate_train.ship", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lfw", type=Path, required=True, help="LFW folder (deepfunneled/, pairs.txt)")
    ap.add_argument("--models", type=Path, required=True, help="installed models folder (bundles/)")
    ap.add_argument("--cache", type=Path, required=True, help="FACEGATE_CACHE (train/ and ship/ inside)")
    ap.add_argument("--trained", type=Path, default=HERE.parent / "trained",
                    help="models/train's output folder (git-ignored)")
    ap.add_argument("--split", default="6-10", help="held-out folds: trained without their people, calibrated on them")
    ap.add_argument("--cut", type=float, default=0.5, help="periocular cut (IOD below the eyes)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    a = ap.parse_args(argv)
    try:
        if not (a.lfw / "pairs.txt").exists() or not (a.lfw / "deepfunneled").is_dir():
            raise ShipError(f"{a.lfw} is not an LFW folder (deepfunneled/, pairs.txt)")
        backbone = tomllib.loads((a.models / "bundles" / BACKBONE / "manifest.toml").read_text())
        detector = tomllib.loads((a.models / "bundles" / DETECTOR / "manifest.toml").read_text())
        if backbone.get("thresholds", {}).get("status") != "calibrated":
            raise ShipError(f"{BACKBONE} is uncalibrated in {a.models}: nothing to build the trained "
                            f"bundle's whole-face thresholds on (models/thresholds.toml)")
        options = {"split": a.split, "cut": a.cut, "epochs": a.epochs, "seed": a.seed}
        key = ship_key(backbone, detector, lfw_listing(a.lfw), options)
        store = a.cache / "ship" / key
        if (store / "manifest.toml").exists():
            log(f"cached {store}")
        else:
            log(f"training {TRAINED} (key {key}); a first run takes 30-40 min on 2 cores")
            build(a, store)
        dest = install(store, a.models, backbone)
        n = add_reference(a.models, TRAINED, backbone, tomllib.loads((dest / "manifest.toml").read_text()))
        log(f"installed {dest} (reference embeddings of {n} crops: {BACKBONE}'s, the same model.onnx)")
    except (ShipError, calibrate.CalibrationError, OSError, KeyError, tomllib.TOMLDecodeError,
            subprocess.CalledProcessError) as e:
        print(f"ship: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
