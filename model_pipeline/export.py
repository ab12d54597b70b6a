"""ONNX export of the serving model, and the signature read back from the file.

One self-contained ``.onnx`` file is written (no external-data side file),
through a temporary file renamed into place, so a reader never finds a
half-written model. The signature recorded in the manifest is read from the
written file with the ``onnx`` package, not copied from what was asked for.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from lepton_cdk.contract import Signature, TensorSpec

INPUT_NAME = "features"
NUMERIC_INPUT = "numeric"  # with categorical columns, the raw numbers come in here ...
CATEGORICAL_INPUT = "categorical"  # ... and the raw text here, [batch, m] tensor(string)
OUTPUT_NAMES = ("logit", "probability")
REGRESSION_OUTPUTS = ("prediction",)
BATCH_DIM = "batch"
DEFAULT_OPSET = 18
ML_DOMAIN, ML_OPSET = "ai.onnx.ml", 3
_ONEHOT = "onehot"  # internal: the encoded categoricals, input of the torch-exported part


def output_names(task: str) -> tuple[str, ...]:
    """The graph's outputs for ``task``: ``logit, probability`` (classification) or ``prediction`` (regression)."""
    return REGRESSION_OUTPUTS if task == "regression" else OUTPUT_NAMES


def input_names(n_categorical: int) -> tuple[str, ...]:
    """The graph's inputs: ``features`` alone, or ``numeric`` and ``categorical`` when there are categorical columns."""
    return (NUMERIC_INPUT, CATEGORICAL_INPUT) if n_categorical else (INPUT_NAME,)


class ExportError(RuntimeError):
    """The model could not be exported, or the written file is not what a server expects."""


def _dtype_name(elem_type: int) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name


def _tensor_spec(value: onnx.ValueInfoProto, columns: Sequence[str] | None = None) -> TensorSpec:
    dims: list[int | str] = [d.dim_param if d.HasField("dim_param") else int(d.dim_value) for d in value.type.tensor_type.shape.dim]
    elem = value.type.tensor_type.elem_type
    dtype = "string" if elem == onnx.TensorProto.STRING else _dtype_name(elem)
    return TensorSpec(name=value.name, dtype=dtype, shape=dims, columns=list(columns) if columns is not None else None)


def read_signature(path: str | Path, feature_names: Sequence[str] = (), columns: dict[str, Sequence[str]] | None = None) -> Signature:
    """The I/O signature of the ONNX file at ``path``: names, dtypes, dims (a string is dynamic) and opset.

    ``columns`` maps an input name to the raw table columns along its last
    axis; they are recorded in the signature (manifest schema 1.1.0).
    """
    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise ExportError(f"{path} declares no default-domain opset; re-export the model")
    initializers = {i.name for i in model.graph.initializer}
    fed = [v.name for v in model.graph.input if v.name not in initializers]
    if columns is None and len(fed) == 1 and feature_names:
        columns = {fed[0]: list(feature_names)}  # one input: its columns are the features
    return Signature(
        opset=int(opset),
        # older exporters list initializers among the inputs; a server feeds only the rest
        inputs=[_tensor_spec(v, (columns or {}).get(v.name)) for v in model.graph.input if v.name not in initializers],
        outputs=[_tensor_spec(v) for v in model.graph.output],
        exporter=f"{model.producer_name} {model.producer_version}".strip(),
        feature_names=list(feature_names),
    )


def expected_signature_problems(sig: Signature, n_features: int, n_categorical: int = 0, task: str = "classification") -> list[str]:
    """How ``sig`` differs from the serving contract: one float32 input
    ``features [batch, n_features]`` (or ``numeric [batch, n_features]`` and
    string ``categorical [batch, n_categorical]``) and float32 outputs
    ``logit`` and ``probability`` (regression: ``prediction``), each
    ``[batch, 1]``. Empty when it matches."""
    if n_categorical:
        want_in = [(NUMERIC_INPUT, "float32", [BATCH_DIM, n_features]), (CATEGORICAL_INPUT, "string", [BATCH_DIM, n_categorical])]
    else:
        want_in = [(INPUT_NAME, "float32", [BATCH_DIM, n_features])]
    want_out = [(name, "float32", [BATCH_DIM, 1]) for name in output_names(task)]
    problems = []
    for kind, got, want in (("inputs", sig.inputs, want_in), ("outputs", sig.outputs, want_out)):
        have = [(t.name, t.dtype, list(t.shape)) for t in got]
        if have != want:
            problems.append(f"{kind} are {have}, expected {want}")
    return problems


def _strip_debug_metadata(path: Path, categories: Sequence[Sequence[str]] = ()) -> None:
    """Drop the exporter's per-node debug metadata (``pkg.torch.onnx.stack_trace`` and friends).

    It records the source file paths of the machine that exported, so the same
    data and seed gave a different file (and model version) in every checkout,
    and a shipped model told the world where its builder kept their code.
    Serving never reads it.
    """
    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
    if categories:
        model = add_categorical_encoder(model, categories)
    onnx.save(model, str(path))


