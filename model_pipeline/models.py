"""The networks: a small MLP that scores preprocessed rows, and the serving
wrapper that takes raw rows, so the exported graph needs no Python beside it."""

from __future__ import annotations

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for preprocessed rows ``x``."""
        return self.layers(x)


class ServingModel(nn.Module):
    """Raw features in, ``(logit, probability)`` out: preprocessing plus the network.

    ``forward`` takes RAW float32 rows ``[batch, n_features]`` (NaN allowed for
    a missing value), imputes the training median, clips to the training
    quantiles, standardizes and runs the network. This module is what gets
    exported to ONNX, so every server computes the same answer from the same
    raw row without reimplementing the preprocessing.
    """

    def __init__(self, preprocessor_params: Preprocessor | Mapping[str, Any], net: nn.Module) -> None:
        super().__init__()
        pre = preprocessor_params if isinstance(preprocessor_params, Preprocessor) else Preprocessor.from_dict(preprocessor_params)
        self.feature_names = list(pre.features)
        self.net = net
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

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logit, probability)`` for raw rows, each ``[batch, 1]`` float32."""
        logit = self.net(self.preprocess(features))
        return logit, torch.sigmoid(logit)


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
