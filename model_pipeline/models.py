"""The networks: a small MLP and a small tabular transformer that score
preprocessed rows, low-rank adapters for parameter-efficient fine-tuning, and
the serving wrapper that takes raw rows, so the exported graph needs no
Python beside it.

Every network has a ``head`` (the last layer, one output per row) and a
backbone (everything else); the fine-tune strategies in
:mod:`model_pipeline.train` freeze or adapt the backbone by that split.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .data import Preprocessor
from .datasets import FEATURES


class MLP(nn.Module):
    """A feed-forward binary classifier: ``[batch, n_features]`` -> one logit per row ``[batch, 1]``."""

    def __init__(self, n_features: int, hidden: Sequence[int] = (64, 32), dropout: float = 0.1) -> None:
        super().__init__()
        if n_features < 1 or any(h < 1 for h in hidden) or not 0.0 <= dropout < 1.0:
            raise ValueError(f"MLP needs n_features >= 1, hidden sizes >= 1 and 0 <= dropout < 1; got {n_features}, {tuple(hidden)}, {dropout}")
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.layers = nn.Sequential(*layers)
        self.n_features = n_features
        self.hidden = tuple(hidden)
        self.dropout = dropout

    @property
    def head(self) -> nn.Module:
        """The output layer; everything before it is the backbone."""
        return self.layers[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for preprocessed rows ``x``."""
        return self.layers(x)


