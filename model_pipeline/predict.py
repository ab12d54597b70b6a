"""Score a table with a published run, the way a server would: verify first, then load.

Every artifact's size, sha256 and crc32c are checked against the manifest
*before* any onnxruntime session is created, so a tampered or corrupted file
never reaches the runtime; the preprocessor and the model are parsed from the
very bytes that were hashed, and no artifact path may leave the run folder. Rows are checked against the signature's
``columns`` and the categories the model learned; a category it never saw is
an error here (the graph itself would encode it as all zeros).

A text model (``signature.text``) reads one text column instead: each cell
exactly as written (no ``NA`` -> missing, no number parsing), tokenized by
:class:`lepton_cdk.serve.text.TextEncoder` from the verified tokenizer
artifact, the same function ``lepton serve`` and the parity gate use. An
output with several values a row (logits, probabilities, an embedding)
becomes one column per value: ``<output>_<label>`` when the signature names
the classes, else ``<output>_<index>``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lepton_cdk.contract import Manifest, parse_json_document, read_artifact_bytes, read_manifest, verify_artifact

from .data import DataError, Preprocessor, read_table


class ModelFileError(RuntimeError):
    """A model file exists and matches its manifest but onnxruntime cannot load it."""


def open_session(model: str | Path | bytes, *, name: str | Path | None = None) -> Any:
    """An onnxruntime CPU session for ``model`` (a path, or the model's bytes with ``name`` for messages);
    :class:`ModelFileError` (one line) when it is not a loadable ONNX model."""
    import onnxruntime as ort

    source = model if isinstance(model, bytes) else str(model)
    label = name if name is not None else model
    try:
        return ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (pybind) error types
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{label} is not a loadable ONNX model ({first}); re-run `lepton pipeline run` to export it again") from None


def predict_table(run_dir: str | Path, data: str | Path) -> pd.DataFrame:
    """The model's outputs for every row of ``data``, one column per output value, in row order."""
    manifest = read_manifest(run_dir, verify=False)
    if manifest.signature.text is not None:
        return _predict_text(manifest, data)
    # The preprocessor and the model are used as the very bytes that were hashed (no second read to swap a file
    # into); every other artifact is re-hashed too, all before any InferenceSession.
    pre_art, model_art = manifest.artifact("preprocessor"), manifest.model_artifact
    pre_bytes = read_artifact_bytes(manifest, pre_art)
    model_bytes = read_artifact_bytes(manifest, model_art)
    for art in manifest.artifacts:
        if art.name not in (pre_art.name, model_art.name):
            verify_artifact(manifest, art)
    pre_file = manifest.artifact_file(pre_art)
    pre = Preprocessor.from_dict(parse_json_document(pre_bytes, what=f"preprocessor {pre_file}", fix="re-run `lepton pipeline run`"))
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
    session = open_session(model_bytes, name=manifest.artifact_file(model_art))
    names = [o.name for o in session.get_outputs()]
    out = session.run(names, feeds)
    return pd.DataFrame({n: o.reshape(-1) for n, o in zip(names, out, strict=True)})


def text_column(manifest: Manifest) -> str:
    """The table column a text model reads: its text input's recorded column, else the input's own name."""
    name = manifest.signature.text.input
    spec = next((t for t in manifest.signature.inputs if t.name == name), None)
    return spec.columns[0] if spec is not None and spec.columns else name


def read_text_column(data: str | Path, column: str) -> list[str]:
    """Every cell of ``column`` in ``data`` as the text it holds, in row order.

    The table is first read (and refused, one line) as :func:`read_table` reads it; the column is then
    taken as written, so "NA", "1.50" or " padded " reach the tokenizer as those characters. An empty CSV
    cell, or a null in Parquet, is the empty text.
    """
    table = read_table(data)
    if column not in table.columns:
        shown = ", ".join(map(repr, list(table.columns)[:8])) + (", ..." if len(table.columns) > 8 else "")
        raise DataError(f"data file {data} has no column {column!r}, which holds the texts the model reads (its columns: {shown}); "
                        f"add it, or rename the column holding the texts to {column!r}")
    if Path(data).suffix.lower() in (".parquet", ".pq"):
        values = table[column].tolist()
        bad = next((v for v in values if v is not None and not isinstance(v, str) and not (isinstance(v, float) and np.isnan(v))), None)
        if bad is not None:
            raise DataError(f"column {column!r} in {data} holds {type(bad).__name__} values, not text; store it as a string column")
        return ["" if v is None or isinstance(v, float) else v for v in values]
    raw = pd.read_csv(data, usecols=[column], dtype=str, keep_default_na=False, index_col=False)
    return raw[column].tolist()


def _output_columns(manifest: Manifest, name: str, values: np.ndarray) -> dict[str, np.ndarray]:
    flat = values.reshape(len(values), -1)
    if flat.shape[1] == 1:
        return {name: flat[:, 0]}
    labels = manifest.signature.labels
    suffixes = labels if len(labels) == flat.shape[1] else [str(i) for i in range(flat.shape[1])]
    return {f"{name}_{suffix}": flat[:, i] for i, suffix in enumerate(suffixes)}


def _predict_text(manifest: Manifest, data: str | Path) -> pd.DataFrame:
    from lepton_cdk.serve.text import TextEncoder, TextInputError

    # every artifact checked before any tokenizer or session is built; the model and the tokenizer are
    # used as the very bytes that were hashed
    model_art = manifest.model_artifact
    model_bytes = read_artifact_bytes(manifest, model_art)
    for art in manifest.artifacts:
        if art.name != model_art.name:
            verify_artifact(manifest, art)
    encoder = TextEncoder.from_manifest(manifest)
    texts = read_text_column(data, text_column(manifest))
    session = open_session(model_bytes, name=manifest.artifact_file(model_art))
    names = [o.name for o in session.get_outputs()]
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    # batches of the serving limit: padding to the longest text of a small batch, as the server does
    step = manifest.serving.max_batch_size
    for start in range(0, len(texts), step):
        try:
            feeds = encoder.encode(texts[start:start + step])
        except TextInputError as exc:
            raise DataError(f"{data}: {exc}") from None
        for name, value in zip(names, session.run(names, feeds), strict=True):
            parts[name].append(value)
    columns: dict[str, np.ndarray] = {}
    for name in names:
        columns.update(_output_columns(manifest, name, np.concatenate(parts[name])))
    return pd.DataFrame(columns)


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
