"""`models/train --method seed`: method (a), the seed report's recipe
(seed_recipe.py), after the shared split and crops steps of cli.py.

  activations  FaceNet up to its 1792-d pool on every crop, cached
  parity       FaceNet's own last layer (numpy) on the cached activations ==
               the whole pretrained ONNX on the crops (onnxruntime)
  train        per split, on the split's training people only
  export       the pretrained ONNX with its last layer replaced by the trained
               tail; checked against the numpy reference on 16 crops; bundle
               `facenet-masked-seed-<split>` (one network, fp32)
"""
from __future__ import annotations

import hashlib
import json
import time

import numpy as np
import onnx

from . import backbone as bbm
from . import bundle, plot, seed_recipe, split


def trunk_for(bb: bbm.Backbone, cache, dim: int) -> bbm.Trunk:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"seed-trunk-{bb.sha256[:16]}.onnx"
    if not path.exists():
        tmp = path.with_suffix(".part")
        onnx.save(seed_recipe.trunk(onnx.load(str(bb.model)), bb.input_name), str(tmp))
        tmp.rename(path)
    key = hashlib.sha256(f"{bb.sha256}|{seed_recipe.POOL}".encode()).hexdigest()[:16]
    return bbm.Trunk(path, seed_recipe.POOL, (1, 1, dim), key, lambda px: px)


def check(bb, model, pixels, act, fwd, threads: int) -> float:
    got = bb.session(threads, model).run([bb.output_name], {bb.input_name: bb.preprocess(pixels)})[0]
    return float(np.abs(got - fwd(act)).max())


def run(a, splits, bb: bbm.Backbone, c, pid, iid, key, log, timings: dict) -> list[str]:
    model = onnx.load(str(bb.model))
    w0 = seed_recipe.locate(model)
    t = time.time()
    tr = trunk_for(bb, a.cache / "trunks", w0["W1"].shape[0])
    act4, _ = bbm.embed_cached(bb, c.pixels, c.key, a.cache / "activations", a.threads, log=log, trunk=tr)
    act = np.asarray(act4).reshape(len(c), -1)
    timings["activations"] = time.time() - t
    log(f"activations: {act.shape} ({timings['activations']:.0f} s)")
    probe = np.arange(0, len(c), max(1, len(c) // 16))[:16]
    err = check(bb, bb.model, np.asarray(c.pixels[probe]), act[probe],
                lambda x: seed_recipe.pretrained_forward(x, w0), a.threads)
    log(f"last layer reference vs pretrained ONNX on 16 crops: max diff {err:.2e}")
    if err > 1e-4:
        raise SystemExit(f"the last layer's numpy reference does not match the model ({err})")

    person = np.array([pid[split.person(i)] for i in c.image])
    image = np.array([iid[i] for i in c.image])
    variant = np.array(c.variant)
    code = bundle.code_version(a.repo)
    made = []
    for sp in splits:
        run_dir = a.out / "runs" / f"facenet-seed-{sp.name}"
        run_dir.mkdir(parents=True, exist_ok=True)
        rows = np.flatnonzero(np.isin(person, [pid[p] for p in sp.train_people]))
        assert not ({c.image[r].split("/")[0] for r in rows} & sp.eval_people)
        cfg = seed_recipe.Config(epochs=a.epochs, lr=a.lr, margin=a.margin, seed=a.seed)
        t = time.time()
        res = seed_recipe.train(act, person, image, variant, rows, w0, cfg, log=log)
        timings[f"train {sp.name}"] = time.time() - t
        seed_recipe.save_weights(run_dir / "weights.npz", res.weights)
        (run_dir / "history.json").write_text(json.dumps(res.history, indent=1))
        plot.loss_curve(res.history, run_dir / "loss.png",
                        f"facenet seed recipe {sp.name}: triplet loss (train / held-out people)")
        t = time.time()
        fp32 = run_dir / "model-fp32.onnx"
        onnx.save(seed_recipe.export(model, res.weights), str(fp32))
        sel = rows[probe % len(rows)]
        err = check(bb, fp32, np.asarray(c.pixels[sel]), act[sel],
                    lambda x: seed_recipe.forward(x, res.weights), a.threads)
        if err > 1e-3:
            raise SystemExit(f"exported ONNX vs numpy: max diff {err}")
        name = f"facenet-masked-seed-{sp.name}"
        training = {
            "data": f"LFW deepfunneled ({a.lfw.name}): {len(sp.train_people)} people not in the pairs of "
                    f"folds {sp.name[1:]}, at most {a.max_per_person} images per person, each unmasked + "
                    f"{a.masks} procedural masks (Rust pipeline, crops {c.key})",
            "method": "seed: the seed report's Experiment 2 recipe: FaceNet frozen but its last layer "
                      "(Bottleneck + BatchNorm), an added Dense + BatchNorm, triplet loss (margin "
                      f"{cfg.margin}), Adam lr {cfg.lr}, batch {cfg.batch}, unmasked anchors, masked "
                      "positives and negatives, a new random negative every epoch; last epoch kept",
            "split": sp.name,
            "eval_folds": sp.name[1:],
            "seed": a.seed,
            "epochs": cfg.epochs, "lr": cfg.lr, "margin": cfg.margin,
            "code": code,
        }
        d = bundle.write(a.out, name, bb, fp32, "fp32", training, key=key)
        made.append(d.name)
        timings[f"export {sp.name} fp32"] = time.time() - t
        log(f"bundle {d} (onnx vs numpy max diff {err:.2e})")
        (run_dir / "timings.json").write_text(json.dumps(timings, indent=1))
    return made
