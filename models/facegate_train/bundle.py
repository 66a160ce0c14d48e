"""Trained bundles: model.onnx + manifest.toml in the layout facegate reads
(`<models>/bundles/<name>/`), the manifest derived from the backbone's with
the model section replaced. The training record (data, method, split, seed,
code version, ...) goes into [provenance] as `training_*` keys: the manifest
schema (src/bundle.rs) refuses unknown sections, and [provenance] is free."""
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


def write(out: Path, name: str, bb: Backbone, model: Path, precision: str,
          training: dict, extra_prov: dict | None = None, key=None) -> Path:
    """Write bundle `name` under `out`/bundles; signed (manifest.sig) with
    `key`, a facegate_sign private key, when given."""
    d = out / "bundles" / name
    d.mkdir(parents=True, exist_ok=True)
    if model.resolve() != (d / "model.onnx").resolve():
        shutil.copyfile(model, d / "model.onnx")
    doc = {k: v for k, v in bb.manifest.items() if k != "thresholds"}
    doc["name"] = name
    doc["version"] = f"{bb.manifest.get('version', bb.name)}+{training['method']}-{training['split']}+{precision}"
    doc["model"] = {"file": "model.onnx", "sha256": sha256_file(d / "model.onnx"),
                    "bytes": (d / "model.onnx").stat().st_size, "format": "onnx", "precision": precision}
    prov = dict(bb.manifest.get("provenance", {}))
    prov["trained_from"] = f"{bb.name} (sha256 {bb.sha256})"
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
