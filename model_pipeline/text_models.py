"""Hugging Face text models as the pipeline loads, adapts, trains and exports them.

A :class:`TextModel` takes token ids (``input_ids``, ``attention_mask`` and,
when the model reads it, ``token_type_ids``) and returns the task's output:

* ``mode="hf"``: a ``*ForSequenceClassification`` model used whole, its own
  head included: logits ``[batch, n_labels]`` (or ``[batch, 1]`` for
  regression). Used when the source's labels cover the target's.
* ``mode="pooled"``: the encoder (``AutoModel``), the mean of its last
  hidden states over real tokens (``attention_mask``), L2-normalised when
  the source normalises (sentence-transformers' ``Normalize`` module), then
  a Linear ``head`` for classification / regression or nothing for
  embeddings. Used for embedding models and for a new head.

The backbone (what ``head`` and ``adapter``/``lora`` freeze) is the
transformers ``base_model``; everything else is the head. LoRA wraps every
``nn.Linear`` of the backbone in :class:`~model_pipeline.models.LoRALinear`
and is merged back into plain Linear weights before export, so serving sees
one plain model. transformers is imported here only, and only when a
Hugging Face source is used.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .models import LoRALinear, replace_linears
from .sources import SourceModelError

GRAPH_INPUT_ORDER = ("input_ids", "attention_mask", "token_type_ids")
# position embeddings that start after the padding index (fairseq heritage): 2 positions are not usable
_OFFSET_POSITION_TYPES = ("roberta", "xlm-roberta", "camembert", "longformer", "bart", "mbart", "data2vec-text")


@contextlib.contextmanager
def quiet_transformers() -> Any:
    """transformers without its progress bars, load reports and warnings (they would break the one-line progress)."""
    import transformers

    previous = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        transformers.logging.set_verbosity(previous)
        if bars:
            transformers.utils.logging.enable_progress_bar()


class TextModel(nn.Module):
    """Token ids in, the task's output out (see the module doc for the two modes)."""

    def __init__(self, backbone: nn.Module, *, mode: str, head: nn.Module | None = None, pooling: str = "mean",
                 token_type_ids: bool = False) -> None:
        super().__init__()
        if mode not in ("hf", "pooled"):
            raise ValueError(f"mode {mode!r} is not hf or pooled")
        self.backbone = backbone
        self.mode = mode
        self.head = head
        self.pooling = pooling
        self.uses_token_type_ids = token_type_ids

    @property
    def encoder(self) -> nn.Module:
        """The transformer body: what strategies head and adapter freeze."""
        return self.backbone.base_model if self.mode == "hf" else self.backbone

    def head_parameters(self) -> list[nn.Parameter]:
        """The parameters outside the encoder (the classification head); empty for an embedding model."""
        if self.mode == "pooled":
            return list(self.head.parameters()) if self.head is not None else []
        body = {id(p) for p in self.encoder.parameters()}
        return [p for p in self.backbone.parameters() if id(p) not in body]

    def _feeds(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None) -> dict[str, Any]:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.uses_token_type_ids:
            feeds["token_type_ids"] = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
        return feeds

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                 token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Mean-pooled last hidden states ``[batch, hidden]`` (L2-normalised for ``pooling="mean_normalized"``)."""
        hidden = self.encoder(**self._feeds(input_ids, attention_mask, token_type_ids)).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(pooled, p=2, dim=1) if self.pooling == "mean_normalized" else pooled

    def outputs_and_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                             token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(output, pooled features)``; features are None in ``hf`` mode (its head pools its own way)."""
        if self.mode == "hf":
            return self.backbone(**self._feeds(input_ids, attention_mask, token_type_ids)).logits, None
        feats = self.features(input_ids, attention_mask, token_type_ids)
        return (feats if self.head is None else self.head(feats)), feats

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (classification), the standardized prediction (regression) or the embedding."""
        return self.outputs_and_features(input_ids, attention_mask, token_type_ids)[0]


class TextServingModel(nn.Module):
    """What is exported: token ids in, the manifest's outputs out.

    ``multiclass``: ``(logits, probabilities)`` ``[batch, n_labels]``;
    ``regression``: ``(prediction,)`` ``[batch, 1]`` on the label's scale;
    ``embedding``: ``(embedding,)`` ``[batch, hidden]``.
    """

    def __init__(self, model: TextModel, task: str, scale: tuple[float, float] = (0.0, 1.0)) -> None:
        super().__init__()
        self.model = model
        self.task = task
        self.register_buffer("target_mean", torch.tensor(float(scale[0]), dtype=torch.float32))
        self.register_buffer("target_std", torch.tensor(float(scale[1]), dtype=torch.float32))

    @property
    def graph_inputs(self) -> tuple[str, ...]:
        """The graph's input names, in order."""
        return GRAPH_INPUT_ORDER if self.model.uses_token_type_ids else GRAPH_INPUT_ORDER[:2]

    @property
    def output_names(self) -> tuple[str, ...]:
        """The graph's output names, in order."""
        return {"multiclass": ("logits", "probabilities"), "regression": ("prediction",), "embedding": ("embedding",)}[self.task]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids, attention_mask, token_type_ids)
        if self.task == "multiclass":
            return out, torch.softmax(out, dim=-1)
        if self.task == "regression":
            return (out * self.target_std + self.target_mean,)
        return (out,)


