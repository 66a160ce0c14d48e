"""Trained bundles: model.onnx + manifest.toml in the layout facegate reads
(`<models>/bundles/<name>/`), the manifest derived from the backbone's with
the model section replaced. The training record (data, method, split, seed,
code version, ...) goes into [provenance] as `training_*` keys: the manifest
schema (src/bundle.rs) refuses unknown sections, and [provenance] is free.

A bundle may carry two networks: `model.onnx` (whole faces) and, in
`[periocular_model]` (same fields as [model]), `periocular.onnx` for the
periocular crops of masked probes and of enrolment only."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from facegate_models.fetch import sha256_file

from .backbone import Backbone

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from facegate_models import manifest as mf  # noqa: E402


def code_version(repo: Path) -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, check=True,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "models", "src", "examples"],
                               cwd=repo, capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


PERIOCULAR_FILE = "periocular.onnx"
PRESENCE_KEPT = "kept: model.onnx is the backbone's"
PRESENCE_DROPPED = "dropped: the classifier was trained on the pretrained whole-face embedding"


def _model_section(path: Path, precision: str) -> dict:
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size,
            "format": "onnx", "precision": precision}


def write(out: Path, name: str, bb: Backbone, model: Path, precision: str,
          training: dict, extra_prov: dict | None = None, key=None,
          periocular: Path | None = None) -> Path:
    """Write bundle `name` under `out`/bundles; signed (manifest.sig) with
    `key`, a facegate_sign private key, when given.

    Without `periocular`: one network, `model` (of `precision`) as model.onnx.
    With it: `model` must be the backbone's model file unchanged (its sha256
    is checked against bb.sha256) and keeps the backbone's precision; the
    trained `periocular` (of `precision`) becomes periocular.onnx in
    [periocular_model]. The backbone's [presence] classifier is kept only
    when the written model.onnx is the one it was trained on (its
    model_sha256), else dropped (the daemon refuses a mismatch); either way
    [provenance] training_presence says which."""
    d = out / "bundles" / name
    d.mkdir(parents=True, exist_ok=True)
    if model.resolve() != (d / "model.onnx").resolve():
        shutil.copyfile(model, d / "model.onnx")
    main = _model_section(d / "model.onnx", precision)
    peri = None
    if periocular is not None:
        if main["sha256"] != bb.sha256:
            raise ValueError(f"{name}: with a periocular model, model.onnx must be {bb.name}'s "
                             f"unchanged (sha256 {bb.sha256}), not {model} ({main['sha256']})")
        main["precision"] = bb.manifest["model"]["precision"]
        if periocular.resolve() != (d / PERIOCULAR_FILE).resolve():
            shutil.copyfile(periocular, d / PERIOCULAR_FILE)
        peri = _model_section(d / PERIOCULAR_FILE, precision)
    else:
        (d / PERIOCULAR_FILE).unlink(missing_ok=True)  # a previous two-network bundle's
    doc = {}
    for k, v in bb.manifest.items():
        if k in ("thresholds", "presence", "periocular_model"):
            continue
        doc[k] = v
        if k == "model":
            doc["model"] = main
            if peri is not None:
                doc["periocular_model"] = peri
    doc["name"] = name
    method = str(training["method"]).split(":")[0]  # distil's record is a sentence: "distil: ..."
    doc["version"] = (f"{bb.manifest.get('version', bb.name)}+{method}-{training['split']}"
                      f"+{precision}" + ("+periocular" if peri is not None else ""))
    prov = dict(bb.manifest.get("provenance", {}))
    prov["trained_from"] = f"{bb.name} (sha256 {bb.sha256})"
    presence = bb.manifest.get("presence")
    if presence is not None:
        keep = presence.get("model_sha256") == main["sha256"]
        prov["training_presence"] = PRESENCE_KEPT if keep else PRESENCE_DROPPED
        if keep:
            doc["presence"] = presence
    prov.update(extra_prov or {})
    prov.update({f"training_{k}": v for k, v in training.items()})
    doc["provenance"] = prov
    doc["thresholds"] = {"status": "uncalibrated",
                         "note": "trained model: run facegate eval lfw --folds on its held-out folds to calibrate"}
    mf.write(d / "manifest.toml", doc)
    (d / "manifest.sig").unlink(missing_ok=True)  # it signed the previous manifest
    if key is not None:
        import facegate_sign
        facegate_sign.sign_bundle(d, key)
    return d


def link_support(out: Path, models: Path, names: list[str]) -> None:
    """Make `out` a complete models folder for `facegate eval lfw --models`:
    symlink the detector and pretrained bundles it needs."""
    (out / "bundles").mkdir(parents=True, exist_ok=True)
    for n in names:
        src = (models / "bundles" / n).resolve()
        dst = out / "bundles" / n
        if src.is_dir() and not dst.exists():
            dst.symlink_to(src, target_is_directory=True)
