"""Method (a): the seed report's recipe (its Experiment 2) reproduced on FaceNet.

What the report says it did (../shared/reference, "Experiment 2" and its
hyper-parameter table, the column it kept): the pretrained Keras FaceNet with
every layer frozen but the last one, an added Dense and BatchNorm layer (without
it they saw vanishing gradients), triplet loss with margin 0.5, learning rate
0.01, batch 32, a new random negative for every triplet after each epoch,
anchors unmasked and positives/negatives masked.

Ours, on the device's crops (procedural masks, the Rust pipeline):

  trunk    FaceNet up to its 1792-d average pool, frozen (activations cached)
  tail     the last layer, retrained: Bottleneck (1792 -> 512, no bias) +
           its BatchNorm, from the pretrained weights; then the added Dense
           (512 -> 512, Keras's glorot-uniform initialisation, bias 0) +
           BatchNorm (Keras defaults); L2 normalisation
  loss     mean(relu(|a - p|^2 - |a - n|^2 + 0.5)) on the normalised
           embeddings; Adam (the report names no optimiser; Keras's usual)
  triplets per training image: anchor its unmasked crop; positive a masked crop
           of another image of the person (the same image when there is only
           one); negative a masked crop of a random other person; positives and
           negatives drawn anew every epoch
  epochs   25 (the report's first setting; it went to 75-100 at ~6 h each),
           the last epoch is kept (the report did not stop early); 10 % of the
           training people are held out for a validation loss, reported only

The export folds both BatchNorms (moving statistics) into the two MatMuls and
writes them in place of FaceNet's Bottleneck in the pretrained ONNX, so the
device runs one network of the same shape and cost.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

POOL = "InceptionResnetV1/Logits/AvgPool_1a_8x8/AvgPool:0"
FLAT = "InceptionResnetV1/Logits/Flatten/flatten/Reshape:0"
BOTTLENECK = "InceptionResnetV1/Bottleneck/MatMul"
BN_OUT = "InceptionResnetV1/Bottleneck/BatchNorm/Reshape_1:0"
PREFIX = "facegate_seed/"


@dataclass
class Config:
    epochs: int = 25
    lr: float = 0.01
    margin: float = 0.5
    batch: int = 32
    hidden: int = 512
    val_share: float = 0.1
    seed: int = 0


@dataclass
class Result:
    weights: dict               # W1, bn1_*, W2, b2, bn2_* (Keras layout)
    history: list = field(default_factory=list)


def _init(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def locate(model: onnx.ModelProto) -> dict:
    """FaceNet's last layer: the Bottleneck weight and its BatchNorm's
    (scale, bias, mean, var, epsilon); ValueError on another graph."""
    init = _init(model)
    mm = [n for n in model.graph.node if n.name == BOTTLENECK]
    bn = [n for n in model.graph.node if n.op_type == "BatchNormalization" and "Bottleneck" in n.name]
    if len(mm) != 1 or len(bn) != 1 or mm[0].input[0] != FLAT:
        raise ValueError("not FaceNet 20180402-style: no Bottleneck MatMul + BatchNorm after the pool")
    n = bn[0]
    eps = next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5)
    w = {"W1": init[mm[0].input[1]].astype(np.float32),
         "bn1_gamma": init[n.input[1]].astype(np.float32), "bn1_beta": init[n.input[2]].astype(np.float32),
         "bn1_mean": init[n.input[3]].astype(np.float32), "bn1_var": init[n.input[4]].astype(np.float32),
         "bn1_eps": np.float32(eps)}
    if w["W1"].shape[1] != w["bn1_gamma"].shape[0]:
        raise ValueError("Bottleneck and BatchNorm sizes differ")
    return w


def trunk(model: onnx.ModelProto, input_name: str) -> onnx.ModelProto:
    """FaceNet cut at its average pool (N x 1792 x 1 x 1, NCHW)."""
    return onnx.utils.Extractor(model).extract_model([input_name], [POOL])


def added_init(dim: int, hidden: int, seed: int) -> dict:
    """The added Dense + BatchNorm as Keras initialises them."""
    rng = np.random.default_rng(seed)
    lim = np.sqrt(6.0 / (dim + hidden))
    return {"W2": rng.uniform(-lim, lim, (dim, hidden)).astype(np.float32),
            "b2": np.zeros(hidden, np.float32),
            "bn2_gamma": np.ones(hidden, np.float32), "bn2_beta": np.zeros(hidden, np.float32),
            "bn2_mean": np.zeros(hidden, np.float32), "bn2_var": np.ones(hidden, np.float32),
            "bn2_eps": np.float32(1e-3)}


def folded(w: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(A1, c1, A2, c2): y = (x A1 + c1) A2 + c2, both BatchNorms folded."""
    s1 = w["bn1_gamma"] / np.sqrt(w["bn1_var"] + w["bn1_eps"])
    s2 = w["bn2_gamma"] / np.sqrt(w["bn2_var"] + w["bn2_eps"])
    a1 = (w["W1"] * s1).astype(np.float32)
    c1 = (w["bn1_beta"] - w["bn1_mean"] * s1).astype(np.float32)
    a2 = (w["W2"] * s2).astype(np.float32)
    c2 = ((w["b2"] - w["bn2_mean"]) * s2 + w["bn2_beta"]).astype(np.float32)
    return a1, c1, a2, c2


