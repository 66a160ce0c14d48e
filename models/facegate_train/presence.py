"""Mask presence classifier (issue 14 §6): a models/build step when LFW is given.

    python -m facegate_train.presence --lfw PATH --models OUT --cache CACHE
           [--bundle mobilefacenet-fp32] [--masks 3] [--max-bare 0.02] [--seed 0]

L2-regularised logistic regression on the embedder's L2-normalised
whole-face embedding: negatives = unmasked crops, positives = procedurally
masked crops (`--masks` seeded styles per image), all made by the device's
own pipeline (examples/export_crops.rs: detection, alignment, procedural
masks). People: the LFW people in no pair of pairs.txt (split.py with every
fold evaluated), so no evaluated person is ever seen. MaskTheFace templates
(the unseen-renderer test) and M2FRED (the real-mask test) are never used.

The decision threshold is set on person-grouped 5-fold cross-validation's
out-of-fold probabilities of the *bare* faces: the smallest threshold that
calls at most `--max-bare` of them masked (a bare face called masked is
compared as a periocular crop, the costlier error; the threshold sits at
the bare faces' tail, as far from the training masks as that allows, so
unseen mask kinds are still caught). The regularisation strength is the
one whose out-of-fold masked crops are best caught at that threshold (the
most regularised within RECALL_TOLERANCE of the best). The final model is
fitted on every training person.

Result: a `[presence]` section in the bundle's installed manifest
(`kind = "logistic-embedding"`, weights, bias, threshold, model_sha256, data;
read by src/bundle/presence.rs), cached under CACHE/presence by a key over
this file, the model's sha256, the crops and the options, so a second run
only rewrites the section. models/build signs the manifests afterwards.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
import tomllib
from pathlib import Path

import numpy as np

from . import backbone as bbm
from . import crops as crops_mod
from . import split

HERE = Path(__file__).resolve().parents[1]   # models/
REPO = HERE.parent
KIND = "logistic-embedding"
LAMBDAS = (1e-9, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4)
# Lambdas within this much out-of-fold recall of the best count as equal;
# the most regularised of them is kept (the better bet on unseen masks).
RECALL_TOLERANCE = 0.005


def log(msg: str) -> None:
    print(f"[presence {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))


def fit(x: np.ndarray, y: np.ndarray, lam: float, iters: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method (the bias is
    not penalised; classes weighted to equal total weight). Returns (w, b)."""
    n, d = x.shape
    xb = np.hstack([x.astype(np.float64), np.ones((n, 1))])
    y = y.astype(np.float64)
    pos = max(y.sum(), 1.0)
    neg = max(n - y.sum(), 1.0)
    sw = np.where(y > 0.5, n / (2 * pos), n / (2 * neg))
    reg = np.full(d + 1, lam * n)
    reg[-1] = 0.0
    theta = np.zeros(d + 1)
    for _ in range(iters):
        p = sigmoid(xb @ theta)
        g = xb.T @ (sw * (p - y)) + reg * theta
        h = (xb * (sw * p * (1 - p))[:, None]).T @ xb + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(h, g)
        theta -= step
        if np.abs(step).max() < 1e-8:
            break
    return theta[:-1], float(theta[-1])


def predict(x: np.ndarray, w: np.ndarray, b: float) -> np.ndarray:
    return sigmoid(x.astype(np.float64) @ w + b)


def threshold_for(bare: np.ndarray, max_bare: float) -> float:
    """The smallest threshold (masked = p >= t) calling at most `max_bare`
    of `bare` masked: just above the k-th largest bare probability, k =
    floor(max_bare * n)."""
    if len(bare) == 0:
        raise ValueError("no bare face to set the threshold on")
    if not 0.0 <= max_bare < 1.0:
        raise ValueError(f"max_bare {max_bare} must be in [0, 1)")
    s = np.sort(np.asarray(bare, np.float64))[::-1]
    k = int(math.floor(max_bare * len(s) + 1e-9))
    # Every score strictly above s[k] is allowed to be masked; s[k] itself not.
    t = float(np.nextafter(np.float32(s[k]), np.float32(np.inf)))
    return min(max(t, 1e-6), 1.0 - 1e-6)


