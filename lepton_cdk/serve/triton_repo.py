"""``lepton export triton``: a Triton model repository from a manifest.

Layout: ``OUT/<model name>/config.pbtxt`` and ``OUT/<model name>/1/model.onnx``
(Triton needs an integer version folder; the manifest's version is kept as a
config parameter). The folder is built beside its final place and renamed in,
so Triton never sees half of it.

A text model (``signature.text``) becomes an ensemble, so Triton takes the
very request ``lepton serve`` takes (raw strings in one ``BYTES`` tensor):

- ``OUT/<model>/``: the ensemble clients call (``platform: "ensemble"``, an
  empty ``1/``), the text input and the model's outputs;
- ``OUT/<model>-tokenizer/``: a Python-backend step (``1/model.py`` from
  :mod:`lepton_cdk.serve.triton_tokenizer`, ``1/tokenizer.json`` and
  ``1/lepton_vendor/``, a copy of ``lepton_cdk.serve.text`` with the
  stdlib-only contract it imports), strings to token ids;
- ``OUT/<model>-onnx/``: the ONNX model on Triton's ONNX Runtime backend,
  configured exactly as a tabular model is, from ``signature.text.graph_inputs``.

The ensemble and the tokenizer step declare whole shapes (``max_batch_size:
0``): under Triton's batching a per-request string list ``[batch]`` can only
be declared as ``[batch, 1]``, which would make Triton's request differ from
``lepton serve``'s. The ONNX step keeps dynamic batching, capped at the
manifest's ``max_batch_size``, which also bounds the texts per request.
Each folder is staged and renamed in on its own; the steps go first and the
ensemble last, so Triton never sees an ensemble whose steps are half written.
"""

from __future__ import annotations

from lepton_cdk.extras import require_extra

require_extra("lepton_cdk.serve", "serve")

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import lepton_cdk
from lepton_cdk.contract import Manifest, digest_bytes, read_artifact_bytes, read_manifest
from lepton_cdk.contract.serving import (
    COLUMNS_PARAMETER,
    TRITON_IMAGE,
    TRITON_MODEL_VERSION,
    is_batched,
    tensor_type,
    triton_model_config,
)

from . import triton_tokenizer
from .errors import ExportError
from .tensors import MAX_TEXT_CHARS, TEXT_PARAMETER

TOKENIZER_STEP_SUFFIX = "-tokenizer"
ONNX_STEP_SUFFIX = "-onnx"
# What the tokenizer step imports, copied from this installation (paths relative to the lepton_cdk package);
# the contract is standard library only, so the step needs nothing of lepton-cdk's dependencies
_VENDORED = ("extras.py", "contract", "serve/text.py")
_VENDORED_INIT = '"""A copy of the parts of lepton-cdk that {what}; written by `lepton export triton`, do not edit."""\n'


@dataclass(frozen=True)
class TritonExport:
    """What ``export_triton_repository`` wrote."""

    repository: Path
    model_dir: Path
    model_file: Path
    config_file: Path
    sha256: str
    image: str = TRITON_IMAGE
    steps: tuple[Path, ...] = ()  # a text model's ensemble steps (tokenizer, onnx); empty for a tabular model

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly summary (``lepton export triton --json``)."""
        doc: dict[str, object] = {"repository": str(self.repository), "model_dir": str(self.model_dir), "model_file": str(self.model_file),
                                  "config_file": str(self.config_file), "sha256": self.sha256, "image": self.image}
        if self.steps:
            doc["steps"] = [str(p) for p in self.steps]
        return doc


def export_triton_repository(manifest_path: str | Path, out: str | Path, *, force: bool = False) -> TritonExport:
    """Write ``out/<model>/`` for Triton's ONNX Runtime backend from the verified manifest at ``manifest_path``.

    A text model gets the ensemble described in this module's docstring: ``out/<model>/`` (the ensemble),
    ``out/<model>-tokenizer/`` and ``out/<model>-onnx/``.
    """
    from .runtime import verified_model_bytes

    manifest = read_manifest(manifest_path, verify=False)
    data = verified_model_bytes(manifest)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file; pass a folder for the Triton model repository")
    if manifest.signature.text is not None:
        return _export_text_model(manifest, data, out, force=force)
    config = triton_model_config(manifest)
    target = out / manifest.model_name
    _check_free([target], force)
    out.mkdir(parents=True, exist_ok=True)
    model_file = _publish(out, target, lambda staging: _write_onnx_model(staging, data, config, manifest.model_artifact.sha256))
    return TritonExport(repository=out, model_dir=target, model_file=model_file, config_file=target / "config.pbtxt",
                        sha256=manifest.model_artifact.sha256)


def _check_free(targets: list[Path], force: bool) -> None:
    for target in targets:
        if target.exists() and not force:
            raise ExportError(f"{target} already exists; pass --force to replace it, or choose another OUT folder")


def _write_onnx_model(staging: Path, data: bytes, config: str, sha256: str) -> Path:
    (staging / TRITON_MODEL_VERSION).mkdir()
    (staging / TRITON_MODEL_VERSION / "model.onnx").write_bytes(data)
    (staging / "config.pbtxt").write_text(config, encoding="utf-8")
    written = digest_bytes((staging / TRITON_MODEL_VERSION / "model.onnx").read_bytes())
    if written.sha256 != sha256:
        raise ExportError(f"the copy in {staging} does not hash to the manifest's sha256; check the disk and retry")
    return Path(TRITON_MODEL_VERSION) / "model.onnx"


def _publish(out: Path, target: Path, fill: Callable[[Path], Path]) -> Path:
    """Build ``target`` in a staging folder beside it with ``fill`` and rename it in; returns ``target / fill's path``."""
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=out))
    try:
        written = fill(staging)
        os.chmod(staging, 0o755)  # mkdtemp makes 0700; Triton in a container runs as another user
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=out))
            os.replace(target, old / "model")
            os.replace(staging, target)
            shutil.rmtree(old)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target / written