def forward(x: np.ndarray, w: dict) -> np.ndarray:
    """The numpy reference of the exported tail: pooled features (N x 1792)
    -> normalised embeddings, inference mode."""
    a1, c1, a2, c2 = folded(w)
    y = (np.asarray(x, np.float32) @ a1 + c1) @ a2 + c2
    return y / np.sqrt(np.maximum((y * y).sum(1, keepdims=True), 1e-10))


def pretrained_forward(x: np.ndarray, w: dict) -> np.ndarray:
    """FaceNet's own last layer (no added layer): for the parity check."""
    s1 = w["bn1_gamma"] / np.sqrt(w["bn1_var"] + w["bn1_eps"])
    y = (np.asarray(x, np.float32) @ w["W1"] - w["bn1_mean"]) * s1 + w["bn1_beta"]
    return y / np.sqrt(np.maximum((y * y).sum(1, keepdims=True), 1e-10))


def export(model: onnx.ModelProto, w: dict) -> onnx.ModelProto:
    """The pretrained ONNX with FaceNet's Bottleneck + BatchNorm replaced by
    the trained tail (folded); the L2 normalisation after it is kept."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    # The nodes from the Bottleneck MatMul to the BatchNorm's last Reshape.
    order = list(g.node)
    start = next(i for i, n in enumerate(order) if n.name == BOTTLENECK)
    end = next(i for i, n in enumerate(order) if BN_OUT in n.output)
    drop = {id(n) for n in order[start:end + 1]}
    keep = [n for n in order if id(n) not in drop]
    a1, c1, a2, c2 = folded(w)
    for name, arr in (("A1", a1), ("c1", c1), ("A2", a2), ("c2", c2)):
        g.initializer.append(numpy_helper.from_array(arr, PREFIX + name))
    p = lambda s: PREFIX + s  # noqa: E731
    tail = [
        onnx.helper.make_node("MatMul", [FLAT, p("A1")], [p("h0:0")], name=p("MatMul1")),
        onnx.helper.make_node("Add", [p("h0:0"), p("c1")], [p("h1:0")], name=p("Add1")),
        onnx.helper.make_node("MatMul", [p("h1:0"), p("A2")], [p("h2:0")], name=p("MatMul2")),
        onnx.helper.make_node("Add", [p("h2:0"), p("c2")], [BN_OUT], name=p("Add2")),
    ]
    del g.node[:]
    g.node.extend(keep[:start] + tail + keep[start:])
    used = {i for n in g.node for i in n.input}
    live = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(live)
    onnx.checker.check_model(m)
    return m


def triplets(rng, person: np.ndarray, unmasked: np.ndarray, masked_of: dict, by_person: dict) -> np.ndarray:
    """One epoch's (anchor, positive, negative) row triples. `unmasked`: the
    unmasked row of each training image; `masked_of[row]`: the masked rows of
    that image; `by_person[p]`: p's unmasked rows."""
    people = np.array(sorted(by_person))
    if len(people) < 2:
        raise ValueError("triplets need at least two people")
    out = []
    for a in unmasked:
        p = person[a]
        others = [r for r in by_person[p] if r != a]
        src = others[rng.integers(len(others))] if others else a
        pos = masked_of[src][rng.integers(len(masked_of[src]))]
        while True:
            q = people[rng.integers(len(people))]
            if q != p:
                break
        nsrc = by_person[q][rng.integers(len(by_person[q]))]
        neg = masked_of[nsrc][rng.integers(len(masked_of[nsrc]))]
        out.append((a, pos, neg))
    return np.array(out, np.int64).reshape(-1, 3)


def group(person: np.ndarray, image: np.ndarray, variant: np.ndarray, rows: np.ndarray):
    """(unmasked rows, masked rows per unmasked row, unmasked rows per person)
    over `rows`; images without a masked crop are left out."""
    masked: dict[int, list[int]] = {}
    first: dict[int, int] = {}
    for r in rows:
        if variant[r] == 0:
            first[int(image[r])] = int(r)
    for r in rows:
        if variant[r] > 0 and int(image[r]) in first:
            masked.setdefault(first[int(image[r])], []).append(int(r))
    unmasked = np.array(sorted(masked), np.int64)
    by_person: dict[int, list[int]] = {}
    for r in unmasked:
        by_person.setdefault(int(person[r]), []).append(int(r))
    return unmasked, masked, by_person