def add_text_adapters(model: TextModel, rank: int) -> None:
    """LoRA: wrap every ``nn.Linear`` of the encoder in a :class:`LoRALinear` (in place); only the adapters and the
    head train. Raises :class:`SourceModelError` for an encoder without Linear layers (GPT-2's Conv1D, say)."""
    for p in model.parameters():
        p.requires_grad_(False)
    count = [0]

    def wrap(linear: nn.Linear) -> LoRALinear:
        count[0] += 1
        return LoRALinear(linear, rank)

    replace_linears(model.encoder, wrap, None)
    if not count[0]:
        raise SourceModelError(f"strategy lora found no nn.Linear layer in the {type(model.encoder).__name__} encoder to adapt; "
                               "use strategy full or head")
    for p in model.head_parameters():
        p.requires_grad_(True)


def set_trainable(model: TextModel, strategy: str, rank: int) -> None:
    """Freeze and adapt ``model`` for ``strategy``: full (every weight), head (the head only), adapter / lora."""
    if strategy == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return
    if strategy == "head" and not model.head_parameters():
        raise SourceModelError("strategy head trains the model's head, and an embedding model has none; "
                               "use --fine-tune full, or lora for adapters on the encoder")
    if strategy == "head":
        for p in model.parameters():
            p.requires_grad_(False)
        for p in model.head_parameters():
            p.requires_grad_(True)
        return
    add_text_adapters(model, rank)


# -- loading a folder ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderInfo:
    """What a Hugging Face folder says about itself, read without loading weights."""

    folder: Path
    config: dict[str, Any]
    sequence_classifier: bool  # architectures names a *ForSequenceClassification
    labels: tuple[str, ...]  # id2label in index order ("LABEL_0" ... when the model never named them)
    problem_type: str | None
    pooling: str | None  # from sentence-transformers modules: mean / mean_normalized; None: not a sentence-transformers folder
    max_positions: int | None  # usable token positions
    st_max_length: int | None  # sentence-transformers' max_seq_length

    @property
    def model_type(self) -> str:
        """The transformers model type (bert, roberta, ...)."""
        return str(self.config.get("model_type", ""))


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SourceModelError(f"{path} cannot be read as JSON ({exc}); re-save the model folder") from None


def _sentence_transformers_pooling(folder: Path) -> tuple[str | None, int | None]:
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None, None
    modules = _json(modules_file)
    pooling, normalize = None, False
    for module in modules if isinstance(modules, list) else []:
        kind = str(module.get("type", ""))
        if kind.endswith("Pooling"):
            cfg = _json(folder / str(module.get("path", "")) / "config.json")
            if not cfg.get("pooling_mode_mean_tokens"):
                modes = [k.removeprefix("pooling_mode_") for k, v in cfg.items() if k.startswith("pooling_mode_") and v is True]
                raise SourceModelError(f"{folder} pools with {', '.join(modes) or 'an unknown mode'}; lepton-cdk exports mean "
                                       "pooling only: use a mean-pooling sentence-transformers model")
            pooling = "mean"
        elif kind.endswith("Normalize"):
            normalize = True
        elif not kind.endswith("Transformer") and kind:
            raise SourceModelError(f"{folder} has a sentence-transformers module {kind.rsplit('.', 1)[-1]} that lepton-cdk cannot "
                                   "export (it exports Transformer, Pooling (mean) and Normalize); drop it or use another model")
    st_config = folder / "sentence_bert_config.json"
    st_max = _json(st_config).get("max_seq_length") if st_config.is_file() else None
    if pooling is None:
        return None, st_max if isinstance(st_max, int) else None
    return ("mean_normalized" if normalize else "mean"), st_max if isinstance(st_max, int) else None


def read_folder(folder: Path) -> FolderInfo:
    """The folder's config, labels, pooling and position limit (no weights are read)."""
    config = _json(folder / "config.json")
    architectures = config.get("architectures") or []
    seq_cls = any(str(a).endswith("ForSequenceClassification") for a in architectures)
    id2label = config.get("id2label") or {}
    try:
        labels = tuple(str(id2label[k]) for k in sorted(id2label, key=int))
    except (ValueError, TypeError):
        raise SourceModelError(f"{folder / 'config.json'} has id2label keys that are not class indices; re-save the model") from None
    if seq_cls and not labels:
        labels = tuple(f"LABEL_{i}" for i in range(int(config.get("num_labels", 2))))
    pooling, st_max = _sentence_transformers_pooling(folder)
    positions = config.get("max_position_embeddings")
    if isinstance(positions, int) and config.get("model_type") in _OFFSET_POSITION_TYPES:
        positions -= 2
    return FolderInfo(folder, config, seq_cls, labels if seq_cls else (), config.get("problem_type"), pooling,
                      positions if isinstance(positions, int) and positions > 0 else None, st_max)


