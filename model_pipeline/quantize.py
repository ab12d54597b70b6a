"""Optional int8 dynamic quantization, shipped only when it decides like the fp32 model.

onnxruntime's dynamic quantization stores the MatMul/Gemm weights as int8 and
quantizes activations on the fly. It changes outputs a little, so the parity
gate (built for an exact re-export) does not apply; instead the int8 model
must *decide* like the fp32 one on the held-out target rows:

* classification: the same class at threshold 0.5 on at least
  ``min_agreement`` of the rows;
* regression: a prediction within 1% of the fp32 predictions' range on at
  least ``min_agreement`` of the rows.

A model that falls short is not shipped (the run still succeeds with the fp32
model, and the result records why).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from .export import CATEGORICAL_INPUT, input_names

REGRESSION_TOLERANCE = 0.01  # of the fp32 predictions' range


def _run(path: Path, x: np.ndarray, cats: np.ndarray | None) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds: dict[str, np.ndarray] = {input_names(0 if cats is None else cats.shape[1])[0]: x}
    if cats is not None:
        feeds[CATEGORICAL_INPUT] = cats.astype(str).astype(object)
    # the last output: probability (classification) or prediction (regression)
    return session.run(None, feeds)[-1].reshape(-1).astype(np.float64)


def quantize_and_gate(fp32_path: Path, int8_path: Path, x_raw: np.ndarray, categorical: np.ndarray | None, task: str,
                      min_agreement: float) -> dict[str, Any]:
    """Write ``int8_path`` from ``fp32_path`` if its decisions agree on ``x_raw`` often enough; returns the measurements.

    The int8 file is removed again when the agreement is below ``min_agreement``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fd, tmp_name = tempfile.mkstemp(prefix=f".{int8_path.name}.", suffix=".onnx", dir=int8_path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    logger = logging.getLogger()
    old = logger.level
    try:
        logger.setLevel(logging.ERROR)  # the quantizer logs a pre-processing suggestion at WARNING for every model
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_dynamic(str(fp32_path), str(tmp), weight_type=QuantType.QInt8)
        fp32, int8 = _run(fp32_path, x_raw, categorical), _run(tmp, x_raw, categorical)
        if task == "regression":
            span = float(fp32.max() - fp32.min()) or 1.0
            agree = np.abs(int8 - fp32) <= REGRESSION_TOLERANCE * span
        else:
            agree = (int8 > 0.5) == (fp32 > 0.5)
        agreement = float(agree.mean())
        shipped = agreement >= min_agreement
        if shipped:
            tmp.chmod(0o644)
            os.replace(tmp, int8_path)
        return {"agreement": agreement, "min_agreement": min_agreement, "shipped": shipped, "rows": len(fp32),
                "max_abs_diff": float(np.abs(int8 - fp32).max(initial=0.0)), "bytes_fp32": fp32_path.stat().st_size,
                "bytes_int8": int8_path.stat().st_size if shipped else None, "weight_type": "QInt8 (dynamic)"}
    finally:
        logger.setLevel(old)
        tmp.unlink(missing_ok=True)
