"""models/train: train masked-face models on LFW (issue 14 §2).

    models/train --lfw PATH [--backbone facenet-fp32] [--splits 1-5,6-10]
                 [--method eum] [--masks 2] [--max-per-person 10] [--seed 0]

Steps, each cached by key and timed (wall seconds in <run>/timings.json):
  split       identity-disjoint: split `f1-5` trains on everyone not in the
              pairs of folds 1-5 and is evaluated on folds 1-5 (`f6-10`
              the other way round)
  crops       the Rust pipeline (examples/export_crops.rs): detection,
              alignment and procedural masks exactly as the device makes them
  activations the frozen trunk on every crop (onnxruntime)
  train       per split: the method (eum: embedding-unmasking adapter with
              the self-restrained triplet loss)
  export      per split: graph surgery (backbone + adapter = one ONNX),
              checked against the numpy reference; int8 like the default
              bundle; bundles into <out>/bundles/, signed with the
              workstation key (--key PATH, --no-sign; docs/SIGNING.md)
Evaluation is `facegate eval lfw --models <out> --bundle NAME --folds 1-5`
(docs/TRAINING.md).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from . import backbone as bbm
from . import bundle, crops, eum, graph, plot, run_distil, run_seed, split

HERE = Path(__file__).resolve().parents[1]   # models/
REPO = HERE.parent


def log(msg: str) -> None:
    print(f"[train {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def quantise_like_default(fp32: Path, out: Path, bb: bbm.Backbone, calib: np.ndarray, work: Path,
                          variant_name: str) -> str:
    sys.path.insert(0, str(HERE))
    from facegate_models import quantize
    v = next(v for v in quantize.VARIANTS if v.name == variant_name)
    work.mkdir(parents=True, exist_ok=True)
    for f in work.glob("*_pre.onnx"):
        f.unlink()
    quantize.quantise(fp32, out, v, bb.input_name, calib, work)
    return v.description


# Per-method defaults of the shared options (the seed recipe's are the report's).
METHOD_DEFAULTS = {
    "eum": {"epochs": 30, "lr": 1e-3, "margin": 2.0},
    "distil": {"epochs": 30, "lr": 1e-3, "margin": 2.0},
    "seed": {"epochs": 25, "lr": 0.01, "margin": 0.5},
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lfw", type=Path, required=True, help="LFW folder (deepfunneled/, pairs.txt)")
    ap.add_argument("--models", type=Path, default=Path(os.environ.get("FACEGATE_MODELS", HERE / "out")),
                    help="pretrained bundles (default $FACEGATE_MODELS or models/out)")
    ap.add_argument("--out", type=Path, default=HERE / "trained", help="trained bundles and runs (git-ignored)")
    ap.add_argument("--cache", type=Path, required=True, help="crops and activations cache")
    ap.add_argument("--backbone", default="facenet-fp32", help="fp32 embedder bundle to train on")
    ap.add_argument("--int8", default="int8-qlinear",
                    help="quantisation variant of facegate_models.quantize for the int8 bundle "
                         "(<family>-<this>); 'none' to skip")
    ap.add_argument("--splits", default="1-5,6-10",
                    help="evaluated folds of each model, ';'-free list of ranges: 1-5,6-10")
    ap.add_argument("--method", default="eum", choices=["eum", "distil", "seed"],
                    help="eum: embedding-unmasking adapter (method c); distil: the tail fine-tuned "
                         "on periocular crops (methods b+e, run_distil.py); seed: the seed report's "
                         "triplet recipe on FaceNet (method a, run_seed.py)")
    ap.add_argument("--cut", type=float, default=0.5, help="(distil) periocular cut, IOD below the eyes")
    ap.add_argument("--whole", type=float, default=0.0,
                    help="(distil) weight of whole-face masked -> teacher whole unmasked")
    ap.add_argument("--ident", type=float, default=0.1, help="(distil) weight of the CosFace term")
    ap.add_argument("--ident-whole", type=float, default=0.0,
                    help="(distil) weight of a CosFace term on unmasked whole faces")
    ap.add_argument("--tag", default="",
                    help="(distil) bundle/run name suffix after the method, e.g. 'v2' -> <family>-masked-distil-v2-f1-5")
    ap.add_argument("--tail-for", default="periocular", choices=["periocular", "all"],
                    help="(distil) periocular: the trained network is the bundle's periocular.onnx "
                         "([periocular_model], periocular crops only) beside the unchanged backbone as "
                         "model.onnx (whole faces), bundle <family>-masked-distil[-tag]-peri-<split>; "
                         "all: the trained network is the one model.onnx, <family>-masked-distil[-tag]-<split>")
    ap.add_argument("--id-margin", type=float, default=0.2, help="(distil) CosFace margin")
    ap.add_argument("--scale", type=float, default=32.0, help="(distil) CosFace scale")
    ap.add_argument("--l2sp", type=float, default=1e-3, help="(distil) decay towards the pretrained weights")
    ap.add_argument("--masks", type=int, default=2, help="procedural masked crops per image")
    ap.add_argument("--max-per-person", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="default: 30 (seed: 25)")
    ap.add_argument("--lr", type=float, default=None, help="default: 1e-3 (seed: 0.01)")
    ap.add_argument("--margin", type=float, default=None,
                    help="triplet margin; default: 2.0 (eum, squared distances), 0.5 (seed)")
    ap.add_argument("--keep", type=float, default=1.0)
    ap.add_argument("--key", type=Path, default=None,
                    help="signing key for the trained bundles (docs/SIGNING.md; default "
                         "$FACEGATE_SIGNING_KEY or ~/.config/facegate/signing-key, made on first use)")
    ap.add_argument("--no-sign", action="store_true", help="leave the trained bundles unsigned")
    ap.add_argument("--limit-people", type=int, default=0, help="(tests) use only the first N training people")
    a = ap.parse_args(argv)
    for k, v in METHOD_DEFAULTS[a.method].items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    # The signing key first: a bad key fails now, not after the training.
    key = None
    if not a.no_sign:
        import facegate_sign
        try:
            key = facegate_sign.load_key(a.key or facegate_sign.default_key_path(), log=log)
        except facegate_sign.KeyError_ as e:
            raise SystemExit(f"train: {e}")
        log(f"trained bundles are signed by {facegate_sign.public_key_string(key)}")

    timings: dict[str, float] = {}
    t = time.time()
    pairs = split.parse_pairs((a.lfw / "pairs.txt").read_text())
    people = split.list_people(a.lfw / "deepfunneled")
    specs = [s for s in a.splits.split(",") if s]
    splits = []
    for s in specs:
        sp = split.make_split(pairs, people, split.parse_folds(s), a.max_per_person, a.seed)
        if a.limit_people:
            keep = set(sp.train_people[:a.limit_people])
            sp.train_people = sorted(keep)
            sp.train_images = [i for i in sp.train_images if split.person(i) in keep]
        splits.append(sp)
        log(f"split {sp.name}: {sp.notes}")
    timings["split"] = time.time() - t

    bb = bbm.Backbone.open(a.models, a.backbone)
    family = a.backbone.removesuffix("-fp32")
    images = sorted({i for sp in splits for i in sp.train_images})
    t = time.time()
    c = crops.export(REPO, a.lfw, images, a.cache / "crops", a.masks, a.seed, a.threads, a.backbone, a.models)
    timings["crops"] = time.time() - t
    log(f"crops {c.key}: {len(c)} crops of {len(images)} images, {c.failures} failures "
        f"({timings['crops']:.0f} s now; {c.seconds:.0f} s when made)")
    if c.size != bb.size:
        raise SystemExit(f"crops are {c.size} px, {bb.name} wants {bb.size}")

    pid = {p: k for k, p in enumerate(sorted(people))}
    iid = {i: k for k, i in enumerate(images)}
    if a.method in ("distil", "seed"):
        a.repo = REPO
        runner = run_distil if a.method == "distil" else run_seed
        made = runner.run(a, splits, bb, c, pid, iid, key, log, timings)
        bundle.link_support(a.out, a.models, ["retinaface-mnet025", a.backbone])
        (a.out / "timings.json").write_text(json.dumps(timings, indent=1))
        log("wall seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
        log("bundles: " + ", ".join(made))
        return 0

    t = time.time()
    act, spent = bbm.embed_cached(bb, c.pixels, c.key, a.cache / "activations", a.threads, log=log)
    timings["activations"] = time.time() - t
    log(f"activations: {act.shape} ({timings['activations']:.0f} s)")

    row_person = np.array([pid[split.person(i)] for i in c.image])
    row_image = np.array([iid[i] for i in c.image])
    row_var = np.array(c.variant)
    code = bundle.code_version(REPO)
    made = []
    for sp in splits:
        run = a.out / "runs" / f"{family}-{a.method}-{sp.name}"
        run.mkdir(parents=True, exist_ok=True)
        tp = {pid[p] for p in sp.train_people}
        rows = np.flatnonzero(np.isin(row_person, list(tp)))
        # The split's guarantee, checked on the rows actually trained on.
        assert not ({c.image[r].split("/")[0] for r in rows} & sp.eval_people)
        cfg = eum.Config(epochs=a.epochs, lr=a.lr, margin=a.margin, keep=a.keep, seed=a.seed)
        t = time.time()
        res = eum.train(act[rows], row_person[rows], row_var[rows], row_image[rows], cfg, log=log)
        timings[f"train {sp.name}"] = time.time() - t
        np.savez(run / "weights.npz", **res.weights)
        (run / "history.json").write_text(json.dumps(res.history, indent=1))
        plot.loss_curve(res.history, run / "loss.png",
                        f"{family} {a.method} {sp.name}: SRT + keep loss (train people / held-out 10%)")

        t = time.time()
        import onnx
        m = graph.append_adapter(onnx.load(str(bb.model)), bb.output_name, res.weights, cfg.alpha)
        fp32 = run / "model-fp32.onnx"
        onnx.save(m, str(fp32))
        # Parity: the one ONNX on crops == numpy adapter on the cached activations.
        probe = rows[:: max(1, len(rows) // 16)][:16]
        s = bb.session(a.threads, fp32)
        got = s.run([bb.output_name], {bb.input_name: bb.preprocess(np.asarray(c.pixels[probe]))})[0]
        want = graph.adapter_forward(np.asarray(act[probe]), res.weights, cfg.alpha)
        err = float(np.abs(got - want).max())
        if err > 1e-3:
            raise SystemExit(f"graph surgery: ONNX vs numpy max diff {err}")
        name = f"{family}-masked-{a.method}-{sp.name}"
        training = {
            "data": f"LFW deepfunneled ({a.lfw.name}): {len(sp.train_people)} people not in the pairs of "
                    f"folds {sp.name[1:]}, {len(set(c.image[r] for r in rows))} images (at most "
                    f"{a.max_per_person} per person), each unmasked + {a.masks} procedural masks "
                    f"(Rust pipeline, crops {c.key})",
            "method": f"{a.method}: embedding-unmasking adapter (512-512 leaky-ReLU residual), "
                      f"self-restrained triplet loss (Boutros et al. 2022) + keep term",
            "split": sp.name,
            "eval_folds": sp.name[1:],
            "seed": a.seed,
            "epochs": a.epochs, "lr": a.lr, "margin": a.margin, "keep": a.keep,
            "code": code,
        }
        d = bundle.write(a.out, name, bb, fp32, "fp32", training, key=key)
        made.append(d.name)
        timings[f"export {sp.name} fp32"] = time.time() - t
        log(f"bundle {d} (onnx vs numpy max diff {err:.2e})")
        if a.int8 != "none":
            t = time.time()
            cal = rows[np.random.default_rng(a.seed).permutation(len(rows))[:96]]
            q = run / "model-int8.onnx"
            desc = quantise_like_default(fp32, q, bb, bb.preprocess(np.asarray(c.pixels[np.sort(cal)])),
                                         run / "quant", f"{family}-{a.int8}")
            qi = bb.session(a.threads, q).run([bb.output_name],
                                              {bb.input_name: bb.preprocess(np.asarray(c.pixels[probe]))})[0]
            cos = float((qi * got).sum(1).mean())
            d8 = bundle.write(a.out, f"{name}-int8", bb, q, "int8", training,
                              {"quantised_with": desc,
                               "calibration": f"96 training crops of split {sp.name} (masked and unmasked)"},
                              key=key)
            made.append(d8.name)
            timings[f"export {sp.name} int8"] = time.time() - t
            log(f"bundle {d8} (int8 vs fp32 mean cosine {cos:.4f})")
        (run / "timings.json").write_text(json.dumps(timings, indent=1))
    bundle.link_support(a.out, a.models, ["retinaface-mnet025", a.backbone,
                                          f"{family}-{a.int8}" if a.int8 != "none" else a.backbone])
    (a.out / "timings.json").write_text(json.dumps(timings, indent=1))
    log("wall seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items()))
    log("bundles: " + ", ".join(made))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
