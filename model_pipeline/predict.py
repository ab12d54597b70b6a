"""Score a table with a published run, the way a server would: verify first, then load.

Every artifact's size, sha256 and crc32c are checked against the manifest
*before* any onnxruntime session is created, so a tampered or corrupted file
never reaches the runtime. Rows are checked against the signature's
``columns`` and the categories the model learned; a category it never saw is
an error here (the graph itself would encode it as all zeros).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lepton_cdk.contract import read_manifest

from .data import DataError, Preprocessor, read_table


class ModelFileError(RuntimeError):
    """A model file exists and matches its manifest but onnxruntime cannot load it."""


def open_session(path: str | Path) -> Any:
    """An onnxruntime CPU session for ``path``; :class:`ModelFileError` (one line) when the file is not a loadable ONNX model."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (pybind) error types
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path} is not a loadable ONNX model ({first}); re-run `lepton pipeline run` to export it again") from None


def predict_table(run_dir: str | Path, data: str | Path) -> pd.DataFrame:
    """The model's outputs for every row of ``data``, one column per output, in row order."""
    manifest = read_manifest(run_dir, verify=True)  # sha256 before any InferenceSession
    pre = Preprocessor.from_dict(json.loads(manifest.artifact_file(manifest.artifact("preprocessor")).read_text()))
    table = read_table(data)
    inputs = manifest.signature.inputs
    wanted = [c for t in inputs for c in (t.columns or [])] or list(manifest.signature.feature_names)
    missing = [c for c in wanted if c not in table.columns]
    if missing:
        raise DataError(f"data file {data} lacks column(s) {', '.join(missing)} that the model reads; add them (blank cells are allowed)")
    feeds: dict[str, np.ndarray] = {}
    for spec in inputs:
        cols = spec.columns or list(pre.features)
        if spec.dtype == "string":
            values = pre.categorical_values(table.rename(columns=dict(zip(cols, pre.categorical, strict=True))))
            pre.onehot(values, strict=True)  # raises for a category the model never saw
            feeds[spec.name] = values.astype(str).astype(object)
        else:
            numeric = table[cols].apply(pd.to_numeric, errors="coerce")
            bad = numeric.isna() & table[cols].notna()
            if bad.any().any():
                col = bad.any().idxmax()
                raise DataError(f"column {col!r} in {data} must be numeric but has {int(bad[col].sum())} non-numeric value(s); fix or blank them")
            feeds[spec.name] = numeric.to_numpy(dtype=np.float32)
    session = open_session(manifest.artifact_file(manifest.model_artifact))
    names = [o.name for o in session.get_outputs()]
    out = session.run(names, feeds)
    return pd.DataFrame({n: o.reshape(-1) for n, o in zip(names, out, strict=True)})


def write_csv_atomic(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write ``frame`` as CSV through a temporary file renamed into place (never half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        frame.to_csv(tmp, index=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
