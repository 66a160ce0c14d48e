"""Method (c): an embedding-unmasking adapter on frozen embeddings, trained
with the self-restrained triplet loss (SRT; Boutros, Damer, Kirchbuchner,
Kuijper, "Self-restrained triplet loss for accurate masked face
recognition", Pattern Recognition 2022).

Triplets: the anchor is the adapter's output for a *masked* crop; the
positive is the frozen (pretrained) embedding of an unmasked image of the same
person (another image when the person has one, else the same photo); the
negative is the frozen unmasked embedding of a random other person, drawn
anew every epoch. With squared Euclidean distances between unit vectors,

    d_ap = |a - p|², d_an = |a - n|², d_pn = |p - n|²
    SRT = mean(relu(d_ap + m - mean(d_pn)))   if mean(d_an) >= mean(d_pn)
          mean(relu(d_ap + m - d_an))         otherwise

i.e. once the negatives are on average as far from the anchors as they are
from the positives, only the anchor-positive distance is pushed down (the
loss restrains itself from pushing negatives further away).

The device runs one network for enrolment (unmasked) and probes (masked),
so the adapter also sees unmasked crops; a keep term
``keep · mean(|f(u) - u|²)`` holds it at the pretrained embedding there
(the unmasked-vs-unmasked figures must not fall). The adapter starts as the
identity (W2 = 0, b2 = 0).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


def srt_numpy(a: np.ndarray, p: np.ndarray, n: np.ndarray, margin: float) -> float:
    """Reference implementation (inputs are normalised first)."""
    def nz(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)
    a, p, n = nz(a), nz(p), nz(n)
    d_ap = ((a - p) ** 2).sum(1)
    d_an = ((a - n) ** 2).sum(1)
    d_pn = ((p - n) ** 2).sum(1)
    if d_an.mean() >= d_pn.mean():
        ls = d_ap + margin - d_pn.mean()
    else:
        ls = d_ap + margin - d_an
    return float(np.maximum(ls, 0).mean())


def srt_tf(a, p, n, margin: float):
    import tensorflow as tf
    a = tf.math.l2_normalize(a, 1)
    p = tf.math.l2_normalize(p, 1)
    n = tf.math.l2_normalize(n, 1)
    d_ap = tf.reduce_sum(tf.square(a - p), 1)
    d_an = tf.reduce_sum(tf.square(a - n), 1)
    d_pn = tf.reduce_sum(tf.square(p - n), 1)
    m_pn = tf.reduce_mean(d_pn)
    ls = tf.where(tf.reduce_mean(d_an) >= m_pn, d_ap + margin - m_pn, d_ap + margin - d_an)
    return tf.reduce_mean(tf.nn.relu(ls))


@dataclass
class Config:
    epochs: int = 30
    batch: int = 256
    lr: float = 1e-3
    margin: float = 2.0
    keep: float = 1.0
    hidden: int = 0          # 0: the embedding dimension
    alpha: float = 0.2       # leaky ReLU slope
    seed: int = 0
    val_people: float = 0.1  # share of the training people held out for the validation loss


@dataclass
class Result:
    weights: dict
    history: list = field(default_factory=list)   # per epoch: dict(epoch, train, val, seconds)
    seconds: float = 0.0
    triplets_per_epoch: int = 0


def triplet_index(person: np.ndarray, variant: np.ndarray, image: np.ndarray,
                  rng: np.random.Generator):
    """For every masked row: (anchor row, positive unmasked row, negative
    unmasked row), positives of the same person (another image if any),
    negatives of another person, drawn with `rng`."""
    unm = np.flatnonzero(variant == 0)
    by_person: dict[int, np.ndarray] = {}
    order = np.argsort(person[unm], kind="stable")
    su = unm[order]
    cuts = np.flatnonzero(np.diff(person[su])) + 1
    for grp in np.split(su, cuts):
        if len(grp):
            by_person[int(person[grp[0]])] = grp
    anchors = np.flatnonzero(variant > 0)
    pos, neg, keep = [], [], []
    for r in anchors:
        grp = by_person.get(int(person[r]))
        if grp is None:
            continue
        others = grp[image[grp] != image[r]]
        cand = others if len(others) else grp
        pos.append(cand[rng.integers(len(cand))])
        while True:
            j = unm[rng.integers(len(unm))]
            if person[j] != person[r]:
                break
        neg.append(j)
        keep.append(r)
    return np.asarray(keep, np.int64), np.asarray(pos, np.int64), np.asarray(neg, np.int64)


def train(emb: np.ndarray, person: np.ndarray, variant: np.ndarray, image: np.ndarray,
          cfg: Config, log=print) -> Result:
    """emb: N x D frozen embeddings; person/image: integer ids per row;
    variant: 0 unmasked, >0 masked."""
    import tensorflow as tf
    tf.random.set_seed(cfg.seed)
    try:
        tf.config.threading.set_intra_op_parallelism_threads(2)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # already initialised (a second training in one process)
        pass
    rng = np.random.default_rng(cfg.seed)
    emb = np.asarray(emb, np.float32)
    d = emb.shape[1]
    h = cfg.hidden or d
    people = np.unique(person)
    val_p = set(rng.choice(people, int(len(people) * cfg.val_people), replace=False).tolist()) \
        if cfg.val_people > 0 and len(people) >= 10 else set()
    is_val = np.array([p in val_p for p in person])
    glorot = np.sqrt(6.0 / (d + h))
    W1 = tf.Variable(rng.uniform(-glorot, glorot, (d, h)).astype(np.float32))
    b1 = tf.Variable(np.zeros(h, np.float32))
    W2 = tf.Variable(np.zeros((h, d), np.float32))
    b2 = tf.Variable(np.zeros(d, np.float32))
    params = [W1, b1, W2, b2]
    opt = tf.keras.optimizers.Adam(cfg.lr)

    def f(x):
        z = tf.matmul(x, W1) + b1
        z = tf.where(z > 0, z, cfg.alpha * z)
        return tf.math.l2_normalize(x + tf.matmul(z, W2) + b2, 1)

    def loss_of(a_x, p_x, n_x, u_x):
        return srt_tf(f(a_x), p_x, n_x, cfg.margin) + \
            cfg.keep * tf.reduce_mean(tf.reduce_sum(tf.square(f(u_x) - u_x), 1))

    @tf.function
    def step(a_x, p_x, n_x, u_x):
        with tf.GradientTape() as t:
            loss = loss_of(a_x, p_x, n_x, u_x)
        opt.apply_gradients(zip(t.gradient(loss, params), params))
        return loss

    def evaluate(idx_a, idx_p, idx_n):
        if len(idx_a) == 0:
            return float("nan")
        tot, cnt = 0.0, 0
        for i in range(0, len(idx_a), 1024):
            sl = slice(i, i + 1024)
            u = emb[idx_p[sl]]
            tot += float(loss_of(emb[idx_a[sl]], u, emb[idx_n[sl]], u)) * len(u)
            cnt += len(u)
        return tot / cnt

    tr_rows = np.flatnonzero(~is_val)
    va_rows = np.flatnonzero(is_val)
    va = triplet_index(person[va_rows], variant[va_rows], image[va_rows], np.random.default_rng(cfg.seed + 1))
    va = tuple(va_rows[x] for x in va)
    res = Result({}, [])
    t_all = time.time()
    log(f"eum: {len(tr_rows)} training rows, {len(va_rows)} validation rows "
        f"({len(val_p)} people), {len(people)} people")
    res.history.append({"epoch": 0, "train": evaluate(*tuple(tr_rows[x] for x in triplet_index(
        person[tr_rows], variant[tr_rows], image[tr_rows], np.random.default_rng(cfg.seed + 2)))),
        "val": evaluate(*va), "seconds": 0.0})
    unm_tr = tr_rows[variant[tr_rows] == 0]
    for ep in range(1, cfg.epochs + 1):
        t0 = time.time()
        a, p, n = (tr_rows[x] for x in triplet_index(person[tr_rows], variant[tr_rows], image[tr_rows], rng))
        res.triplets_per_epoch = len(a)
        perm = rng.permutation(len(a))
        tot, cnt = 0.0, 0
        for i in range(0, len(a), cfg.batch):
            b = perm[i:i + cfg.batch]
            u = unm_tr[rng.integers(len(unm_tr), size=len(b))]
            l = step(emb[a[b]], emb[p[b]], emb[n[b]], emb[u])
            tot += float(l) * len(b)
            cnt += len(b)
        res.history.append({"epoch": ep, "train": tot / max(cnt, 1), "val": evaluate(*va),
                            "seconds": time.time() - t0})
        log(f"eum: epoch {ep}/{cfg.epochs} train {res.history[-1]['train']:.4f} "
            f"val {res.history[-1]['val']:.4f} ({time.time() - t0:.1f} s)")
    res.weights = {"W1": W1.numpy(), "b1": b1.numpy(), "W2": W2.numpy(), "b2": b2.numpy()}
    res.seconds = time.time() - t_all
    return res