def groups_of(people: list[str], k: int, seed: int) -> np.ndarray:
    """Fold (0..k-1) of each row, by person (every row of a person in one fold)."""
    uniq = sorted(set(people))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(uniq))
    fold = {uniq[i]: j % k for j, i in enumerate(order)}
    return np.array([fold[p] for p in people])


def train(x: np.ndarray, y: np.ndarray, people: list[str], max_bare: float, seed: int = 0,
          lambdas=LAMBDAS, k: int = 5) -> dict:
    """Person-grouped k-fold CV per lambda: the threshold on the out-of-fold
    bare probabilities, the recall of the out-of-fold masked ones at it;
    keep the best lambda, fit on everything. Returns the model and its
    out-of-fold figures."""
    if len(set(y.tolist())) != 2:
        raise ValueError("need both bare and masked crops")
    g = groups_of(people, k, seed)
    runs = []
    for lam in lambdas:
        oof = np.zeros(len(y))
        for f in range(k):
            tr, te = g != f, g == f
            if te.sum() == 0 or len(set(y[tr].tolist())) != 2:
                continue
            w, b = fit(x[tr], y[tr], lam)
            oof[te] = predict(x[te], w, b)
        t = threshold_for(oof[y == 0], max_bare)
        runs.append((float((oof[y == 1] >= t).mean()), lam, t, oof))
    top = max(r[0] for r in runs)
    recall, lam, t, oof = max((r for r in runs if r[0] >= top - RECALL_TOLERANCE), key=lambda r: r[1])
    w, b = fit(x, y, lam)
    return {"weights": w, "bias": b, "threshold": t, "lambda": lam,
            "oof_bare_masked": float((oof[y == 0] >= t).mean()),
            "oof_masked_masked": recall,
            "cv": {f"{r[1]:g}": round(r[0], 5) for r in runs},
            "bare": int((y == 0).sum()), "masked": int((y == 1).sum()),
            "people": len(set(people))}


def section(model: dict, model_sha256: str, data: str) -> dict:
    """The manifest's [presence] table (key order as written)."""
    return {
        "kind": KIND,
        "model_sha256": model_sha256,
        "threshold": round(float(model["threshold"]), 6),
        "bias": float(np.float32(model["bias"])),
        "weights": [float(np.float32(v)) for v in model["weights"]],
        "data": data,
        "holdout_bare_masked": round(model["oof_bare_masked"], 6),
        "holdout_masked_masked": round(model["oof_masked_masked"], 6),
    }


def install(manifest_path: Path, sec: dict) -> bool:
    """Write `sec` as the [presence] section of an installed manifest when
    it is made for that manifest's model; True when the file changed. Never
    writes through a hard link (models/out's files link into the cache)."""
    sys.path.insert(0, str(HERE))
    from facegate_models import manifest
    doc = tomllib.loads(manifest_path.read_text())
    if doc.get("kind") != "embedder":
        raise ValueError(f"{manifest_path}: not an embedder")
    if doc["model"]["sha256"] != sec["model_sha256"]:
        raise ValueError(f"{manifest_path}: model {doc['model']['sha256']} is not the one the "
                         f"classifier was trained on ({sec['model_sha256']})")
    if len(sec["weights"]) != int(doc["output"]["dim"]):
        raise ValueError(f"{manifest_path}: {len(sec['weights'])} weights for a "
                         f"{doc['output']['dim']}-d embedding")
    doc["presence"] = sec
    text = manifest.dumps(doc)
    if manifest_path.read_text() == text:
        return False
    manifest_path.unlink()
    manifest_path.write_text(text)
    return True


