"""DCN (Deep & Cross Network): a cross network and an MLP side by side over the same input.

docs/models.md#dcn (3 cross layers, as in SAML's comparison; deep part 128-64):

    x_0     = ⊕_f e_f ⊕ e_scenario ⊕ pool(seq) ⊕ z                     [B, d]
    x_{l+1} = x_0 · (x_l^T w_l) + b_l + x_l,    l = 0..L-1               (paper eq. 3)
    h       = MLP(x_0)                                                   (paper eq. 4)
    logit   = w_o^T [x_L ⊕ h] + b_o                                     (paper eq. 5)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import FeatureEmbedding
from mscbench.models.blocks.mlp import MLP
from mscbench.models.cel import EmbeddingSettings
from mscbench.space import MLP_WIDTHS_2, IntRange, tunable


@dataclass(frozen=True)
class DCNConfig(EmbeddingSettings):
    """Hyperparameters of `dcn` (defaults: SAML's public setting and its 3 cross layers)."""

    embedding_dim: int = 12  # width of every field embedding
    cross_layers: int = tunable(3, IntRange(1, 4))  # number of cross layers L
    hidden: tuple[int, ...] = tunable((128, 64), MLP_WIDTHS_2)  # deep MLP layer widths
    dropout: float = 0.0  # dropout after each hidden layer


class CrossLayer(nn.Module):
    """DCN cross layer `x_{l+1} = x_0 · (x_l^T w) + b + x_l` (Wang et al., ADKDD 2017, eq. 3).

    `x_l^T w` is one scalar per sample, so the layer costs O(d); the d×d outer product `x_0 x_l^T` is
    never formed.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim) * dim ** -0.5)  # [d]
        self.bias = nn.Parameter(torch.zeros(dim))  # [d]

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * (x @ self.weight).unsqueeze(1) + self.bias + x  # [B, d]


@register("dcn", config=DCNConfig, description="cross network (explicit feature crosses) beside an MLP",
          paper="Wang et al., Deep & Cross Network for Ad Click Predictions (ADKDD)", year=2017)
class DCN(nn.Module):
    def __init__(self, manifest: Manifest, config: DCNConfig):
        super().__init__()
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim, with_scenario=True)
        width = self.embedding.flat_dim
        self.cross = nn.ModuleList(CrossLayer(width) for _ in range(config.cross_layers))
        self.deep = MLP(width, config.hidden, config.dropout)
        self.output = nn.Linear(width + self.deep.output_dim, 1)

    def forward(self, batch: Batch) -> ModelOutput:
        x0 = self.embedding.flat(batch)  # [B, d]
        x = x0
        for layer in self.cross:
            x = layer(x0, x)  # [B, d]                                    eq. 3
        h = self.deep(x0)  # [B, hidden[-1]]                                eq. 4
        return ModelOutput(self.output(torch.cat([x, h], dim=1)).squeeze(1))  # [B]   eq. 5