class _AttentionBlock(nn.Module):
    """Pre-norm self-attention and feed-forward, written with plain matmuls so
    it exports to core ONNX ops (no fused attention kernel in the graph)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_model // n_heads
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.ff1, self.ff2 = nn.Linear(d_model, 2 * d_model), nn.Linear(2 * d_model, d_model)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(b, t, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(self.d_head), dim=-1)
        x = x + self.drop(self.proj((att @ v).transpose(1, 2).reshape(b, t, d)))
        return x + self.drop(self.ff2(torch.relu(self.ff1(self.norm2(x)))))


class TabularTransformer(nn.Module):
    """A small FT-Transformer-style model: one token per column, a [CLS] token, attention blocks, a linear head.

    Input is the preprocessed row ``[batch, n_numeric + sum(category_sizes)]``
    (standardized numbers, then one-hot blocks). A numeric column's token is
    ``x_i * w_i + b_i``; a categorical column's token is its one-hot block
    times an embedding table (an all-zero block, i.e. missing or unseen,
    gives just the column's bias).
    """

    def __init__(self, n_numeric: int, category_sizes: Sequence[int] = (), d_model: int = 32, n_heads: int = 4,
                 n_layers: int = 2, dropout: float = 0.1) -> None:
        super().__init__()
        if n_numeric < 1 or d_model % n_heads or n_layers < 1:
            raise ValueError(f"TabularTransformer needs n_numeric >= 1, d_model divisible by n_heads and n_layers >= 1; "
                             f"got {n_numeric}, {d_model}/{n_heads}, {n_layers}")
        self.n_numeric, self.category_sizes = n_numeric, tuple(category_sizes)
        self.num_weight = nn.Parameter(torch.randn(n_numeric, d_model) * 0.1)
        self.num_bias = nn.Parameter(torch.zeros(n_numeric, d_model))
        self.cat_embed = nn.ModuleList(nn.Linear(n, d_model) for n in self.category_sizes)
        self.cls = nn.Parameter(torch.zeros(1, 1, d_model))
        self.blocks = nn.ModuleList(_AttentionBlock(d_model, n_heads, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[batch, 1]`` for preprocessed rows ``x``."""
        tokens = [x[:, : self.n_numeric, None] * self.num_weight + self.num_bias]
        start = self.n_numeric
        for size, embed in zip(self.category_sizes, self.cat_embed, strict=True):
            tokens.append(embed(x[:, start:start + size])[:, None, :])
            start += size
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), *tokens], dim=1)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h[:, 0]))


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``(alpha / rank) * B @ A``.

    ``B`` starts at zero, so before training the adapted layer computes
    exactly what the original did.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None) -> None:
        super().__init__()
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.scale = (alpha if alpha is not None else rank) / rank
        self.lora_a = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.lora_a.T @ self.lora_b.T) * self.scale

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` computing the same function (for export)."""
        has_bias = self.base.bias is not None
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=has_bias,
                        dtype=self.base.weight.dtype, device=self.base.weight.device)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scale * self.lora_b @ self.lora_a)
            if has_bias:
                out.bias.copy_(self.base.bias)
        return out


def replace_linears(module: nn.Module, make: Any, skip: nn.Module | None) -> None:
    """Replace every ``nn.Linear`` under ``module`` (except inside ``skip``) with ``make(linear)``, in place."""
    for name, child in module.named_children():
        if child is skip:
            continue
        if isinstance(child, nn.Linear):
            setattr(module, name, make(child))
        else:
            replace_linears(child, make, skip)


def add_adapters(net: nn.Module, rank: int) -> int:
    """Wrap every backbone ``nn.Linear`` of ``net`` in a :class:`LoRALinear` (in place).

    Freezes every other backbone parameter; the head stays trainable.
    Returns the number of trainable parameters.
    """
    for p in net.parameters():
        p.requires_grad_(False)
    replace_linears(net, lambda lin: LoRALinear(lin, rank), net.head)
    for p in net.head.parameters():
        p.requires_grad_(True)
    return sum(p.numel() for p in net.parameters() if p.requires_grad)


def _widen(weight: torch.Tensor, old: Sequence[str], new: Sequence[str]) -> torch.Tensor:
    """Columns of ``weight`` (``[out, len(old)]``) laid out for categories ``new``; a new category gets zeros."""
    out = torch.zeros(weight.shape[0], len(new), dtype=weight.dtype)
    for i, cat in enumerate(new):
        if cat in old:
            out[:, i] = weight[:, list(old).index(cat)]
    return out


def widen_categories(net: nn.Module, n_numeric: int, old: Sequence[Sequence[str]], new: Sequence[Sequence[str]]) -> nn.Module:
    """A copy of ``net`` whose input takes the one-hot layout of categories ``new`` instead of ``old``.

    Each category of ``old`` keeps its learned weights; one only in ``new``
    starts at zero, so on any row the widened network answers exactly as
    ``net`` does on the same row encoded with ``old`` (where a new category is
    all zeros). Fine-tuning can then learn what the new categories mean.
    """
    wide = copy.deepcopy(net)
    with torch.no_grad():
        if isinstance(wide, TabularTransformer):
            for j, (embed, o, n) in enumerate(zip(wide.cat_embed, old, new, strict=True)):
                layer = nn.Linear(len(n), embed.out_features)
                layer.weight.copy_(_widen(embed.weight, o, n))
                layer.bias.copy_(embed.bias)
                wide.cat_embed[j] = layer
            wide.category_sizes = tuple(len(n) for n in new)
        elif isinstance(wide, MLP):
            first = wide.layers[0]
            blocks = [first.weight[:, :n_numeric]]
            start = n_numeric
            for o, n in zip(old, new, strict=True):
                blocks.append(_widen(first.weight[:, start:start + len(o)], o, n))
                start += len(o)
            layer = nn.Linear(sum(b.shape[1] for b in blocks), first.out_features)
            layer.weight.copy_(torch.cat(blocks, dim=1))
            layer.bias.copy_(first.bias)
            wide.layers[0] = layer
            wide.n_features = layer.in_features
        else:
            raise TypeError(f"cannot widen the categorical input of a {type(net).__name__}")
    return wide


def merge_adapters(net: nn.Module) -> nn.Module:
    """Fold every :class:`LoRALinear` in ``net`` back into a plain Linear (in place); returns ``net``."""

    def walk(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, LoRALinear):
                setattr(module, name, child.merged())
            else:
                walk(child)

    walk(net)
    for p in net.parameters():
        p.requires_grad_(True)
    return net


class ServingModel(nn.Module):
    """Raw features in, ``(logit, probability)`` out: preprocessing plus the network.

    ``forward`` takes RAW float32 rows ``[batch, n_features]`` (NaN allowed for
    a missing value), imputes the training median, clips to the training
    quantiles, standardizes and runs the network. This module is what gets
    exported to ONNX, so every server computes the same answer from the same
    raw row without reimplementing the preprocessing.
    """

    def __init__(self, preprocessor_params: Preprocessor | Mapping[str, Any], net: nn.Module, task: str = "classification",
                 target_mean: float = 0.0, target_std: float = 1.0) -> None:
        super().__init__()
        pre = preprocessor_params if isinstance(preprocessor_params, Preprocessor) else Preprocessor.from_dict(preprocessor_params)
        self.feature_names = list(pre.features)
        self.categorical = list(pre.categorical)
        self.task = task
        self.net = net
        # a regression net predicts the standardized target; the graph scales it back
        self.register_buffer("target_mean", torch.tensor(float(target_mean), dtype=torch.float32))
        self.register_buffer("target_std", torch.tensor(float(target_std), dtype=torch.float32))
        # buffers, not parameters: they travel with state_dict and the exported
        # graph but fine-tuning must never move them
        for name in ("median", "clip_low", "clip_high", "mean", "std"):
            self.register_buffer(name, torch.tensor(getattr(pre, name), dtype=torch.float32))

    @property
    def n_features(self) -> int:
        """How many raw features a row has."""
        return len(self.feature_names)

    def preprocess(self, features: torch.Tensor) -> torch.Tensor:
        """The network's input for raw rows: same arithmetic as :meth:`Preprocessor.transform`."""
        x = torch.where(torch.isnan(features), self.median, features)
        # minimum/maximum rather than clamp: per-feature bounds must export to
        # ONNX Min/Max, and Clip only takes scalar bounds
        x = torch.maximum(torch.minimum(x, self.clip_high), self.clip_low)
        return (x - self.mean) / self.std

    def forward(self, features: torch.Tensor, onehot: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """``(logit, probability)`` (classification) or ``(prediction,)`` (regression) for raw rows, each ``[batch, 1]`` float32.

        ``features`` holds the raw numeric columns; ``onehot`` the encoded
        categorical columns (see :meth:`Preprocessor.onehot`), when the model has any.
        """
        x = self.preprocess(features)
        if onehot is not None:
            x = torch.cat([x, onehot], dim=1)
        out = self.net(x)
        if self.task == "regression":
            return (out * self.target_std + self.target_mean,)
        return out, torch.sigmoid(out)


def load_serving_checkpoint(
    path: str | Path, feature_names: Sequence[str] = FEATURES, hidden: Sequence[int] = (64, 32), dropout: float = 0.1
) -> ServingModel:
    """Rebuild a :class:`ServingModel` from a saved ``state_dict`` (e.g. ``source_model.pt``).

    The file holds tensors only and is read with ``weights_only=True``, so
    loading it cannot run code. ``hidden`` and ``dropout`` must match the run
    that wrote it (its ``metrics.json`` records them under ``config``).
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    n = len(feature_names)
    zeros = (0.0,) * n
    model = ServingModel(Preprocessor(tuple(feature_names), zeros, zeros, zeros, zeros, (1.0,) * n), MLP(n, hidden, dropout))
    model.load_state_dict(state)  # strict: a checkpoint of another shape fails here, by name
    return model.eval()
