"""The multi-layer perceptron every model builds its towers, experts and gates from."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class MLP(nn.Module):
    """Linear -> activation (-> BatchNorm) (-> Dropout) per hidden layer; optional linear output layer."""

    def __init__(self, input_dim: int, hidden: Sequence[int], dropout: float = 0.0,
                 activation: type[nn.Module] = nn.ReLU, batch_norm: bool = False,
                 output_dim: int | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for size in hidden:
            layers += [nn.Linear(width, size), activation()]
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        if output_dim is not None:
            layers.append(nn.Linear(width, output_dim))
            width = output_dim
        self.layers = nn.Sequential(*layers)
        self.output_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
