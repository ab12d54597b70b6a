"""The parity gate: the exported ONNX file must answer like the PyTorch model.

onnxruntime (CPU provider) and PyTorch score the same held-out raw rows at
batch size N and at batch size 1. Output names are checked first, then
shapes, then values; any breach of ``|onnx - torch| <= atol + rtol * |torch|``
raises :class:`ParityError`, so a model that a server would answer
differently never reaches a manifest. Unlike a warning, a value mismatch here
is fatal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from lepton_cdk.contract import ParityReport

from .data import Preprocessor
from .export import CATEGORICAL_INPUT, input_names, output_names

_PROVIDER = "CPUExecutionProvider"


class ParityError(RuntimeError):
    """The ONNX model's answers differ from PyTorch's beyond the tolerance."""


def probe_rows(n_features: int) -> np.ndarray:
    """Rows every parity check adds to the caller's: all-missing, huge, tiny and
    infinite values, so imputation and clipping are always exercised."""
    return np.array([
        [np.nan] * n_features,
        [1e30] * n_features,
        [-1e30] * n_features,
        [np.inf if i % 2 else -np.inf for i in range(n_features)],
        [0.0] * n_features,
    ], dtype=np.float32)


def _torch_outputs(model: nn.Module, x: np.ndarray, onehot: np.ndarray | None, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    model.eval()
    with torch.no_grad():
        out = model(torch.from_numpy(x)) if onehot is None else model(torch.from_numpy(x), torch.from_numpy(onehot))
    return {name: t.numpy() for name, t in zip(names, out, strict=True)}


def _diffs(got: np.ndarray, want: np.ndarray, atol: float, rtol: float) -> tuple[float, float, bool]:
    got64, want64 = got.astype(np.float64), want.astype(np.float64)
    # NaN on either side is a breach, never silently "equal"
    abs_diff = np.where(np.isnan(got64) | np.isnan(want64), np.inf, np.abs(got64 - want64))
    rel_diff = abs_diff / np.maximum(np.abs(want64), np.finfo(np.float32).tiny)
    ok = bool(np.all(abs_diff <= atol + rtol * np.abs(want64)))
    return float(abs_diff.max(initial=0.0)), float(rel_diff.max(initial=0.0)), ok


def _check_shapes(got: dict[str, np.ndarray], want: dict[str, np.ndarray], names: Any, where: str, axes: str) -> None:
    """Raise :class:`ParityError` when an output's shape differs between onnxruntime and PyTorch (a graph specialized
    to its example's shape); ``axes`` names what the export must make dynamic."""
    for name in names:
        if got[name].shape != want[name].shape:
            raise ParityError(f"output {name!r} has shape {list(got[name].shape)} in onnxruntime but {list(want[name].shape)} in "
                              f"PyTorch {where}; re-export with {axes}")


def _accumulate(per_output: dict[str, dict[str, float]], got: dict[str, np.ndarray], want: dict[str, np.ndarray],
                atol: float, rtol: float, where: str) -> None:
    """Fold one comparison into ``per_output``'s maxima; raise :class:`ParityError` on the first output past the tolerance."""
    for name, stats in per_output.items():
        max_abs, max_rel, ok = _diffs(got[name], want[name], atol, rtol)
        stats["max_abs_diff"] = max(stats["max_abs_diff"], max_abs)
        stats["max_rel_diff"] = max(stats["max_rel_diff"], max_rel)
        if not ok:
            raise ParityError(
                f"output {name!r} differs between onnxruntime and PyTorch by up to {max_abs:.3g} (relative {max_rel:.3g}) "
                f"{where}, beyond atol={atol:g} + rtol={rtol:g}; the ONNX file does not reproduce the model: "
                "re-export it from this model and do not loosen the tolerance to pass"
            )