# --- text models: an ensemble of a tokenizer step and the ONNX model -------------------------------------------


def _pb(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a protobuf text-format string literal


def _tensor(name: str, triton_type: str, dims: list[int]) -> str:
    return f"  {{\n    name: {_pb(name)}\n    data_type: {triton_type}\n    dims: [ {', '.join(map(str, dims))} ]\n  }}"


def _whole_dims(shape: list[int | str]) -> list[int]:
    """Dims of a tensor declared whole (``max_batch_size: 0``): -1 for every named (dynamic) dimension."""
    return [d if isinstance(d, int) and d >= 0 else -1 for d in shape]


def _parameters(values: dict[str, str]) -> list[str]:
    return [f"parameters {{\n  key: {_pb(k)}\n  value: {{ string_value: {_pb(v)} }}\n}}" for k, v in values.items()]


def _header(manifest: Manifest, role: str) -> str:
    return (f"# Generated by lepton-cdk from manifest {manifest.model_name}:{manifest.model_version}; regenerate, do not edit.\n"
            f"# {role}")


def text_model_configs(manifest: Manifest, *, max_text_chars: int = MAX_TEXT_CHARS) -> dict[str, str]:
    """The three ``config.pbtxt`` files of a text model's Triton ensemble, by model name: the ensemble
    (the manifest's model name), ``<name>-tokenizer`` and ``<name>-onnx``.

    Raises :class:`ExportError` for a manifest without ``signature.text``.
    """
    text = manifest.signature.text
    if text is None:
        raise ExportError(f"model {manifest.model_name!r} is not a text model; its Triton repository is one model, not an ensemble")
    name = manifest.model_name
    tokenizer_step, onnx_step = name + TOKENIZER_STEP_SUFFIX, name + ONNX_STEP_SUFFIX
    graph_inputs = text.graph_inputs
    text_spec = next(t for t in manifest.signature.inputs if t.name == text.input)
    columns = text_spec.columns or [text.input]
    tokenizer_sha256 = manifest.artifact(text.tokenizer).sha256
    limits = {"lepton.max_batch_size": str(manifest.serving.max_batch_size), TEXT_PARAMETER + "max_chars": str(max_text_chars)}
    described = {TEXT_PARAMETER + "input": text.input, TEXT_PARAMETER + "max_length": str(text.max_length),
                 TEXT_PARAMETER + "truncation": text.truncation, TEXT_PARAMETER + "padding": text.padding,
                 TEXT_PARAMETER + "tokenizer_sha256": tokenizer_sha256}
    version_policy = f"version_policy: {{ specific: {{ versions: [ {TRITON_MODEL_VERSION} ] }} }}"

    text_input = _tensor(text.input, tensor_type(text_spec).triton, _whole_dims(text_spec.shape))
    token_tensors = [_tensor(t.name, tensor_type(t).triton, _whole_dims(t.shape)) for t in graph_inputs]
    tokenizer = "\n".join([
        _header(manifest, "Ensemble step 1: raw strings -> token ids, with the manifest's tokenizer (Python backend)."),
        f"name: {_pb(tokenizer_step)}", 'backend: "python"', "max_batch_size: 0",
        "input [\n" + text_input + "\n]", "output [\n" + ",\n".join(token_tensors) + "\n]",
        "instance_group [\n  {\n    count: 1\n    kind: KIND_CPU\n  }\n]", version_policy,
        *_parameters({triton_tokenizer.PARAMETER_TEXT: json.dumps(asdict(text), sort_keys=True),
                      triton_tokenizer.PARAMETER_TOKENIZER_SHA256: tokenizer_sha256, **limits}),
    ]) + "\n"

    # the ONNX step is configured by the same generator as a tabular model, from the graph's own inputs
    graph_only = replace(manifest, model_name=onnx_step,
                         signature=replace(manifest.signature, inputs=list(graph_inputs), text=None, feature_names=[]))
    onnx = triton_model_config(graph_only).replace(f"from manifest {onnx_step}:", f"from manifest {name}:", 1)

    batched = is_batched(graph_only)
    outputs = []
    for spec in manifest.signature.outputs:
        dims = _whole_dims(spec.shape)
        if batched and len(dims) == 1:
            dims = [-1, 1]  # the ONNX step declares a per-row scalar as [1] (reshaped), so Triton returns [batch, 1]
        outputs.append(_tensor(spec.name, tensor_type(spec).triton, dims))
    token_maps = "".join(f"\n        output_map {{ key: {_pb(t.name)} value: {_pb(t.name)} }}" for t in graph_inputs)
    onnx_inputs = "".join(f"\n        input_map {{ key: {_pb(t.name)} value: {_pb(t.name)} }}" for t in graph_inputs)
    onnx_outputs = "".join(f"\n        output_map {{ key: {_pb(o.name)} value: {_pb(o.name)} }}" for o in manifest.signature.outputs)
    ensemble = "\n".join([
        _header(manifest, f"A text model: send raw strings in {text.input!r}; {tokenizer_step} tokenizes them, {onnx_step} runs the model."),
        f"name: {_pb(name)}", 'platform: "ensemble"', "max_batch_size: 0",
        "input [\n" + text_input + "\n]", "output [\n" + ",\n".join(outputs) + "\n]",
        "ensemble_scheduling {\n  step [\n"
        f"    {{\n      model_name: {_pb(tokenizer_step)}\n      model_version: -1\n"
        f"      input_map {{ key: {_pb(text.input)} value: {_pb(text.input)} }}{token_maps}\n    }},\n"
        f"    {{\n      model_name: {_pb(onnx_step)}\n      model_version: -1{onnx_inputs}{onnx_outputs}\n    }}\n"
        "  ]\n}",
        *_parameters({"lepton.model_version": manifest.model_version, "lepton.sha256": manifest.model_artifact.sha256,
                      COLUMNS_PARAMETER + text.input: json.dumps(list(columns)), **described, **limits}),
    ]) + "\n"
    return {name: ensemble, tokenizer_step: tokenizer, onnx_step: onnx}


def _write_vendored_text(folder: Path) -> None:
    """Copy ``lepton_cdk.serve.text`` and what it imports into ``folder/lepton_cdk``, from this installation."""
    source = Path(lepton_cdk.__file__).resolve().parent
    package = folder / "lepton_cdk"
    (package / "serve").mkdir(parents=True)
    (package / "__init__.py").write_text(_VENDORED_INIT.format(what="a text model's Triton tokenizer step imports"), encoding="utf-8")
    (package / "serve" / "__init__.py").write_text(_VENDORED_INIT.format(what="tokenize text (serve/text.py)"), encoding="utf-8")
    for rel in _VENDORED:
        if (source / rel).is_dir():
            shutil.copytree(source / rel, package / rel, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copyfile(source / rel, package / rel)


def _export_text_model(manifest: Manifest, data: bytes, out: Path, *, force: bool) -> TritonExport:
    from .runtime import load_text_encoder, verify_other_artifacts

    verify_other_artifacts(manifest)
    load_text_encoder(manifest)  # a tokenizer that does not load, or with no such graph inputs, fails here, not in Triton
    tokenizer_bytes = read_artifact_bytes(manifest, manifest.signature.text.tokenizer)
    configs = text_model_configs(manifest)
    name = manifest.model_name
    ensemble_dir, tokenizer_dir, onnx_dir = (out / n for n in (name, name + TOKENIZER_STEP_SUFFIX, name + ONNX_STEP_SUFFIX))
    _check_free([ensemble_dir, tokenizer_dir, onnx_dir], force)
    out.mkdir(parents=True, exist_ok=True)

    def tokenizer_step(staging: Path) -> Path:
        version = staging / TRITON_MODEL_VERSION
        version.mkdir()
        shutil.copyfile(triton_tokenizer.__file__, version / "model.py")
        (version / triton_tokenizer.TOKENIZER_FILE).write_bytes(tokenizer_bytes)
        _write_vendored_text(version / triton_tokenizer.VENDOR_DIR)
        (staging / "config.pbtxt").write_text(configs[tokenizer_dir.name], encoding="utf-8")
        return Path(TRITON_MODEL_VERSION) / triton_tokenizer.TOKENIZER_FILE

    def ensemble(staging: Path) -> Path:
        (staging / TRITON_MODEL_VERSION).mkdir()  # Triton wants a version folder for an ensemble too, empty
        (staging / "config.pbtxt").write_text(configs[name], encoding="utf-8")
        return Path("config.pbtxt")

    # the steps first, the ensemble last: Triton never loads an ensemble whose steps are half written
    model_file = _publish(out, onnx_dir, lambda staging: _write_onnx_model(staging, data, configs[onnx_dir.name], manifest.model_artifact.sha256))
    _publish(out, tokenizer_dir, tokenizer_step)
    config_file = _publish(out, ensemble_dir, ensemble)
    return TritonExport(repository=out, model_dir=ensemble_dir, model_file=model_file, config_file=config_file,
                        sha256=manifest.model_artifact.sha256, steps=(tokenizer_dir, onnx_dir))
