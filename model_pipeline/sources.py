"""Where a run's source model comes from: ``lepton pipeline run --source-model SPEC``.

==================  ===============================================================  ===================
SPEC                what it is                                                       recipe
==================  ===============================================================  ===================
(none)              a source model is pretrained on ``--source-data``                tabular
a folder            a Hugging Face transformers folder: ``config.json``,             huggingface
                    ``model.safetensors`` (or its sharded index) and the tokenizer
                    (``tokenizer.json``, or files transformers converts to one)
``*.safetensors``,  weights of YOUR network: ``--model-factory package.module:fn``   tabular (factory)
``*.pt``/``*.pth``  names a function that builds it (no arguments, returns an
                    ``nn.Module``); ``.pt`` is read with ``weights_only=True``
``*.onnx``          an ONNX file, verified and served as it is (no fine-tuning)      onnx
==================  ===============================================================  ===================

:func:`resolve_source` checks the spec's shape on disk and imports nothing
heavy (``lepton pipeline run --dry-run`` calls it); loading happens in the
recipe's ``load_source`` stage. Every problem is one
:class:`SourceModelError` line naming the problem and the fix.

Weights are read only in forms that cannot run code: ``.safetensors``, or a
``.pt`` state_dict through ``torch.load(weights_only=True)``. A Hugging
Face folder must hold safetensors weights (a ``pytorch_model.bin`` is a
pickle) and may not ask for ``trust_remote_code``.

A ``--model-factory`` network reads a table's numeric columns: ``forward``
takes float32 ``[batch, n_columns]`` (the raw values; missing values are
imputed with the target training rows' median and values are clipped to
their range) and returns one logit per row (``--task classification``) or
one prediction (``--task regression``), ``[batch, 1]``. Its columns are its
``feature_names`` attribute when it has one, else the table's numeric
columns in file order. For strategy ``head`` or ``adapter`` it must expose
its last layer as ``.head``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import PipelineConfig

KINDS = ("tabular", "huggingface", "factory", "onnx")
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth")
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
# what transformers can turn into a tokenizer.json (fast tokenizer) when the folder has none
HF_TOKENIZER_SOURCES = ("vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")


class SourceModelError(ValueError):
    """The source model cannot be used as given; one line names the problem and the fix."""


@dataclass(frozen=True)
class SourceSpec:
    """A checked ``--source-model``: its kind (:data:`KINDS`), where it lies and, for a network of
    your own, the factory that builds it."""

    kind: str
    path: Path | None = None
    factory: str | None = None


def _hf_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a usable Hugging Face folder, or None."""
    if not (folder / "config.json").is_file():
        return (f"{folder} is a folder without config.json, so not a Hugging Face model folder; save the model with "
                "model.save_pretrained(folder) or pass a weights file with --model-factory")
    if not any((folder / w).is_file() for w in HF_WEIGHTS):
        pickled = [n for n in ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
                   if (folder / n).exists()]
        if pickled:
            return (f"{folder} holds {pickled[0]} but no model.safetensors; lepton-cdk reads weights only as safetensors "
                    "(a .bin is a pickle that can run code): re-save it with model.save_pretrained(folder, safe_serialization=True)")
        return f"{folder} has no weights (no model.safetensors); save the model into it with model.save_pretrained(folder)"
    if not (folder / "tokenizer.json").is_file() and not any((folder / n).is_file() for n in HF_TOKENIZER_SOURCES):
        return f"{folder} has no tokenizer (no tokenizer.json); save it beside the model with tokenizer.save_pretrained(folder)"
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return f"{folder / 'config.json'} cannot be read as JSON ({exc}); re-save the model with model.save_pretrained(folder)"
    if not isinstance(config, dict) or "model_type" not in config:
        return f"{folder / 'config.json'} has no model_type; re-save the model with model.save_pretrained(folder)"
    if "auto_map" in config:
        return (f"{folder} needs its own Python code (config.json has auto_map); lepton-cdk never runs a model folder's code "
                "(trust_remote_code): use a model of an architecture transformers ships, or --model-factory with your own code")
    return None