def cache_key(model_sha: str, crops_key: str, masks: int, max_bare: float, seed: int) -> str:
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(f"{model_sha} {crops_key} {masks} {max_bare} {seed} {LAMBDAS} {RECALL_TOLERANCE}".encode())
    return h.hexdigest()[:16]


def run(lfw: Path, models: Path, cache: Path, bundle: str, masks: int, max_bare: float,
        seed: int, threads: int) -> dict:
    t0 = time.time()
    bb = bbm.Backbone.open(models, bundle)
    pairs = split.parse_pairs((lfw / "pairs.txt").read_text())
    people = split.list_people(lfw / "deepfunneled")
    s = split.make_split(pairs, people, list(range(10)))
    log(f"{bundle}: {s.notes['train_people']} people in no pair, {len(s.train_images)} images")
    c = crops_mod.export(REPO, lfw, s.train_images, cache / "crops", masks, seed, threads, bundle, models)
    if c.size != bb.size:
        raise ValueError(f"crops are {c.size} px, {bundle} takes {bb.size} px")
    key = cache_key(bb.sha256, c.key, masks, max_bare, seed)
    done = cache / f"presence-{bundle}-{key}.json"
    if done.exists():
        log(f"{bundle}: cached classifier {done.name}")
        return json.loads(done.read_text())
    emb, _ = bbm.embed_cached(bb, c.pixels, c.key, cache / "act", threads, log=log)
    x = np.asarray(emb, np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    y = (np.asarray(c.variant) > 0).astype(np.float64)
    who = [split.person(i) for i in c.image]
    m = train(x, y, who, max_bare, seed)
    data = (f"LFW deep-funneled people in no pair of pairs.txt: {m['people']} people, "
            f"{m['bare']} bare and {m['masked']} procedurally masked crops ({masks} per image, "
            f"device pipeline; {c.failures} detection failures); lambda {m['lambda']:g} "
            f"by person-grouped 5-fold CV; threshold: at most {max_bare:g} of the out-of-fold bare "
            f"faces called masked")
    sec = section(m, bb.sha256, data)
    log(f"{bundle}: out-of-fold masked recall per lambda {m['cv']}")
    log(f"{bundle}: lambda {m['lambda']:g}, out-of-fold bare called masked {m['oof_bare_masked']:.4f}, masked called masked "
        f"{m['oof_masked_masked']:.4f} at threshold {sec['threshold']:.4f} ({time.time() - t0:.0f} s)")
    done.parent.mkdir(parents=True, exist_ok=True)
    done.write_text(json.dumps(sec))
    return sec


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lfw", type=Path, required=True, help="LFW folder (deepfunneled/, pairs.txt)")
    ap.add_argument("--models", type=Path, required=True, help="installed models folder (bundles/)")
    ap.add_argument("--cache", type=Path, required=True, help="crops, embeddings and classifiers cache")
    ap.add_argument("--bundle", action="append", help="embedder bundle(s) (default mobilefacenet-fp32)")
    ap.add_argument("--masks", type=int, default=3, help="procedurally masked crops per image")
    ap.add_argument("--max-bare", type=float, default=0.02,
                    help="largest out-of-fold share of bare faces called masked")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    a = ap.parse_args(argv)
    if not (a.lfw / "pairs.txt").exists() or not (a.lfw / "deepfunneled").is_dir():
        print(f"presence: {a.lfw} is not an LFW folder (deepfunneled/, pairs.txt)", file=sys.stderr)
        return 2
    for name in a.bundle or ["mobilefacenet-fp32"]:
        mf = a.models / "bundles" / name / "manifest.toml"
        if not mf.exists():
            print(f"presence: no bundle {name} in {a.models}", file=sys.stderr)
            return 2
        sec = run(a.lfw, a.models, a.cache, name, a.masks, a.max_bare, a.seed, a.threads)
        changed = install(mf, sec)
        log(f"{name}: [presence] {'written' if changed else 'already current'} in {mf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
