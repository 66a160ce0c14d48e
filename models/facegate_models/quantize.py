"""Static int8 quantisation of FaceNet, calibrated on real aligned face crops.

The final L2 normalisation (and the bottleneck batch-norm feeding it) stays in
float so that embeddings remain unit length.  Variants differ in how tract can
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


def quantise(fp32: Path, out: Path, variant: Variant, input_name: str,
             calib: np.ndarray, work: Path) -> None:
    pre = work / "facenet_pre.onnx"
    if not pre.exists():
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=False)
    m = onnx.load(str(pre))
    exclude = float_tail(m)
    batches = [calib[i:i + 1] for i in range(calib.shape[0])]
    print(f"[quantise] {variant.name} on {len(batches)} crops", flush=True)
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
