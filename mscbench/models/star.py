"""STAR: partitioned normalisation, a star-topology FCN and an auxiliary network on the scenario.

Sheng et al., One Model to Serve All: Star Topology Adaptive Recommender for Multi-Domain CTR Prediction
(CIKM 2021), docs/models.md#star. With u the concatenated (pooled) embeddings and dense values of a sample of
scenario t:

    PN(u)   = (γ ⊙ γ_t) ⊙ (u - μ_t) / sqrt(σ²_t + ε) + (β + β_t)          (partitioned normalisation)
    h_{l+1} = φ( (W_l ⊙ W_{l,t})^T h_l + b_l + b_{l,t} ),   h_0 = PN(u)   (star topology, every layer)
    logit   = h_L + MLP_aux(e_t ⊕ u)                                      (auxiliary network)

μ_t, σ²_t are the moments of the batch's scenario-t rows in training and scenario t's running
moments at evaluation (never the whole batch's). The star FCN runs on each scenario's rows separately,
so W_{l,t}, b_{l,t}, γ_t and β_t learn from scenario t's samples only.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import EMBEDDING_INIT_STD, FeatureEmbedding
from mscbench.models.blocks.mlp import MLP
from mscbench.models.blocks.routing import PartitionedNorm, StarLinear, route_by_scenario
from mscbench.models.cel import EmbeddingSettings
from mscbench.space import MLP_WIDTHS_3, tunable


@dataclass(frozen=True)
class STARConfig(EmbeddingSettings):
    """Hyperparameters of `star` (defaults: MI-DPG's backbone; auxiliary width [64], docs/models.md#star)."""

    embedding_dim: int = 16  # width of every field embedding and of the scenario embedding e_t
    hidden: tuple[int, ...] = tunable((128, 64, 32), MLP_WIDTHS_3)  # star FCN hidden widths (then one output unit, also star)
    auxiliary: tuple[int, ...] = (64,)  # auxiliary network hidden widths (then one output unit)
    norm_momentum: float = 0.1  # weight of the batch in PN's running statistics (PyTorch BatchNorm's)
    dropout: float = 0.0  # dropout after each hidden layer of both networks


@register("star", config=STARConfig, multi_scenario=True,
          description="partitioned norm + star-topology FCN (W ⊙ W_t) + auxiliary scenario network",
          paper="Sheng et al., One Model to Serve All: Star Topology Adaptive Recommender for Multi-Domain "
                "CTR Prediction (CIKM)", year=2021)
class STAR(nn.Module):
    def __init__(self, manifest: Manifest, config: STARConfig):
        super().__init__()
        self.scenarios = scenarios = manifest.num_scenarios
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim)
        width = self.embedding.flat_dim
        self.norm = PartitionedNorm(width, scenarios, config.norm_momentum)
        widths = [width, *config.hidden, 1]
        self.layers = nn.ModuleList(StarLinear(a, b, scenarios) for a, b in itertools.pairwise(widths))
        self.dropout = nn.Dropout(config.dropout)
        self.scenario_embedding = nn.Embedding(scenarios, config.embedding_dim)  # e_t
        nn.init.normal_(self.scenario_embedding.weight, std=EMBEDDING_INIT_STD)
        self.auxiliary = MLP(config.embedding_dim + width, config.auxiliary, config.dropout, output_dim=1)

    def forward(self, batch: Batch) -> ModelOutput:
        u = self.embedding.flat(batch)  # [B, input_dim]
        h = self.norm(u, batch.scenario)  # [B, input_dim]  PN(u)
        branches = [partial(self.star_network, t) for t in range(self.scenarios)]
        star = route_by_scenario(branches, h, batch.scenario)  # [B, 1]
        auxiliary = self.auxiliary(torch.cat([self.scenario_embedding(batch.scenario), u], dim=1))  # [B, 1]
        return ModelOutput((star + auxiliary).squeeze(1))

    def star_network(self, scenario: int, h: torch.Tensor) -> torch.Tensor:
        """The FCN with scenario t's weights W ⊙ W_t on scenario t's rows: [n, input_dim] -> [n, 1]."""
        for layer in self.layers[:-1]:
            h = self.dropout(torch.relu(layer(h, scenario)))  # [n, d_{l+1}]
        return self.layers[-1](h, scenario)  # no activation or norm after the output unit

    def scenario_parameters(self, scenario: int) -> list[nn.Parameter]:
        owned = [self.norm.scenario_scale[scenario], self.norm.scenario_shift[scenario]]
        for layer in self.layers:
            owned += [layer.scenario_weight[scenario], layer.scenario_bias[scenario]]
        return owned
