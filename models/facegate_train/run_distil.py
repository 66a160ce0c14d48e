"""`models/train --method distil`: the pipeline of methods (b)+(e) (distil.py)
after the shared split and crops steps of cli.py.

  activations  the trunk (the backbone cut before its tail, head.py) on every
               crop, whole and periocular (greyed like the device), cached
  parity       the tail's numpy reference on the cached activations == the
               whole pretrained ONNX on the crops (onnxruntime)
  train        per split, on the split's training people only
  export       the pretrained ONNX with the tail's initialisers replaced;
               checked against the numpy reference on whole and periocular crops;
               --tail-for periocular (default): bundle `…-peri-<split>` with the
               backbone unchanged as model.onnx (whole faces) and the trained
               network as periocular.onnx; --tail-for all: the trained network
               as the one model.onnx
  look         the split's evaluated people, when their crops are in the cache
               (another split's training people): masked periocular vs unmasked
               periocular and unmasked vs unmasked, pretrained and trained — a
               quick look only; reported figures come from `facegate eval lfw`
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import onnx

from . import backbone as bbm
from . import bundle, distil, head, metrics, periocular, plot, split


def trunk_for(bb: bbm.Backbone, h: head.Head, cache: Path, cut: float | None) -> bbm.Trunk:
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"trunk-{bb.sha256[:16]}.onnx"
    if not path.exists():
        m = head.trunk(onnx.load(str(bb.model)), h, bb.input_name)
        tmp = path.with_suffix(".part")
        onnx.save(m, str(tmp))
        tmp.rename(path)
    tag = "whole" if cut is None else f"peri{cut:g}"
    key = hashlib.sha256(f"{bb.sha256}|{h.cut}|{tag}".encode()).hexdigest()[:16]
    template = bb.manifest["align"]["template"]
    tf = (lambda px: px) if cut is None else (lambda px: periocular.grey_below(px, template, cut))
    c, hh, ww = h.shape
    return bbm.Trunk(path, h.cut, (hh, ww, c), key, tf)


def nchw_check(bb, model: Path, pixels: np.ndarray, act: np.ndarray, w: dict, threads: int) -> float:
    """max |ONNX(model) on crops − numpy tail on their cached activations|."""
    got = bb.session(threads, model).run([bb.output_name], {bb.input_name: bb.preprocess(pixels)})[0]
    want = distil.forward_nhwc(np.asarray(act, np.float32), distil.to_tf_layout(w))
    return float(np.abs(got - want).max())


def look(act_w, act_p, rows_u, rows_m, person, image, t: dict) -> dict:
    """Quick figures on rows of evaluated people (see module doc)."""
    eu = distil.embed(act_w[rows_u], t)
    pu = distil.embed(act_p[rows_u], t)
    pm = distil.embed(act_p[rows_m], t)
    # U-U: the symmetric matrix counts each pair twice; the rates are unaffected
    gu, iu = metrics.scores(eu, person[rows_u], image[rows_u], eu, person[rows_u], image[rows_u])
    gm, im = metrics.scores(pm, person[rows_m], image[rows_m], pu, person[rows_u], image[rows_u])
    return {"U-U whole": metrics.summary(gu, iu), "M-U periocular": metrics.summary(gm, im)}


def run(a, splits, bb: bbm.Backbone, c, pid, iid, key, log, timings: dict) -> list[str]:
    cut = a.cut
    model = onnx.load(str(bb.model))
    h = head.locate(model)
    t = time.time()
    tw, tp = trunk_for(bb, h, a.cache / "trunks", None), trunk_for(bb, h, a.cache / "trunks", cut)
    act_w, _ = bbm.embed_cached(bb, c.pixels, c.key, a.cache / "activations", a.threads, log=log, trunk=tw)
    act_p, _ = bbm.embed_cached(bb, c.pixels, c.key, a.cache / "activations", a.threads, log=log, trunk=tp)
    timings["activations"] = time.time() - t
    log(f"activations: whole {act_w.shape}, periocular {act_p.shape} ({timings['activations']:.0f} s)")
    probe = np.arange(0, len(c), max(1, len(c) // 16))[:16]
    err = nchw_check(bb, bb.model, np.asarray(c.pixels[probe]), act_w[probe], h.weights, a.threads)
    log(f"tail reference vs pretrained ONNX on 16 crops: max diff {err:.2e}")
    if err > 1e-4:
        raise SystemExit(f"the tail's numpy reference does not match the model ({err})")

    row_person = np.array([pid[split.person(i)] for i in c.image])
    row_image = np.array([iid[i] for i in c.image])
    row_var = np.array(c.variant)
    code = bundle.code_version(a.repo)
    family = a.backbone.removesuffix("-fp32")
    made = []
    label = a.method + (f"-{a.tag}" if a.tag else "")
    for sp in splits:
        run_dir = a.out / "runs" / f"{family}-{label}-{sp.name}"
        run_dir.mkdir(parents=True, exist_ok=True)
        tp_ids = {pid[p] for p in sp.train_people}
        rows = np.flatnonzero(np.isin(row_person, list(tp_ids)))
        assert not ({c.image[r].split("/")[0] for r in rows} & sp.eval_people)
        g = distil.group(row_image, row_var, row_person, rows)
        cfg = distil.Config(epochs=a.epochs, lr=a.lr, keep=a.keep, whole=a.whole, ident=a.ident, ident_whole=a.ident_whole,
                            margin=a.id_margin, scale=a.scale, l2sp=a.l2sp, seed=a.seed)
        t = time.time()
        res = distil.train(act_w, act_p, h.weights, g, cfg, log=log)
        timings[f"train {sp.name}"] = time.time() - t
        np.savez(run_dir / "weights.npz", **res.weights)
        (run_dir / "history.json").write_text(json.dumps(res.history, indent=1))
        plot.loss_curve(res.history, run_dir / "loss.png",
                        f"{family} distil {sp.name}: invariance + keep + identity (train / held-out people)")

        t = time.time()
        fp32 = run_dir / "model-fp32.onnx"
        onnx.save(head.write_weights(model, h, res.weights), str(fp32))
        px = np.asarray(c.pixels[rows[probe % len(rows)]])
        err_w = nchw_check(bb, fp32, px, act_w[rows[probe % len(rows)]], res.weights, a.threads)
        err_p = nchw_check(bb, fp32, tp.transform(px), act_p[rows[probe % len(rows)]], res.weights, a.threads)
        if max(err_w, err_p) > 1e-3:
            raise SystemExit(f"exported ONNX vs numpy: max diff {err_w} / {err_p}")

        # A quick look at the split's evaluated people when their crops exist.
        ev_ids = {pid[p] for p in sp.eval_people}
        ev = np.flatnonzero(np.isin(row_person, list(ev_ids)))
        if len(ev):
            ge = distil.group(row_image, row_var, row_person, ev)
            rm = np.array([m[0] for m in ge.masked])
            quick = {"pretrained": look(act_w, act_p, ge.unmasked, rm, row_person, row_image,
                                        distil.to_tf_layout(h.weights)),
                     "trained": look(act_w, act_p, ge.unmasked, rm, row_person, row_image,
                                     distil.to_tf_layout(res.weights)),
                     "images": int(len(ge.unmasked))}
            (run_dir / "look.json").write_text(json.dumps(quick, indent=1))
            for k in ("pretrained", "trained"):
                for cond, m in quick[k].items():
                    log(f"look {sp.name} {k:10s} {cond:15s} EER {m['eer']:.4f} TAR@1e-3 {m['tar_1e-3']:.4f} "
                        f"TAR@1e-4 {m['tar_1e-4']:.4f} ({m['genuine']} / {m['impostor']})")

        peri = getattr(a, "tail_for", "periocular") == "periocular"
        name = f"{family}-masked-{label}{'-peri' if peri else ''}-{sp.name}"
        training = {
            "data": f"LFW deepfunneled ({a.lfw.name}): {len(sp.train_people)} people not in the pairs of "
                    f"folds {sp.name[1:]}, {len(g.unmasked)} images (at most {a.max_per_person} per person), "
                    f"each unmasked + {a.masks} procedural masks (Rust pipeline, crops {c.key})",
            "method": f"{a.method}: the backbone's tail ({', '.join(sorted(set(n for _, n, _ in head.TAIL)))}) "
                      f"fine-tuned on cached trunk activations: masked periocular (cut {cut}) -> teacher "
                      f"unmasked periocular (1-cos), keep terms on unmasked whole and periocular crops, "
                      f"CosFace on teacher identity centres, L2-SP; held-out-loss epoch {res.best_epoch}",
            "split": sp.name,
            "eval_folds": sp.name[1:],
            "seed": a.seed,
            "epochs": a.epochs, "lr": a.lr, "keep": a.keep, "whole": a.whole, "ident": a.ident, "ident_whole": a.ident_whole,
            "margin": a.id_margin, "scale": a.scale, "l2sp": a.l2sp, "periocular_cut": cut,
            "best_epoch": res.best_epoch,
            "tail_for": "periocular" if peri else "all",
            "code": code,
        }
        if peri:
            d = bundle.write(a.out, name, bb, bb.model, "fp32", training, key=key, periocular=fp32)
            got_sha = bundle.sha256_file(d / "model.onnx")
            if got_sha != bb.sha256:
                raise SystemExit(f"{d}: model.onnx {got_sha} is not {bb.name}'s ({bb.sha256})")
        else:
            d = bundle.write(a.out, name, bb, fp32, "fp32", training, key=key)
        made.append(d.name)
        timings[f"export {sp.name} fp32"] = time.time() - t
        log(f"bundle {d} (onnx vs numpy max diff {max(err_w, err_p):.2e})")
        (run_dir / "timings.json").write_text(json.dumps(timings, indent=1))
    return made