def check_parity(serving_model: nn.Module, onnx_path: str | Path, x_raw: np.ndarray,
                 atol: float = 1e-5, rtol: float = 1e-4, *, categorical: np.ndarray | None = None,
                 preprocessor: Preprocessor | None = None, per_row: dict[str, np.ndarray] | None = None) -> ParityReport:
    """Compare onnxruntime with PyTorch on raw rows ``x_raw`` (NaN allowed) plus :func:`probe_rows`.

    With categorical columns, ``categorical`` holds their raw text ``[rows, m]``
    and ``preprocessor`` their learned categories: PyTorch gets the one-hot
    block computed in Python, onnxruntime the text, so the graph's own
    encoder is checked too (probe rows add missing and unseen categories).

    Checks, in order: the ONNX model's input and output names, the output
    shapes at batch N and batch 1, and every output value. Raises
    :class:`ParityError` (one line: which output, the max difference, the
    tolerance and what to do) on any breach; returns a passed
    :class:`ParityReport` otherwise. Given a ``per_row`` dict, it is filled with
    each output's absolute difference on the rows of ``x_raw`` (batch N, probes
    left out), for the report's histogram.
    """
    if atol < 0 or rtol < 0:
        raise ValueError(f"atol={atol} and rtol={rtol} must be >= 0")
    x = np.asarray(x_raw, dtype=np.float32)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"x_raw must be a non-empty [rows, features] array; got shape {x.shape}")
    probes = probe_rows(x.shape[1])
    n_given = len(x)
    x = np.concatenate([x, probes])
    cats = None
    if categorical is not None:
        if preprocessor is None:
            raise ValueError("categorical values need the preprocessor that learned their categories")
        cats = np.asarray(categorical, dtype=object)
        # missing, unseen, then each column's first known category
        extra = np.array([[""] * cats.shape[1], ["\x00unseen"] * cats.shape[1]] +
                         [[c[0] for c in preprocessor.categories]] * (len(probes) - 2), dtype=object)
        cats = np.concatenate([cats, extra])
    names_out = output_names(getattr(serving_model, "task", "classification"))
    names_in = input_names(0 if cats is None else cats.shape[1])

    session = ort.InferenceSession(str(onnx_path), providers=[_PROVIDER])
    in_names = [i.name for i in session.get_inputs()]
    out_names = [o.name for o in session.get_outputs()]
    if in_names != list(names_in) or out_names != list(names_out):
        raise ParityError(
            f"{onnx_path} has inputs {in_names} and outputs {out_names}, expected {list(names_in)} and {list(names_out)}; "
            "re-export it with model_pipeline.export.export_onnx"
        )

    per_output: dict[str, dict[str, float]] = {name: {"max_abs_diff": 0.0, "max_rel_diff": 0.0} for name in names_out}
    # batch N and batch 1: a graph specialized to its example's batch size fails one of them
    for rows in (slice(None), slice(0, 1)):
        batch = x[rows]
        feeds = {names_in[0]: batch}
        onehot = None
        if cats is not None:
            feeds[CATEGORICAL_INPUT] = cats[rows].astype(str).astype(object)
            onehot = preprocessor.onehot(cats[rows])  # type: ignore[union-attr]
        want = _torch_outputs(serving_model, batch, onehot, names_out)
        got = dict(zip(out_names, session.run(out_names, feeds), strict=True))
        _check_shapes(got, want, names_out, f"for a batch of {len(batch)}", "a dynamic batch dimension")
        if per_row is not None and rows == slice(None):
            per_row.update({name: np.abs(got[name][:n_given].astype(np.float64) - want[name][:n_given].astype(np.float64)).reshape(-1)
                            for name in names_out})
        _accumulate(per_output, got, want, atol, rtol, f"on a batch of {len(batch)}")
    return ParityReport(
        atol=atol,
        rtol=rtol,
        max_abs_diff=max(s["max_abs_diff"] for s in per_output.values()),
        max_rel_diff=max(s["max_rel_diff"] for s in per_output.values()),
        rows_checked=len(x),
        passed=True,
        per_output=per_output,
        runtime=f"onnxruntime {ort.__version__} {session.get_providers()[0]}",
    )


def probe_texts(texts: list[str]) -> list[str]:
    """Texts every text parity check adds to the caller's: empty, one word, non-ASCII, and one longer than any
    ``max_length`` (it is truncated), so padding, truncation and the tokenizer's normalizer are always exercised."""
    long = " ".join((texts or ["the quick brown fox jumps over the lazy dog"]) * 64)[:20_000]
    return ["", "word", "Ünïcödé — naïve café 東京 🚀", long]


def check_text_parity(serving_model: nn.Module, onnx_path: str | Path, encoder: Any, texts: list[str], atol: float = 1e-5,
                      rtol: float = 1e-4, *, max_texts: int = 64) -> tuple[ParityReport, list[list[int]]]:
    """Compare onnxruntime with PyTorch on held-out ``texts`` (the first ``max_texts``) plus :func:`probe_texts`.

    Both get the token ids :class:`lepton_cdk.serve.text.TextEncoder`
    ``encoder`` makes (what a server feeds), at several batch sizes and
    lengths: all texts in one batch (padded to the longest, the truncated
    probe at ``max_length``), each of the first few alone (no padding), and
    batches of 4 (mixed lengths). Names, then shapes, then values are
    checked; a breach of ``|onnx - torch| <= atol + rtol * |torch|`` raises
    :class:`ParityError`. Returns the passed report (per output max abs /
    rel diff) and the ``[batch, sequence]`` shapes checked.
    """
    if atol < 0 or rtol < 0:
        raise ValueError(f"atol={atol} and rtol={rtol} must be >= 0")
    checked = list(texts[:max_texts]) + probe_texts(list(texts[:8]))
    names_out = list(serving_model.output_names)
    names_in = list(serving_model.graph_inputs)
    session = ort.InferenceSession(str(onnx_path), providers=[_PROVIDER])
    in_names = [i.name for i in session.get_inputs()]
    out_names = [o.name for o in session.get_outputs()]
    if in_names != names_in or out_names != names_out:
        raise ParityError(f"{onnx_path} has inputs {in_names} and outputs {out_names}, expected {names_in} and {names_out}; "
                          "re-export it with model_pipeline.export.export_text_onnx")
    batches = [checked] + [[t] for t in checked[:3]] + [checked[-1:], checked[-4:-3]] \
        + [checked[i:i + 4] for i in range(0, len(checked), 4)]
    per_output = {name: {"max_abs_diff": 0.0, "max_rel_diff": 0.0} for name in names_out}
    shapes: list[list[int]] = []
    serving_model.eval()
    for batch in batches:
        feeds = encoder.encode(batch)
        shape = list(feeds[names_in[0]].shape)
        if shape not in shapes:
            shapes.append(shape)
        with torch.no_grad():
            want = dict(zip(names_out, (t.numpy() for t in serving_model(*(torch.from_numpy(feeds[n]) for n in names_in))),
                            strict=True))
        got = dict(zip(out_names, session.run(out_names, {n: feeds[n] for n in names_in}), strict=True))
        _check_shapes(got, want, names_out, f"for token ids {shape}", "dynamic batch and sequence axes")
        _accumulate(per_output, got, want, atol, rtol, f"on token ids {shape}")
    report = ParityReport(
        atol=atol, rtol=rtol,
        max_abs_diff=max(s["max_abs_diff"] for s in per_output.values()),
        max_rel_diff=max(s["max_rel_diff"] for s in per_output.values()),
        rows_checked=len(checked), passed=True, per_output=per_output,
        runtime=f"onnxruntime {ort.__version__} {session.get_providers()[0]}",
    )
    return report, shapes
