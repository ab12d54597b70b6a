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
from collections.abc import Sequence
from pathlib import Path

import onnx
import torch
from torch import nn

from lepton_cdk.contract import Signature, TensorSpec

INPUT_NAME = "features"
OUTPUT_NAMES = ("logit", "probability")
BATCH_DIM = "batch"
DEFAULT_OPSET = 18


class ExportError(RuntimeError):
    """The model could not be exported, or the written file is not what a server expects."""


def _dtype_name(elem_type: int) -> str:
    return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name


def _tensor_spec(value: onnx.ValueInfoProto) -> TensorSpec:
    dims: list[int | str] = [d.dim_param if d.HasField("dim_param") else int(d.dim_value) for d in value.type.tensor_type.shape.dim]
    return TensorSpec(name=value.name, dtype=_dtype_name(value.type.tensor_type.elem_type), shape=dims)


def read_signature(path: str | Path, feature_names: Sequence[str] = ()) -> Signature:
    """The I/O signature of the ONNX file at ``path``: names, dtypes, dims (a string is dynamic) and opset."""
    model = onnx.load(str(path), load_external_data=False)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise ExportError(f"{path} declares no default-domain opset; re-export the model")
    initializers = {i.name for i in model.graph.initializer}
    return Signature(
        opset=int(opset),
        # older exporters list initializers among the inputs; a server feeds only the rest
        inputs=[_tensor_spec(v) for v in model.graph.input if v.name not in initializers],
        outputs=[_tensor_spec(v) for v in model.graph.output],
        exporter=f"{model.producer_name} {model.producer_version}".strip(),
        feature_names=list(feature_names),
    )


def expected_signature_problems(sig: Signature, n_features: int) -> list[str]:
    """How ``sig`` differs from the serving contract: one float32 input
    ``features [batch, n_features]`` and float32 outputs ``logit`` and
    ``probability``, each ``[batch, 1]``. Empty when it matches."""
    want_in = [(INPUT_NAME, "float32", [BATCH_DIM, n_features])]
    want_out = [(name, "float32", [BATCH_DIM, 1]) for name in OUTPUT_NAMES]
    problems = []
    for kind, got, want in (("inputs", sig.inputs, want_in), ("outputs", sig.outputs, want_out)):
        have = [(t.name, t.dtype, list(t.shape)) for t in got]
        if have != want:
            problems.append(f"{kind} are {have}, expected {want}")
    return problems


def _strip_debug_metadata(path: Path) -> None:
    """Drop the exporter's per-node debug metadata (``pkg.torch.onnx.stack_trace`` and friends).

    It records the source file paths of the machine that exported, so the same
    data and seed gave a different file (and model version) in every checkout,
    and a shipped model told the world where its builder kept their code.
    Serving never reads it.
    """
    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
    onnx.save(model, str(path))


def export_onnx(serving_model: nn.Module, path: str | Path, n_features: int, opset: int = DEFAULT_OPSET,
                feature_names: Sequence[str] = ()) -> Signature:
    """Export ``serving_model`` (raw features -> ``(logit, probability)``) to one ONNX file.

    The batch dimension is dynamic (named ``batch``); the feature dimension is
    ``n_features``. Returns the signature read back from the written file and
    raises :class:`ExportError` if it does not match that contract. The
    exporter's progress prints are captured, and shown only if it fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    serving_model.eval()
    # batch 2, not 1: torch.export specializes a size-1 dimension to a constant
    example = torch.zeros(2, n_features, dtype=torch.float32)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".onnx", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    captured = io.StringIO()
    onnx_logger = logging.getLogger("torch.onnx")
    old_level = onnx_logger.level
    try:
        onnx_logger.setLevel(logging.ERROR)  # e.g. "torchvision is not installed" registry notes
        with contextlib.redirect_stdout(captured), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                serving_model,
                (example,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                opset_version=opset,
                # explicit, though dynamo is the 2.13 default: and with it we
                # choose one self-contained file over model.onnx + model.onnx.data
                dynamo=True,
                external_data=False,
                dynamic_shapes=({0: torch.export.Dim(BATCH_DIM)},),
                verbose=False,
            )
        _strip_debug_metadata(tmp)
        signature = read_signature(tmp, feature_names)
        problems = expected_signature_problems(signature, n_features)
        if problems:
            raise ExportError(f"exported graph does not match the serving contract: {'; '.join(problems)}; check the model's forward() returns (logit, probability)")
        onnx.checker.check_model(str(tmp))
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp makes it owner-only; a model file is not a secret
        os.replace(tmp, path)
    except ExportError:
        raise
    except Exception as exc:
        log = " | ".join(line for line in captured.getvalue().splitlines() if line.strip())[-400:]
        raise ExportError(f"ONNX export failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); exporter log: {log or 'empty'}") from exc
    finally:
        onnx_logger.setLevel(old_level)
        tmp.unlink(missing_ok=True)
        # the exporter writes tensors beside the target when asked for external data; never leave one
        Path(f"{tmp}.data").unlink(missing_ok=True)
    return signature