def load_backbone(folder: Path, *, classifier: bool) -> nn.Module:
    """The folder's weights in float32: the whole ``*ForSequenceClassification`` model, or its encoder (``AutoModel``).

    Offline (``local_files_only``), safetensors only, never the folder's own code.
    """
    from transformers import AutoModel, AutoModelForSequenceClassification

    cls = AutoModelForSequenceClassification if classifier else AutoModel
    try:
        with quiet_transformers():
            model = cls.from_pretrained(str(folder), local_files_only=True, use_safetensors=True, trust_remote_code=False,
                                        dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, KeyError, ImportError) as exc:
        detail = " ".join(str(exc).split())[:220]
        raise SourceModelError(f"transformers cannot load {folder} ({type(exc).__name__}: {detail}); check the folder holds a "
                               "complete model saved with save_pretrained") from None
    return model.eval()


def fresh_backbone(info: FolderInfo, *, classifier: bool, seed: int) -> nn.Module:
    """The same architecture with random weights (the from-scratch baseline), initialized from ``seed``."""
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

    with quiet_transformers():
        config = AutoConfig.from_pretrained(str(info.folder), local_files_only=True, trust_remote_code=False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            cls = AutoModelForSequenceClassification if classifier else AutoModel
            model = cls.from_config(config, dtype=torch.float32)
    return model.eval()


def takes_token_type_ids(backbone: nn.Module) -> bool:
    """Whether the model reads ``token_type_ids`` (BERT does; RoBERTa-style models with one type do not need them)."""
    import inspect

    config = getattr(backbone, "config", None)
    if getattr(config, "type_vocab_size", 0) in (None, 0):
        return False
    try:
        return "token_type_ids" in inspect.signature(backbone.forward).parameters
    except (TypeError, ValueError):
        return False


def new_head(in_features: int, n_out: int, seed: int) -> nn.Linear:
    """A Linear head initialized from ``seed`` (the caller's random stream is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Linear(in_features, n_out)


def hidden_size(backbone: nn.Module) -> int:
    """The encoder's output width."""
    config = backbone.config
    for key in ("hidden_size", "d_model", "dim"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    raise SourceModelError(f"cannot tell the hidden size of {type(backbone).__name__}; use a BERT-family encoder")


# -- the tokenizer -------------------------------------------------------------------------------------------------


def _lowercases(node: Any) -> bool:
    if isinstance(node, dict):
        if node.get("type") == "Lowercase" or (node.get("type") == "BertNormalizer" and node.get("lowercase")):
            return True
        return any(_lowercases(v) for v in node.values())
    if isinstance(node, list):
        return any(_lowercases(v) for v in node)
    return False


def load_tokenizer(folder: Path) -> tuple[Any, bool]:
    """The folder's tokenizer as a ``tokenizers.Tokenizer`` with its pad token set, and whether it lowercases.

    ``tokenizer.json`` when present; otherwise transformers converts the
    folder's vocabulary to one (a fast tokenizer). The pad token is the one
    ``tokenizer_config.json`` / ``special_tokens_map.json`` names, so the
    artifact alone tells a server how to pad.
    """
    import tokenizers

    file = folder / "tokenizer.json"
    if file.is_file():
        try:
            tokenizer = tokenizers.Tokenizer.from_file(str(file))
        except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
            raise SourceModelError(f"{file} is not a tokenizers JSON file ({' '.join(str(exc).split())[:160]}); "
                                   "re-save it with tokenizer.save_pretrained(folder)") from None
    else:
        from transformers import AutoTokenizer

        try:
            with quiet_transformers():
                fast = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, use_fast=True, trust_remote_code=False)
        except (OSError, ValueError, ImportError, KeyError) as exc:
            raise SourceModelError(f"{folder} has no tokenizer.json and transformers cannot build one "
                                   f"({' '.join(str(exc).split())[:160]}); save the tokenizer with tokenizer.save_pretrained(folder)") from None
        backend = getattr(fast, "backend_tokenizer", None)
        if backend is None:
            raise SourceModelError(f"{folder}'s tokenizer has no fast (Rust) version to serve with; save a tokenizer.json beside the model")
        tokenizer = tokenizers.Tokenizer.from_str(backend.to_str())
    pad = None
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        if (folder / name).is_file():
            value = _json(folder / name).get("pad_token")
            pad = value.get("content") if isinstance(value, dict) else value
            if pad:
                break
    if pad and tokenizer.token_to_id(pad) is not None:
        tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad), pad_token=pad)
    lowercase = _lowercases(json.loads(tokenizer.to_str()).get("normalizer"))
    return tokenizer, lowercase