def add_categorical_encoder(model: onnx.ModelProto, categories: Sequence[Sequence[str]]) -> onnx.ModelProto:
    """Prepend string -> one-hot encoding to ``model`` (whose ``onehot`` input takes the encoded block).

    The new input ``categorical`` is tensor(string) ``[batch, m]``, one column
    per categorical feature. Each column goes through an ``ai.onnx.ml``
    LabelEncoder (category -> index, anything else -> -1) and an Equal against
    ``0..n-1``, so a missing ("") or unseen value encodes as all zeros, exactly
    like :meth:`model_pipeline.data.Preprocessor.onehot`.
    """
    graph = model.graph
    h = onnx.helper
    nodes, inits, blocks = [], [], []
    for j, cats in enumerate(categories):
        idx, col, code, hit = f"cat_idx_{j}", f"cat_col_{j}", f"cat_code_{j}", f"cat_hit_{j}"
        inits.append(onnx.numpy_helper.from_array(np.array([j], dtype=np.int64), idx))
        inits.append(onnx.numpy_helper.from_array(np.arange(len(cats), dtype=np.int64), f"cat_range_{j}"))
        nodes += [
            h.make_node("Gather", [CATEGORICAL_INPUT, idx], [col], axis=1),
            h.make_node("LabelEncoder", [col], [code], domain=ML_DOMAIN, keys_strings=list(cats),
                        values_int64s=list(range(len(cats))), default_int64=-1),
            h.make_node("Equal", [code, f"cat_range_{j}"], [hit]),
            h.make_node("Cast", [hit], [f"cat_onehot_{j}"], to=onnx.TensorProto.FLOAT),
        ]
        blocks.append(f"cat_onehot_{j}")
    nodes.append(h.make_node("Concat", blocks, [_ONEHOT], axis=1))
    old_inputs = [i for i in graph.input if i.name != _ONEHOT]
    del graph.input[:]
    graph.input.extend(old_inputs + [h.make_tensor_value_info(CATEGORICAL_INPUT, onnx.TensorProto.STRING, [BATCH_DIM, len(categories)])])
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    graph.initializer.extend(inits)
    if not any(o.domain == ML_DOMAIN for o in model.opset_import):
        model.opset_import.append(h.make_opsetid(ML_DOMAIN, ML_OPSET))
    return model