def train(act: np.ndarray, person: np.ndarray, image: np.ndarray, variant: np.ndarray, rows: np.ndarray,
          w0: dict, cfg: Config, log=print) -> Result:
    """Train the tail on pooled activations `act` (N x 1792) of `rows`."""
    import tensorflow as tf
    tf.random.set_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    people = np.unique(person[rows])
    val_people = set(rng.permutation(people)[:max(1, int(len(people) * cfg.val_share))].tolist())
    is_val = np.isin(person[rows], list(val_people))
    tr = group(person, image, variant, rows[~is_val])
    if len(tr[2]) < 2:
        raise ValueError("the seed recipe needs at least two training people with masked crops")
    va = group(person, image, variant, rows[is_val])
    dim = w0["W1"].shape[1]
    w = dict(w0)
    w.update(added_init(dim, cfg.hidden, cfg.seed))

    def bn(gamma, beta, eps):
        return tf.keras.layers.BatchNormalization(epsilon=float(eps), momentum=0.99,
                                                  gamma_initializer=tf.constant_initializer(gamma),
                                                  beta_initializer=tf.constant_initializer(beta))

    inp = tf.keras.Input((act.shape[1],))
    d1 = tf.keras.layers.Dense(dim, use_bias=False, kernel_initializer=tf.constant_initializer(w["W1"]))
    b1 = bn(w["bn1_gamma"], w["bn1_beta"], w["bn1_eps"])
    d2 = tf.keras.layers.Dense(cfg.hidden, kernel_initializer=tf.constant_initializer(w["W2"]))
    b2 = bn(w["bn2_gamma"], w["bn2_beta"], w["bn2_eps"])
    y = b2(d2(b1(d1(inp))))
    net = tf.keras.Model(inp, tf.math.l2_normalize(y, axis=1))
    b1.moving_mean.assign(w["bn1_mean"])
    b1.moving_variance.assign(w["bn1_var"])
    opt = tf.keras.optimizers.Adam(cfg.lr)
    x_all = np.asarray(act, np.float32)

    def loss_of(e, n):
        a, p, q = e[:n], e[n:2 * n], e[2 * n:]
        dp = tf.reduce_sum(tf.square(a - p), 1)
        dn = tf.reduce_sum(tf.square(a - q), 1)
        return tf.reduce_mean(tf.nn.relu(dp - dn + cfg.margin))

    @tf.function(reduce_retracing=True)
    def step(x, n):
        with tf.GradientTape() as tape:
            loss = loss_of(net(x, training=True), n)
        g = tape.gradient(loss, net.trainable_variables)
        opt.apply_gradients(zip(g, net.trainable_variables))
        return loss

    def val_loss(t):
        if not len(t):
            return float("nan")
        e = net(x_all[np.concatenate([t[:, 0], t[:, 1], t[:, 2]])], training=False)
        return float(loss_of(e, len(t)))

    hist = []
    vrng = np.random.default_rng(cfg.seed + 1)
    vt = triplets(vrng, person, *va) if len(va[2]) > 1 else np.zeros((0, 3), np.int64)
    t = triplets(rng, person, tr[0], tr[1], tr[2])
    # Epoch 0: the untrained tail on the first epoch's triplets (inference mode).
    hist.append({"epoch": 0, "train": val_loss(t), "val": val_loss(vt)})
    for ep in range(1, cfg.epochs + 1):
        t0 = time.time()
        if ep > 1:
            t = triplets(rng, person, tr[0], tr[1], tr[2])
        t = t[rng.permutation(len(t))]
        losses = []
        for i in range(0, len(t), cfg.batch):
            b = t[i:i + cfg.batch]
            x = x_all[np.concatenate([b[:, 0], b[:, 1], b[:, 2]])]
            losses.append(float(step(tf.constant(x), tf.constant(len(b)))))
        hist.append({"epoch": ep, "train": float(np.mean(losses)), "val": val_loss(vt)})
        log(f"seed recipe: epoch {ep} ({time.time() - t0:.0f} s) train {hist[-1]['train']:.4f} "
            f"held-out {hist[-1]['val']:.4f} ({len(t)} triplets)")
    w["W1"] = d1.kernel.numpy()
    w["bn1_gamma"], w["bn1_beta"] = b1.gamma.numpy(), b1.beta.numpy()
    w["bn1_mean"], w["bn1_var"] = b1.moving_mean.numpy(), b1.moving_variance.numpy()
    w["W2"], w["b2"] = d2.kernel.numpy(), d2.bias.numpy()
    w["bn2_gamma"], w["bn2_beta"] = b2.gamma.numpy(), b2.beta.numpy()
    w["bn2_mean"], w["bn2_var"] = b2.moving_mean.numpy(), b2.moving_variance.numpy()
    return Result(w, hist)


def save_weights(path: Path, w: dict) -> None:
    np.savez(path, **{k: np.asarray(v) for k, v in w.items()})
