"""INT8 quantization in QDQ format with ONNX Runtime, calibrated on healthy features.

Why QDQ: the same file runs in ONNX Runtime (CPU) and is what TensorRT
needs to build an explicitly quantized INT8 engine (TensorRT reads the
Q/DQ scales; symmetric, zero point 0, per-tensor activations, per-channel
weights). Only MatMul/Gemm (the transformer's weights and attention) are
quantized; the score arithmetic after the network stays float, so inputs far
outside the healthy range (a real fault) still score in full precision even
though the network's own view of them saturates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def quantize_qdq(
    fp32_path: str | Path, int8_path: str | Path, calib_features: np.ndarray, batch: int = 64
) -> Path:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    data = np.ascontiguousarray(calib_features, dtype=np.float32)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._i = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._i >= len(data):
                return None
            x = data[self._i : self._i + batch]
            self._i += batch
            return {"features": x}

        def rewind(self) -> None:
            self._i = 0

    out = Path(int8_path)
    quantize_static(
        str(fp32_path),
        str(out),
        _Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=["MatMul", "Gemm"],
        per_channel=True,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    return out