def resolve_source(config: PipelineConfig, *, fine_tune_flag: bool = False) -> SourceSpec:
    """The kind of source ``config`` names, checked on disk (cheaply: nothing is loaded or imported).

    ``fine_tune_flag``: the user passed ``--fine-tune`` (an error for an ONNX
    source, which is served as it is). Raises :class:`SourceModelError`.
    """
    if config.source_model is None:
        if config.model_factory is not None:
            raise SourceModelError("--model-factory needs the weights it loads: pass them with --source-model FILE (.safetensors or .pt)")
        return SourceSpec("tabular")
    text = str(config.source_model)
    # settings of the table networks this run would not use: said, not silently ignored
    if config.quantize and not text.lower().endswith(WEIGHT_SUFFIXES):
        raise SourceModelError("export.quantize (int8) applies to table models; a text or ONNX source is shipped in float32: "
                               "drop export.quantize")
    if "://" in text:
        raise SourceModelError(f"--source-model {text} is a cloud URI; with --remote it becomes the job's model channel, "
                               "otherwise download it first and pass the local folder or file")
    path = Path(config.source_model).expanduser()
    try:
        exists, is_dir, is_file = path.exists(), path.is_dir(), path.is_file()
    except OSError as exc:
        raise SourceModelError(f"--source-model {path} cannot be read ({exc.strerror}); check the path") from None
    if not exists:
        raise SourceModelError(f"--source-model {path} does not exist; pass a Hugging Face model folder, a weights file "
                               "with --model-factory, or an .onnx file")
    if is_dir:
        if config.model_factory is not None:
            raise SourceModelError(f"--model-factory loads one weights file, but --source-model {path} is a folder; "
                                   "pass the .safetensors or .pt file, or drop --model-factory for a Hugging Face folder")
        problem = _hf_folder_problem(path)
        if problem:
            raise SourceModelError(problem)
        if config.model != "mlp":
            raise SourceModelError(f"model.kind={config.model!r} chooses the table network to pretrain; a Hugging Face folder "
                                   "brings its own architecture: leave model.kind out")
        if config.target_csv is None:
            raise SourceModelError("fine-tuning a Hugging Face model needs target data: pass --target-data TABLE with a "
                                   f"{config.text_column!r} text column and the --label column")
        return SourceSpec("huggingface", path.resolve())
    if not is_file:
        raise SourceModelError(f"--source-model {path} is not a regular file or folder; pass a model folder or file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        if config.model_factory is not None:
            raise SourceModelError("--model-factory builds a PyTorch network for weights, but --source-model is an ONNX file; "
                                   "drop --model-factory (an ONNX file is served as it is)")
        if fine_tune_flag or config.strategy != "full":
            raise SourceModelError(f"--source-model {path.name} is an ONNX file, which is served as it is and cannot be fine-tuned; "
                                   "drop --fine-tune, or pass the model it was exported from (a Hugging Face folder, or "
                                   "weights with --model-factory) to fine-tune it")
        if config.source_csv is not None or config.target_csv is not None:
            raise SourceModelError(f"--source-model {path.name} is an ONNX file, served as it is without training or data; "
                                   "drop --source-data and --target-data")
        return SourceSpec("onnx", path.resolve())
    if suffix in WEIGHT_SUFFIXES:
        if config.model_factory is None:
            raise SourceModelError(f"--source-model {path.name} holds weights only; pass --model-factory package.module:function "
                                   "naming the function that builds the network they belong to")
        if config.target_csv is None:
            raise SourceModelError("fine-tuning your network needs target data: pass --target-data TABLE and --label COLUMN")
        if config.task == "embedding":
            raise SourceModelError("--task embedding needs a Hugging Face encoder; a --model-factory network reads tables "
                                   "(--task classification or regression)")
        if config.model != "mlp":
            raise SourceModelError(f"model={config.model!r} chooses the network to pretrain; with --model-factory your factory "
                                   "builds it: leave model.kind out")
        return SourceSpec("factory", path.resolve(), config.model_factory)
    raise SourceModelError(f"--source-model {path.name} is neither a Hugging Face folder, a weights file "
                           f"({', '.join(WEIGHT_SUFFIXES)}) nor an .onnx file; pass one of those")


# -- a network of your own -----------------------------------------------------------------------------------------


def _factory_function(spec: str) -> Any:
    """The callable ``package.module:function`` names, imported the way uvicorn imports an app (the working folder first)."""
    module_name, _, attr = spec.partition(":")
    # like uvicorn's --app-dir default: a module beside the user's data needs no install
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error in the user's module is theirs to fix: name it in one line
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise SourceModelError(f"--model-factory {spec}: importing {module_name} failed ({detail}); check the module name and "
                               "that its package is installed or in the working folder") from None
    finally:
        if added:
            sys.path.remove(cwd)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SourceModelError(f"--model-factory {spec}: module {module_name} has no function {attr!r}; name the function "
                               "that builds the network")
    return fn


def build_factory_network(spec: SourceSpec, *, seed: int | None = None) -> Any:
    """A fresh network from the spec's factory (random weights, from ``seed`` when given)."""
    import torch

    fn = _factory_function(spec.factory or "")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        try:
            net = fn()
        except Exception as exc:
            detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
            raise SourceModelError(f"--model-factory {spec.factory} raised {detail}; it must build the network with no arguments") from None
    if not isinstance(net, torch.nn.Module):
        raise SourceModelError(f"--model-factory {spec.factory} returned a {type(net).__name__}, not a torch.nn.Module; "
                               "return the network")
    return net


def load_weights(path: Path) -> dict[str, Any]:
    """A state_dict from ``path``: ``.safetensors``, or a ``.pt``/``.pth`` read with ``weights_only=True`` (no code runs)."""
    import torch

    if path.suffix.lower() == ".safetensors":
        from lepton_cdk.extras import require_extra

        require_extra("reading .safetensors weights", "pipeline", modules=("safetensors",))
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise SourceModelError(f"{path} is not a readable safetensors file ({' '.join(str(exc).split())[:160]}); "
                                   "save the weights with safetensors.torch.save_file(model.state_dict(), path)") from None
    import pickle

    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message goes on to explain how to load it anyway; that is the unsafe path, so it is not repeated
        raise SourceModelError(f"{path} holds pickled Python objects, not only tensors, so torch.load(weights_only=True) refuses "
                               "it (loading it could run code); save a plain state_dict: torch.save(model.state_dict(), path)") from None
    except Exception as exc:  # RuntimeError (not a zip file), EOFError ...
        detail = " ".join(str(exc).split())[:160]
        raise SourceModelError(f"{path} cannot be read as weights with torch.load(weights_only=True) ({type(exc).__name__}: "
                               f"{detail}); save a plain state_dict: torch.save(model.state_dict(), path)") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise SourceModelError(f"{path} holds a {type(state).__name__}, not a state_dict of tensors; save "
                               "torch.save(model.state_dict(), path)")
    return state


def fit_weights(net: Any, state: dict[str, Any], *, weights: Path, factory: str) -> None:
    """Load ``state`` into ``net`` strictly; one line naming what does not fit."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''}")
        if shapes:
            parts.append(f"shape {'; '.join(shapes[:2])}{' ...' if len(shapes) > 2 else ''}")
        raise SourceModelError(f"weights {weights.name} do not fit the network {factory} builds ({'; '.join(parts)}); "
                               "pass the weights saved from that network, or the factory that built them")
    net.load_state_dict(state, strict=True)


def load_factory_network(spec: SourceSpec, n_features: int, columns: tuple[str, ...]) -> tuple[Any, dict[str, Any]]:
    """The user's network with its weights, checked against the table: ``(net, origin)``.

    ``origin`` records the factory, the weights file and its sha256 (the run's
    lineage) and the parameter count.
    """
    import torch

    from lepton_cdk.contract import digest_file

    assert spec.path is not None and spec.factory is not None
    net = build_factory_network(spec)
    fit_weights(net, load_weights(spec.path), weights=spec.path, factory=spec.factory)
    declared = getattr(net, "feature_names", None)
    if declared is not None and list(declared) != list(columns):
        raise SourceModelError(f"the network {spec.factory} builds reads columns {list(declared)[:6]} (its feature_names) but the "
                               f"table's numeric columns are {list(columns)[:6]}; give the table those columns in that order")
    net.eval()
    try:
        with torch.no_grad():
            out = net(torch.zeros(2, n_features))
    except Exception as exc:
        detail = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
        raise SourceModelError(f"the network {spec.factory} builds cannot read the table's {n_features} numeric column(s) "
                               f"({detail}); its forward must take float32 [batch, {n_features}]") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, 1):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise SourceModelError(f"the network {spec.factory} builds returns {shape} for 2 rows; it must return one logit "
                               "(or prediction) per row, [batch, 1]")
    digest = digest_file(spec.path)
    origin = {"kind": "factory", "factory": spec.factory, "weights": spec.path.name, "sha256": digest.sha256,
              "parameters": sum(p.numel() for p in net.parameters())}
    return net, origin
