"""Static int8 quantisation of the embedders, calibrated on real aligned face crops.

The final L2 normalisation (and, for FaceNet, the bottleneck batch-norm
feeding it) stays in float so that embeddings remain unit length.
MobileFaceNet also keeps its first convolution and its depthwise convolutions
in float (`mobilefacenet_float_nodes`): quantised per tensor they cost the
most cosine to fp32 for the least time. Variants differ in how tract can
execute them; docs/PERFORMANCE.md records which one runs fastest.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process
import importlib
from onnxruntime.quantization.calibrate import TensorData, TensorsData

# The module (the package re-exports a function of the same name).
_ort_quantize = importlib.import_module("onnxruntime.quantization.quantize")

# Significant decimal digits kept of every calibrated activation range.
RANGE_DIGITS = 4


def round_outward(x: np.ndarray, up: bool) -> np.ndarray:
    """`x` rounded to RANGE_DIGITS significant digits, away from the range's
    inside (up for a maximum, down for a minimum), in x's dtype."""
    v = float(x)
    if v == 0.0 or not np.isfinite(v):
        return x
    step = 10.0 ** (np.floor(np.log10(abs(v))) - (RANGE_DIGITS - 1))
    r = (np.ceil if up else np.floor)(v / step) * step
    return np.array(r, dtype=x.dtype)


class rounded_ranges:
    """Within this context, onnxruntime's calibration ranges are rounded
    outward to RANGE_DIGITS significant digits before the scales are
    computed. MinMax ranges carry the last-bit noise of the float kernels
    that produced them (which differs between CPUs and SIMD paths), and those
    bits end up in the model's scale constants, so in its sha256 -- which the
    calibrated thresholds are keyed by. Rounding makes the quantised model
    reproducible on other machines; the scales move by < 0.1 %."""

    def __enter__(self):
        self.orig = _ort_quantize.create_calibrator

        def create(*args, **kwargs):
            cal = self.orig(*args, **kwargs)
            compute = cal.compute_data

            def compute_rounded():
                t = compute()
                out = {}
                for k in t:
                    d = t[k]
                    lo, hi = d.range_value
                    out[k] = TensorData(lowest=round_outward(np.asarray(lo), False),
                                        highest=round_outward(np.asarray(hi), True))
                return TensorsData(t.calibration_method, out)

            cal.compute_data = compute_rounded
            return cal

        _ort_quantize.create_calibrator = create
        return self

    def __exit__(self, *exc):
        _ort_quantize.create_calibrator = self.orig
        return False


@dataclass(frozen=True)
class Variant:
    name: str
    fmt: QuantFormat
    per_channel: bool
    ops: tuple[str, ...] | None
    description: str


VARIANTS = (
    Variant("facenet-int8-qdq-pc", QuantFormat.QDQ, True, None,
            "int8 QDQ, per-channel weights (s8), per-tensor u8 activations, MinMax calibration"),
    Variant("facenet-int8-qdq-pt", QuantFormat.QDQ, False, None,
            "int8 QDQ, per-tensor weights (s8) and u8 activations, MinMax calibration"),
    # Relu and MaxPool are listed so that the quantiser fuses each Relu into
    # the QLinearConv before it and pools in u8: otherwise every conv output
    # takes a DequantizeLinear -> Relu -> QuantizeLinear round trip (132 DQ,
    # 103 Q instead of 76 and 44), which cost tract more than it saved.
    # Concat, Add and Mul stay float: tract has no QLinearConcat/Add/Mul.
    Variant("facenet-int8-qlinear", QuantFormat.QOperator, False, ("Conv", "MatMul", "Relu", "MaxPool"),
            "int8 QOperator (QLinearConv with fused Relu, QLinearMatMul, u8 MaxPool), per-tensor, MinMax calibration"),
)


MFN_VARIANTS = (
    Variant("mobilefacenet-int8-qdq-pc", QuantFormat.QDQ, True, ("Conv",),
            "int8 QDQ, per-channel weights (s8), per-tensor u8 activations, MinMax calibration; "
            "first and depthwise convolutions and the L2 normalisation in float"),
    Variant("mobilefacenet-int8-qlinear", QuantFormat.QOperator, False, ("Conv",),
            "int8 QOperator (QLinearConv), per-tensor, MinMax calibration; "
            "first and depthwise convolutions and the L2 normalisation in float"),
)


class Crops(CalibrationDataReader):
    def __init__(self, input_name: str, batches: list[np.ndarray]):
        self.input_name = input_name
        self.it = iter(batches)

    def get_next(self):
        b = next(self.it, None)
        return None if b is None else {self.input_name: b}


def float_tail(m: onnx.ModelProto) -> list[str]:
    """Names of the nodes from the bottleneck batch-norm to the output."""
    names = [n.name for n in m.graph.node
             if n.name.startswith("embeddings") or "Bottleneck/BatchNorm" in n.name]
    if not any(n.startswith("embeddings") for n in names):
        raise RuntimeError("could not find the L2-normalisation nodes to keep in float")
    return names


def mobilefacenet_float_nodes(m: onnx.ModelProto) -> list[str]:
    """Nodes of MobileFaceNet kept in float: the first Conv (it sees the
    normalised image), every depthwise Conv (group > 1: one 3x3 filter per
    channel, badly served by a per-tensor scale) and the appended L2
    normalisation."""
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    if not convs:
        raise RuntimeError("no Conv in the model")
    names = [convs[0].name]
    for n in convs[1:]:
        group = next((a.i for a in n.attribute if a.name == "group"), 1)
        if group > 1:
            names.append(n.name)
    tail = [n.name for n in m.graph.node if n.name.startswith("l2norm/")]
    if not tail:
        raise RuntimeError("could not find the L2-normalisation nodes to keep in float")
    return names + tail


def quantise(fp32: Path, out: Path, variant: Variant, input_name: str,
             calib: np.ndarray, work: Path, exclude_fn=float_tail,
             pre_name: str = "facenet_pre.onnx") -> None:
    pre = work / pre_name
    if not pre.exists():
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=False)
    m = onnx.load(str(pre))
    exclude = exclude_fn(m)
    batches = [calib[i:i + 1] for i in range(calib.shape[0])]
    print(f"[quantise] {variant.name} on {len(batches)} crops", flush=True)
    with rounded_ranges():
        quantize_static(
            str(pre), str(out), Crops(input_name, batches),
            quant_format=variant.fmt,
            op_types_to_quantize=list(variant.ops) if variant.ops else None,
            per_channel=variant.per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=CalibrationMethod.MinMax,
        )