@contextlib.contextmanager
def _staged_export(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to export into, checked and published as ``path`` when the block succeeds.

    The exporter's prints, warnings and the torch.onnx logger's notes (e.g. "torchvision is not installed") are captured
    and shown only in an error; any failure but an :class:`ExportError` becomes one with the tail of that log. The
    temporary file, and the tensors the exporter writes beside it when asked for external data, never stay.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    captured = io.StringIO()
    onnx_logger = logging.getLogger("torch.onnx")
    old_level = onnx_logger.level
    try:
        onnx_logger.setLevel(logging.ERROR)
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield tmp
        onnx.checker.check_model(str(tmp))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp makes it owner-only; a model file is not a secret
        os.replace(tmp, path)
    except ExportError:
        raise
    except Exception as exc:
        log = " | ".join(line for line in captured.getvalue().splitlines() if line.strip())[-400:]
        raise ExportError(f"ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                          f"exporter log: {log or 'empty'}") from exc
    finally:
        onnx_logger.setLevel(old_level)
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.data").unlink(missing_ok=True)


def export_onnx(serving_model: nn.Module, path: str | Path, n_features: int, opset: int = DEFAULT_OPSET,
                feature_names: Sequence[str] = (), categories: Sequence[Sequence[str]] = (),
                categorical_names: Sequence[str] = ()) -> Signature:
    """Export ``serving_model`` (raw rows -> ``(logit, probability)`` or ``(prediction,)``) to one ONNX file.

    The batch dimension is dynamic (named ``batch``); the numeric feature
    dimension is ``n_features``. With ``categories`` (one list per categorical
    column, as learned by the preprocessor), the graph also takes the raw text
    of those columns and one-hot encodes it itself
    (:func:`add_categorical_encoder`). Returns the signature read back from
    the written file and raises :class:`ExportError` if it does not match that
    contract. The exporter's progress prints are captured, and shown only if
    it fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    serving_model.eval()
    task = getattr(serving_model, "task", "classification")
    outputs = output_names(task)
    n_onehot = sum(len(c) for c in categories)
    # batch 2, not 1: torch.export specializes a size-1 dimension to a constant
    example: tuple[torch.Tensor, ...] = (torch.zeros(2, n_features, dtype=torch.float32),)
    names = [INPUT_NAME]
    batch = torch.export.Dim(BATCH_DIM)
    dynamic: tuple[dict[int, Any], ...] = ({0: batch},)
    if categories:
        example += (torch.zeros(2, n_onehot, dtype=torch.float32),)
        names = [NUMERIC_INPUT, _ONEHOT]
        dynamic = ({0: batch}, {0: batch})
    with _staged_export(path) as tmp:
        torch.onnx.export(
            serving_model,
            example,
            str(tmp),
            input_names=names,
            output_names=list(outputs),
            opset_version=opset,
            # explicit, though dynamo is the 2.13 default: and with it we
            # choose one self-contained file over model.onnx + model.onnx.data
            dynamo=True,
            external_data=False,
            dynamic_shapes=dynamic,
            verbose=False,
        )
        _strip_debug_metadata(tmp, categories)
        columns = {NUMERIC_INPUT if categories else INPUT_NAME: list(feature_names)} if feature_names else {}
        if categories:
            columns[CATEGORICAL_INPUT] = list(categorical_names)
        signature = read_signature(tmp, [*feature_names, *categorical_names], columns)
        problems = expected_signature_problems(signature, n_features, len(categories), task)
        if problems:
            raise ExportError(f"exported graph does not match the serving contract: {'; '.join(problems)}; check the model's forward() returns {outputs}")
    return signature


SEQUENCE_DIM = "sequence"
_PLACEHOLDER = "lepton_output_{}"


def _rename_values(graph: onnx.GraphProto, mapping: dict[str, str]) -> None:
    """Rename values of the main graph everywhere they appear (node inputs and outputs, graph outputs, value_info)."""
    for node in graph.node:
        node.input[:] = [mapping.get(n, n) for n in node.input]
        node.output[:] = [mapping.get(n, n) for n in node.output]
    for value in (*graph.output, *graph.value_info):
        value.name = mapping.get(value.name, value.name)


def _name_outputs(path: Path, names: Sequence[str]) -> None:
    """Give the graph's outputs (exported under placeholder names) their public names.

    torch.export names values after the ops that make them, so a BERT graph
    already holds a value called ``embedding`` (its ``aten.embedding``); naming
    an output that at export time writes a graph that is not in SSA form.
    Internal values that clash are renamed first.
    """
    model = onnx.load(str(path))
    graph = model.graph
    taken = {n for node in graph.node for n in (*node.input, *node.output)} | {v.name for v in graph.input}
    clash = {}
    for name in names:
        if name in taken:
            fresh, i = f"{name}_internal", 0
            while fresh in taken:
                i += 1
                fresh = f"{name}_internal_{i}"
            clash[name] = fresh
            taken.add(fresh)
    _rename_values(graph, clash)
    _rename_values(graph, {_PLACEHOLDER.format(i): name for i, name in enumerate(names)})
    onnx.save(model, str(path))


def export_text_onnx(serving_model: nn.Module, path: str | Path, *, input_names: Sequence[str], output_names: Sequence[str],
                     max_length: int, opset: int = DEFAULT_OPSET) -> Signature:
    """Export a text model (token ids in) to one self-contained ONNX file with dynamic batch and sequence axes.

    Every input is int64 ``[batch, sequence]`` (``input_ids``,
    ``attention_mask`` and, when the model reads it, ``token_type_ids``);
    the sequence axis takes 1 to ``max_length`` tokens. Returns the
    signature read back from the written file (its ``inputs`` are the
    graph's token inputs; the caller puts the client-facing string input in
    front of them) and raises :class:`ExportError` if the file does not take
    and return exactly the names asked for.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    serving_model.eval()
    seq = max(2, min(8, max_length))  # not 1: torch.export specializes a size-1 dimension to a constant
    example = tuple(torch.ones(2, seq, dtype=torch.long) if name != "token_type_ids" else torch.zeros(2, seq, dtype=torch.long)
                    for name in input_names)
    batch, sequence = torch.export.Dim(BATCH_DIM), torch.export.Dim(SEQUENCE_DIM, max=max_length)
    dynamic = tuple({0: batch, 1: sequence} for _ in input_names)
    with _staged_export(path) as tmp:
        placeholders = [_PLACEHOLDER.format(i) for i in range(len(output_names))]
        torch.onnx.export(serving_model, example, str(tmp), input_names=list(input_names), output_names=placeholders,
                          opset_version=opset, dynamo=True, external_data=False, dynamic_shapes=dynamic, verbose=False)
        _strip_debug_metadata(tmp)
        _name_outputs(tmp, output_names)
        signature = read_signature(tmp)
        want_in = [(n, "int64", [BATCH_DIM, SEQUENCE_DIM]) for n in input_names]
        have_in = [(t.name, t.dtype, list(t.shape)) for t in signature.inputs]
        have_out = [t.name for t in signature.outputs]
        if have_in != want_in or have_out != list(output_names):
            raise ExportError(f"exported text graph takes {have_in} and returns {have_out}, expected {want_in} and "
                              f"{list(output_names)}; the model's forward must take token ids with dynamic batch and sequence")
    return signature
