"""Methods (b) + (e): mask-invariant distillation of the backbone's last blocks
onto periocular crops, with an identity margin on top (issue 14 §2).

The device compares a masked probe as a *periocular* crop (greyed from `cut`
inter-ocular distances below the eyes) with the periocular templates stored at
enrolment (method (d), shipped). What a mask still changes in that crop (its
upper edge, the nose bridge, shadows) is what this trains away, without
touching what works (unmasked faces):

* teacher: the frozen pretrained network; student: the same network whose
  tail (`head.py`: last conv + global depthwise conv + linear layers) is
  trainable, on cached trunk activations;
* invariance (b): the student on the periocular crop of a *masked* photo is
  pulled to the teacher on the periocular crop of the same photo unmasked
  (`1 − cos`); no labels needed, so every image of the training people counts;
* keep: the student on unmasked crops (periocular and whole) stays at the
  teacher — enrolment templates and unmasked probes keep the pretrained
  quality;
* identity margin (e): CosFace (Wang et al. 2018) over the training people,
  whose class centres are the teacher's mean unmasked periocular embeddings
  (fixed): the masked periocular embedding must be nearer its own person's
  centre than any other's by `margin` — the far tail (FAR 1e-4) is about
  impostors, which pure distillation never sees;
* L2-SP: weight decay towards the pretrained weights, not towards zero.

One masked variant per image is drawn anew every epoch. 10 % of the training
people are held out; the epoch with the lowest held-out loss is kept.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from . import metrics


@dataclass
class Config:
    epochs: int = 12
    lr: float = 3e-4
    batch: int = 128
    keep: float = 1.0        # weight of the unmasked keep terms
    whole: float = 0.0       # weight of whole-face masked -> teacher whole unmasked
    ident: float = 0.1       # weight of the CosFace term (masked periocular)
    ident_whole: float = 0.0  # weight of a CosFace term on unmasked whole faces (U-U)
    scale: float = 32.0
    margin: float = 0.2
    l2sp: float = 1e-3
    seed: int = 0
    val_share: float = 0.1


@dataclass
class Result:
    weights: dict
    history: list = field(default_factory=list)
    best_epoch: int = 0


def to_tf_layout(w: dict) -> dict:
    """ONNX (NCHW conv) weights -> the matrices the TF model multiplies with."""
    return {
        "W7": w["w7"][:, :, 0, 0].T.copy(), "b7": w["b7"].copy(), "c7": w["c7"].reshape(-1).copy(),
        "Wdw": w["wdw"][:, 0].transpose(1, 2, 0).copy(), "bdw": w["bdw"].copy(),
        "Wc": w["wc"][:, :, 0, 0].T.copy(), "bc": w["bc"].copy(),
        "Wl": w["wl"][:, :, 0, 0].T.copy(), "bl": w["bl"].copy(),
    }


def from_tf_layout(t: dict, like: dict) -> dict:
    return {
        "w7": t["W7"].T[:, :, None, None].astype(np.float32), "b7": t["b7"].astype(np.float32),
        "c7": t["c7"].reshape(like["c7"].shape).astype(np.float32),
        "wdw": t["Wdw"].transpose(2, 0, 1)[:, None].astype(np.float32), "bdw": t["bdw"].astype(np.float32),
        "wc": t["Wc"].T[:, :, None, None].astype(np.float32), "bc": t["bc"].astype(np.float32),
        "wl": t["Wl"].T[:, :, None, None].astype(np.float32), "bl": t["bl"].astype(np.float32),
    }


def forward_nhwc(x: np.ndarray, t: dict) -> np.ndarray:
    """numpy twin of the TF forward (NHWC activations, TF layout weights)."""
    h = x @ t["W7"] + t["b7"]
    h = np.maximum(h, 0) + t["c7"] * (h - np.abs(h))
    g = np.einsum("nhwc,hwc->nc", h, t["Wdw"], optimize=True) + t["bdw"]
    e = (g @ t["Wc"] + t["bc"]) @ t["Wl"] + t["bl"]
    return e / np.sqrt(np.maximum((e * e).sum(1, keepdims=True), 1e-10))


def embed(x: np.ndarray, t: dict, batch: int = 1024) -> np.ndarray:
    return np.concatenate([forward_nhwc(np.asarray(x[i:i + batch], np.float32), t)
                           for i in range(0, len(x), batch)]) if len(x) else np.zeros((0, t["bl"].shape[0]))


@dataclass
class Rows:
    """Training rows by image: the row of its unmasked crop and of each masked one."""
    unmasked: np.ndarray      # M   row index
    masked: list              # M lists of row indices
    person: np.ndarray        # M   person id


def group(row_image: np.ndarray, row_var: np.ndarray, row_person: np.ndarray, rows: np.ndarray) -> Rows:
    by: dict[int, list] = {}
    for r in rows:
        by.setdefault(int(row_image[r]), []).append(int(r))
    um, mk, pp = [], [], []
    for _img, rs in sorted(by.items()):
        u = [r for r in rs if row_var[r] == 0]
        m = [r for r in rs if row_var[r] != 0]
        if u and m:
            um.append(u[0])
            mk.append(m)
            pp.append(int(row_person[u[0]]))
    return Rows(np.array(um, np.int64), mk, np.array(pp, np.int64))


def centres(teacher_p: np.ndarray, g: Rows) -> tuple[np.ndarray, np.ndarray]:
    """Per person: the normalised mean teacher periocular embedding of its
    unmasked crops. Returns (centres P×D, class index per image)."""
    ids, cls = np.unique(g.person, return_inverse=True)
    c = np.zeros((len(ids), teacher_p.shape[1]), np.float64)
    np.add.at(c, cls, teacher_p[g.unmasked])
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    return c.astype(np.float32), cls


def train(act_w: np.ndarray, act_p: np.ndarray, w0: dict, g: Rows, cfg: Config, log=print) -> Result:
    """act_w / act_p: N×H×W×C trunk activations (NHWC) of the whole and the
    periocular crops, rows as in `g`. Returns ONNX-layout weights."""
    import tensorflow as tf
    tf.random.set_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    t0w = to_tf_layout(w0)
    teach_w = embed(act_w[g.unmasked], t0w)          # teacher, unmasked whole
    teach_p_all = embed(act_p, t0w)                  # teacher, every periocular crop
    teach_p = teach_p_all[g.unmasked]

    people = np.unique(g.person)
    val_people = set(rng.permutation(people)[: max(1, int(len(people) * cfg.val_share))].tolist())
    is_val = np.array([p in val_people for p in g.person])
    tr, va = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    # Identity centres: the training people's for training; the held-out
    # people's own (a separate, smaller set) for the held-out loss.
    cen, cls = centres(teach_p_all, Rows(g.unmasked[tr], [g.masked[i] for i in tr], g.person[tr]))
    cen_va, cls_va = centres(teach_p_all, Rows(g.unmasked[va], [g.masked[i] for i in va], g.person[va]))
    teach_w_all = np.zeros((act_w.shape[0], teach_w.shape[1]), np.float32)
    teach_w_all[g.unmasked] = teach_w
    cw, _ = centres(teach_w_all, Rows(g.unmasked[tr], [g.masked[i] for i in tr], g.person[tr]))
    cw_va, _ = centres(teach_w_all, Rows(g.unmasked[va], [g.masked[i] for i in va], g.person[va]))
    cls_of = np.full(len(g.person), -1)
    cls_of[tr] = cls
    cls_of[va] = cls_va
    log(f"distil: {len(tr)} training images of {len(people) - len(val_people)} people, "
        f"{len(va)} held-out images of {len(val_people)} people, {len(cen)} identity centres")

    var = {k: tf.Variable(v, dtype=tf.float32, name=k) for k, v in t0w.items()}
    ref = {k: tf.constant(v, dtype=tf.float32) for k, v in t0w.items()}
    cen_tr, cen_val = (tf.constant(cen), tf.constant(cw)), (tf.constant(cen_va), tf.constant(cw_va))
    opt = tf.keras.optimizers.Adam(cfg.lr)

    def fwd(x):
        h = tf.einsum("nhwc,co->nhwo", x, var["W7"]) + var["b7"]
        h = tf.nn.relu(h) + var["c7"] * (h - tf.abs(h))
        gg = tf.einsum("nhwc,hwc->nc", h, var["Wdw"]) + var["bdw"]
        e = tf.matmul(tf.matmul(gg, var["Wc"]) + var["bc"], var["Wl"]) + var["bl"]
        return tf.math.l2_normalize(e, 1)

    def cosface(f, c, cen_t):
        cos = tf.matmul(f, cen_t, transpose_b=True)
        known = c >= 0
        cc = tf.where(known, c, 0)
        logits = cfg.scale * (cos - cfg.margin * tf.one_hot(cc, tf.shape(cen_t)[0]))
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(cc, logits)
        return tf.reduce_sum(tf.where(known, ce, 0.0)) / tf.maximum(tf.reduce_sum(tf.cast(known, tf.float32)), 1.0)

    def losses(pm, pu, wu, wm, tp, tw, c, cens):
        fpm, fpu, fwu = fwd(pm), fwd(pu), fwd(wu)
        inv = tf.reduce_mean(1.0 - tf.reduce_sum(fpm * tp, 1))
        keep = tf.reduce_mean(1.0 - tf.reduce_sum(fpu * tp, 1)) + tf.reduce_mean(1.0 - tf.reduce_sum(fwu * tw, 1))
        whole = tf.reduce_mean(1.0 - tf.reduce_sum(fwd(wm) * tw, 1)) if cfg.whole > 0 else tf.constant(0.0)
        ident = cfg.ident * cosface(fpm, c, cens[0]) if cfg.ident > 0 else tf.constant(0.0)
        if cfg.ident_whole > 0:
            ident += cfg.ident_whole * cosface(fwu, c, cens[1])
        sp = tf.add_n([tf.reduce_sum(tf.square(var[k] - ref[k])) for k in var])
        total = inv + cfg.keep * keep + cfg.whole * whole + ident + cfg.l2sp * sp
        return total, inv, keep, whole, ident

    spec = [tf.TensorSpec([None, *act_w.shape[1:]], tf.float32)] * 4 + \
        [tf.TensorSpec([None, teach_p.shape[1]], tf.float32)] * 2 + [tf.TensorSpec([None], tf.int64)]

    @tf.function(input_signature=spec)
    def step(pm, pu, wu, wm, tp, tw, c):
        with tf.GradientTape() as tape:
            out = losses(pm, pu, wu, wm, tp, tw, c, cen_tr)
        grads = tape.gradient(out[0], list(var.values()))
        opt.apply_gradients(zip(grads, list(var.values())))
        return out

    @tf.function(input_signature=spec)
    def evaluate(pm, pu, wu, wm, tp, tw, c):
        return losses(pm, pu, wu, wm, tp, tw, c, cen_val)

    def batch(idx, pick):
        m = np.array([g.masked[i][pick[i]] for i in idx])
        u = g.unmasked[idx]
        return (np.asarray(act_p[m], np.float32), np.asarray(act_p[u], np.float32),
                np.asarray(act_w[u], np.float32), np.asarray(act_w[m], np.float32),
                teach_p[idx], teach_w[idx], cls_of[idx].astype(np.int64))

    names = ["total", "invariance", "keep", "whole", "identity"]  # identity: weighted sum of the CosFace terms

    def run(idx, pick, fn, shuffle):
        order = rng.permutation(idx) if shuffle else idx
        acc = np.zeros(5)
        n = 0
        for s in range(0, len(order), cfg.batch):
            b = order[s:s + cfg.batch]
            out = fn(*batch(b, pick))
            acc += np.array([float(o) for o in out]) * len(b)
            n += len(b)
        return acc / max(n, 1)

    pick_val = np.array([rng.integers(len(m)) for m in g.masked])
    vm = np.array([g.masked[i][pick_val[i]] for i in va])

    def select(v):  # the held-out objective, without the weight-decay term
        return v[1] + cfg.keep * v[2] + cfg.whole * v[3] + v[4]

    def held_out_mu(t):
        """Held-out people: masked periocular probe vs unmasked periocular reference."""
        gen, imp = metrics.scores(embed(act_p[vm], t), g.person[va], va,
                                  embed(act_p[g.unmasked[va]], t), g.person[va], va)
        return metrics.summary(gen, imp)

    hist, best_w, best_e = [], {k: v.copy() for k, v in t0w.items()}, 0
    v0 = run(va, pick_val, evaluate, False)
    m0 = held_out_mu(t0w)
    hist.append({"epoch": 0, "val": float(select(v0)), **{f"val_{k}": float(x) for k, x in zip(names, v0)},
                 "val_mu": m0})
    log("distil: epoch 0 held-out " + ", ".join(f"{k} {x:.4f}" for k, x in zip(names, v0)) +
        f" | M-U periocular EER {m0['eer']:.4f} TAR@1e-3 {m0['tar_1e-3']:.4f}")
    best = select(v0)
    for ep in range(1, cfg.epochs + 1):
        t = time.time()
        pick = np.array([rng.integers(len(m)) for m in g.masked])
        tr_l = run(tr, pick, step, True)
        va_l = run(va, pick_val, evaluate, False)
        cur = {k: v.numpy().copy() for k, v in var.items()}
        mu = held_out_mu(cur)
        hist.append({"epoch": ep, "train": float(select(tr_l)), "val": float(select(va_l)),
                     **{f"train_{k}": float(x) for k, x in zip(names, tr_l)},
                     **{f"val_{k}": float(x) for k, x in zip(names, va_l)}, "val_mu": mu,
                     "seconds": time.time() - t})
        log(f"distil: epoch {ep} ({time.time() - t:.0f} s) train " +
            ", ".join(f"{k} {x:.4f}" for k, x in zip(names, tr_l)) + " | held-out " +
            ", ".join(f"{k} {x:.4f}" for k, x in zip(names, va_l)) +
            f" | M-U periocular EER {mu['eer']:.4f} TAR@1e-3 {mu['tar_1e-3']:.4f}")
        if select(va_l) < best:
            best, best_e, best_w = select(va_l), ep, cur
    log(f"distil: kept epoch {best_e} (held-out loss {best:.4f})")
    return Result(from_tf_layout(best_w, w0), hist, best_e)
