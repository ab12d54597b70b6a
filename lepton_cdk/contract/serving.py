"""Triton Inference Server: the pinned image and the model configuration generated
from a manifest's signature. Standard library only, so the node boot script
(``lepton_cdk.core.startup_script``) and ``lepton export triton``
(``lepton_cdk.serve``) write the same ``config.pbtxt``.

Triton and ``lepton serve`` speak the same Open Inference Protocol (KServe v2),
so a client cannot tell which one answers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .manifest import Manifest, TensorSpec

# Pinned: a moving tag would let two nodes of one group serve with different runtimes.
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:25.01-py3"
TRITON_HTTP_PORT = 8000
# Open Inference Protocol readiness: what load balancers and auto-healing check on the nodes.
TRITON_READY_PATH = "/v2/health/ready"
# Triton needs an integer version folder; the manifest's version (a hash) is kept in the config parameters.
TRITON_MODEL_VERSION = "1"
# Extra latency a request may wait so that Triton can batch it with others.
DEFAULT_QUEUE_DELAY_US = 100
COLUMNS_PARAMETER = "lepton.columns."


@dataclass(frozen=True)
class TensorType:
    """How one manifest dtype is spelled by numpy, the Open Inference Protocol, Triton and onnxruntime."""

    numpy: str
    oip: str
    triton: str
    onnx: str  # what onnxruntime's NodeArg.type says


# Keys: the manifest's dtype names (numpy names; ``object`` is how the onnx
# package names tensor(string), ``string`` the spelling the manifest convention uses).
TENSOR_TYPES: dict[str, TensorType] = {
    "float32": TensorType("float32", "FP32", "TYPE_FP32", "tensor(float)"),
    "float64": TensorType("float64", "FP64", "TYPE_FP64", "tensor(double)"),
    "float16": TensorType("float16", "FP16", "TYPE_FP16", "tensor(float16)"),
    "int64": TensorType("int64", "INT64", "TYPE_INT64", "tensor(int64)"),
    "int32": TensorType("int32", "INT32", "TYPE_INT32", "tensor(int32)"),
    "int16": TensorType("int16", "INT16", "TYPE_INT16", "tensor(int16)"),
    "int8": TensorType("int8", "INT8", "TYPE_INT8", "tensor(int8)"),
    "uint8": TensorType("uint8", "UINT8", "TYPE_UINT8", "tensor(uint8)"),
    "bool": TensorType("bool", "BOOL", "TYPE_BOOL", "tensor(bool)"),
    "string": TensorType("object", "BYTES", "TYPE_STRING", "tensor(string)"),
    "object": TensorType("object", "BYTES", "TYPE_STRING", "tensor(string)"),
}


def _pb_string(value: str) -> str:
    """A protobuf text-format string literal (JSON's escaping of quotes and backslashes; UTF-8 kept as is)."""
    return json.dumps(value, ensure_ascii=False)


class UnsupportedSignatureError(ValueError):
    """The manifest's signature uses a dtype or shape the serving stack cannot express."""


def tensor_type(spec: TensorSpec) -> TensorType:
    """The numpy / OIP / Triton spelling of ``spec``'s dtype; a clear error for an unknown one."""
    try:
        return TENSOR_TYPES[spec.dtype]
    except KeyError:
        raise UnsupportedSignatureError(
            f"tensor {spec.name!r} has dtype {spec.dtype!r}, which serving does not support; "
            f"export the model with one of {', '.join(sorted(TENSOR_TYPES))}"
        ) from None


def is_batched(manifest: Manifest) -> bool:
    """True when every input and output has a dynamic (named) first dimension: the batch."""
    tensors = [*manifest.signature.inputs, *manifest.signature.outputs]
    return bool(tensors) and all(t.shape and isinstance(t.shape[0], str) for t in tensors)


def tensor_columns(manifest: Manifest) -> dict[str, list[str]]:
    """Raw CSV columns along each input's last axis.

    An input's own ``columns`` list wins; a single input without one takes the
    signature's ``feature_names``. Inputs with neither are left out.
    """
    inputs = manifest.signature.inputs
    found: dict[str, list[str]] = {}
    for spec in inputs:
        # ``columns`` is an optional, newer TensorSpec field: older manifests do not carry it
        columns = getattr(spec, "columns", None)
        if columns:
            found[spec.name] = list(columns)
    if not found and len(inputs) == 1 and manifest.signature.feature_names:
        found[inputs[0].name] = list(manifest.signature.feature_names)
    return found


def _dims(spec: TensorSpec, batched: bool) -> tuple[list[int], bool]:
    """Triton dims without the batch dimension (-1 for a dynamic one); True when a reshape to [] is needed."""
    shape = list(spec.shape[1:] if batched else spec.shape)
    dims = [d if isinstance(d, int) and d >= 0 else -1 for d in shape]
    if batched and not dims:
        # Triton cannot declare a per-row scalar; declare [1] and reshape to []
        return [1], True
    return dims, False


def _tensor_block(spec: TensorSpec, batched: bool) -> str:
    dims, reshape = _dims(spec, batched)
    lines = [
        "  {",
        f"    name: {_pb_string(spec.name)}",
        f"    data_type: {tensor_type(spec).triton}",
        f"    dims: [ {', '.join(str(d) for d in dims)} ]",
    ]
    if reshape:
        lines.append("    reshape: { shape: [ ] }")
    lines.append("  }")
    return "\n".join(lines)


def triton_model_config(manifest: Manifest, *, queue_delay_us: int = DEFAULT_QUEUE_DELAY_US) -> str:
    """The ``config.pbtxt`` (protobuf text format) serving ``manifest``'s model with Triton's ONNX Runtime backend.

    Dynamic batching is on when the signature has a batch dimension, capped at
    the manifest's ``serving.max_batch_size``. The CSV columns of each input and
    the manifest's model version travel as string parameters, so a client
    talking to Triton can map raw rows to tensors the way ``lepton serve`` does.
    """
    batched = is_batched(manifest)
    model = manifest.model_artifact
    parameters = {"lepton.model_version": manifest.model_version, "lepton.sha256": model.sha256}
    for name, columns in tensor_columns(manifest).items():
        parameters[COLUMNS_PARAMETER + name] = json.dumps(columns)
    parts = [
        f"# Generated by lepton-cdk from manifest {manifest.model_name}:{manifest.model_version}; regenerate, do not edit.",
        f"name: {_pb_string(manifest.model_name)}",
        'backend: "onnxruntime"',
        f"max_batch_size: {manifest.serving.max_batch_size if batched else 0}",
    ]
    if batched:
        parts.append(f"dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_us}\n}}")
    parts.append("input [\n" + ",\n".join(_tensor_block(s, batched) for s in manifest.signature.inputs) + "\n]")
    parts.append("output [\n" + ",\n".join(_tensor_block(s, batched) for s in manifest.signature.outputs) + "\n]")
    parts.append("instance_group [\n  {\n    count: 1\n    kind: KIND_AUTO\n  }\n]")
    parts.append(f"version_policy: {{ specific: {{ versions: [ {TRITON_MODEL_VERSION} ] }} }}")
    for key, value in parameters.items():
        parts.append(f"parameters {{\n  key: {_pb_string(key)}\n  value: {{ string_value: {_pb_string(value)} }}\n}}")
    return "\n".join(parts) + "\n"


__all__ = [
    "COLUMNS_PARAMETER", "DEFAULT_QUEUE_DELAY_US", "TENSOR_TYPES", "TRITON_HTTP_PORT", "TRITON_IMAGE", "TRITON_MODEL_VERSION",
    "TensorType", "UnsupportedSignatureError", "is_batched", "tensor_columns", "tensor_type", "triton_model_config",
]
