"""The trainable tail of a backbone (issue 14 §2 methods (b)/(e)): its last
blocks, fine-tuned on cached activations of the frozen trunk.

Written for MobileFaceNet as converted by `facegate_models.mobilefacenet`
(tf2onnx of the sirius-ai TF graph; NCHW inside):

    trunk ─► Conv2d_7: 1×1 conv 128→512 (+ folded BN) ─► PReLU
          ─► Logits/SeparableConv2d: 7×7 depthwise, valid (global depthwise conv)
          ─► Logits/Conv: 1×1 512→512 ─► Logits/LinearConv1x1: 1×1 512→192
          ─► reshape ─► L2 normalisation

The PReLU is tf2onnx's `relu(x) + c·(x − |x|)` with `c = α/2`. The tail is
located by node names, its weights read from the initialisers; the trained
weights are written back into the same initialisers, so the exported ONNX is
the pretrained graph, node for node, with new numbers: no surgery, nothing the
device (tract) has not run before. `forward` is the numpy reference that the
training (TensorFlow, `distil.py`) mirrors and `check` compares with
onnxruntime on real crops.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

MFN = "MobileFaceNet/"
# (role, node name, input index of the initialiser)
TAIL = [
    ("w7", MFN + "MobileFaceNet/Conv2d_7/BatchNorm/FusedBatchNorm", 1),
    ("b7", MFN + "MobileFaceNet/Conv2d_7/BatchNorm/FusedBatchNorm", 2),
    ("c7", MFN + "MobileFaceNet/Conv2d_7/mul_1", 1),
    ("wdw", MFN + "Logits/SeparableConv2d/BatchNorm/FusedBatchNorm", 1),
    ("bdw", MFN + "Logits/SeparableConv2d/BatchNorm/FusedBatchNorm", 2),
    ("wc", MFN + "Logits/Conv/BatchNorm/FusedBatchNorm", 1),
    ("bc", MFN + "Logits/Conv/BatchNorm/FusedBatchNorm", 2),
    ("wl", MFN + "Logits/LinearConv1x1/BatchNorm/FusedBatchNorm", 1),
    ("bl", MFN + "Logits/LinearConv1x1/BatchNorm/FusedBatchNorm", 2),
]
CUT_NODE = MFN + "MobileFaceNet/Conv2d_7/BatchNorm/FusedBatchNorm"


class HeadError(ValueError):
    pass


@dataclass
class Head:
    """Where the trunk ends (`cut`, an NCHW tensor C×H×W) and the tail's weights."""
    cut: str
    shape: tuple[int, int, int]
    weights: dict[str, np.ndarray]
    names: dict[str, str]   # role -> initialiser name


def _nodes(model: onnx.ModelProto) -> dict[str, onnx.NodeProto]:
    return {n.name: n for n in model.graph.node}


def locate(model: onnx.ModelProto) -> Head:
    nodes = _nodes(model)
    inits = {i.name: i for i in model.graph.initializer}
    w, names = {}, {}
    for role, node, idx in TAIL:
        n = nodes.get(node)
        if n is None or len(n.input) <= idx or n.input[idx] not in inits:
            raise HeadError(f"not a MobileFaceNet tail: node {node!r} (input {idx}) missing")
        names[role] = n.input[idx]
        w[role] = numpy_helper.to_array(inits[n.input[idx]]).astype(np.float32)
    uses: dict[str, int] = {}
    for n in model.graph.node:
        for i in n.input:
            uses[i] = uses.get(i, 0) + 1
    shared = [r for r, nm in names.items() if uses.get(nm, 0) != 1]
    if shared:  # tf2onnx folds equal constants into one: training them would move other nodes
        raise HeadError(f"tail initialisers shared with other nodes: {shared}")
    cut = nodes[CUT_NODE].input[0]
    c_in = w["w7"].shape[1]
    k = w["wdw"].shape[2:]
    if w["w7"].shape[2:] != (1, 1) or w["wdw"].shape[1] != 1:
        raise HeadError("unexpected tail kernel shapes")
    return Head(cut, (c_in, int(k[0]), int(k[1])), w, names)


def trunk(model: onnx.ModelProto, head: Head, input_name: str) -> onnx.ModelProto:
    """The frozen part: input -> the cut tensor (activations to cache)."""
    from onnx.utils import Extractor
    m = onnx.shape_inference.infer_shapes(model)
    return Extractor(m).extract_model([input_name], [head.cut])


def forward(act: np.ndarray, w: dict) -> np.ndarray:
    """numpy reference: N×C×H×W trunk activations -> L2-normalised embeddings."""
    w7 = w["w7"][:, :, 0, 0]                                   # 512 x 128
    h = np.einsum("nchw,oc->nohw", act, w7, optimize=True) + w["b7"][None, :, None, None]
    c = w["c7"].reshape(1, -1, 1, 1)
    h = np.maximum(h, 0) + c * (h - np.abs(h))
    g = np.einsum("nchw,chw->nc", h, w["wdw"][:, 0], optimize=True) + w["bdw"]
    z = g @ w["wc"][:, :, 0, 0].T + w["bc"]
    e = z @ w["wl"][:, :, 0, 0].T + w["bl"]
    return e / np.sqrt(np.maximum((e * e).sum(1, keepdims=True), 1e-10))


def write_weights(model: onnx.ModelProto, head: Head, w: dict) -> onnx.ModelProto:
    """A copy of `model` with the tail's initialisers replaced by `w`
    (same names, shapes and dtype)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    by_name = {head.names[r]: r for r in head.names}
    done = set()
    for i, init in enumerate(m.graph.initializer):
        role = by_name.get(init.name)
        if role is None:
            continue
        arr = np.asarray(w[role], np.float32)
        if arr.shape != tuple(init.dims):
            raise HeadError(f"{role}: shape {arr.shape}, model wants {tuple(init.dims)}")
        m.graph.initializer[i].CopyFrom(numpy_helper.from_array(arr, init.name))
        done.add(role)
    if done != set(head.names):
        raise HeadError(f"initialisers not found: {sorted(set(head.names) - done)}")
    return m
