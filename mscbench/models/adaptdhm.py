"""AdaptDHM: samples routed to learned distribution clusters (not by scenario id); a STAR network per cluster.

Li et al., AdaptDHM: Adaptive Distribution Hierarchical Model for Multi-Domain CTR Prediction (arXiv 2022),
docs/models.md#adaptdhm [reconstructed from Scenario-Wise-Rec's code, medium-low]. With x = ⊕_f e_f ⊕ z (the
scenario id is one more field of the cluster networks' input) and C cluster centres c_j (unit rows, state):

    (1) r = sg(x₋) / ||sg(x₋)||       routing input: x without the scenario field (no scenario id needed to
                                      route), stop-gradient (routing never trains the embeddings)
    (2) π_ij = softmax_j(<r_i, c_j>),   k_i = argmax_j π_ij             hard route to a cluster
    (3) training only, R times on a copy C' of the centres (dynamic routing):
            c'_j <- normalise(β c'_j + (1 - β) Σ_i π_ij r_i),   then π recomputed with C'
    (4) h^{l+1} = ReLU(h^l (W_l^{(k)} ⊙ W_l^{(0)}) + b_l^{(k)} + b_l^{(0)}),   logit = the last layer's output
                                                          (cluster ⊙ shared, STAR-style, on cluster k's rows)

The centres are a running statistic of the data, like BatchNorm's running mean: the buffer `running_centres`,
saved with the weights, set to C' after each training forward (one update per step, under no_grad) and only
read in evaluation, where routing is one pass with the stored centres (so a prediction depends on its
sample alone).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import FeatureEmbedding
from mscbench.models.blocks.routing import StarLinear, route_by_scenario
from mscbench.models.cel import EmbeddingSettings


@dataclass(frozen=True)
class AdaptDHMConfig(EmbeddingSettings):
    """Hyperparameters of `adaptdhm` (defaults: Scenario-Wise-Rec's Amazon/Douban scripts)."""

    embedding_dim: int = 16  # width of every field embedding
    num_clusters: int = 3  # C distribution clusters
    hidden: tuple[int, ...] = (64, 64)  # cluster network widths (then one output unit)
    momentum: float = 0.9  # β: weight of the old centre in each routing update
    routing_iterations: int = 3  # R dynamic-routing refinements per training step


class ClusterNetwork(nn.Module):
    """Eq. 4: STAR layers (cluster ⊙ shared), evaluated as one cluster at a time."""

    def __init__(self, input_dim: int, hidden: tuple[int, ...], clusters: int):
        super().__init__()
        widths = [input_dim, *hidden, 1]
        self.layers = nn.ModuleList(StarLinear(a, b, clusters) for a, b in itertools.pairwise(widths))

    def forward(self, h: torch.Tensor, cluster: int) -> torch.Tensor:
        for l, layer in enumerate(self.layers):
            h = layer(h, cluster)
            if l < len(self.layers) - 1:
                h = torch.relu(h)
        return h  # [n, 1]


@register("adaptdhm", config=AdaptDHMConfig, multi_scenario=True,
          description="rows routed to learned distribution clusters (centres as state), STAR net per cluster",
          paper="Li et al., AdaptDHM: Adaptive Distribution Hierarchical Model for Multi-Domain CTR "
                "Prediction (arXiv)", year=2022)
class AdaptDHM(nn.Module):
    def __init__(self, manifest: Manifest, config: AdaptDHMConfig):
        super().__init__()
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim, with_scenario=True)
        width = self.embedding.flat_dim
        self.network = ClusterNetwork(width, config.hidden, config.num_clusters)
        self.scenario_field = self.embedding.num_fields - 1  # FeatureEmbedding puts the scenario last
        centres = torch.randn(config.num_clusters, width - config.embedding_dim)
        centres = nn.functional.normalize(centres, dim=1)
        self.register_buffer("running_centres", centres)  # [C, input_dim - d]
        self.config = config

    def forward(self, batch: Batch) -> ModelOutput:
        fields = self.embedding.pooled_fields(batch)  # [B, F+1+S, d]
        x = torch.cat([fields.flatten(1), batch.dense], dim=1)  # [B, input_dim]
        others = [i for i in range(fields.shape[1]) if i != self.scenario_field]
        routing = torch.cat([fields[:, others].flatten(1), batch.dense], dim=1).detach()  # [B, input_dim - d]
        routing = nn.functional.normalize(routing, dim=1)  # (1)
        centres = self.running_centres
        if self.training:
            centres = self.refined(routing, centres)  # (3)
            with torch.no_grad():
                self.running_centres.copy_(centres)
        assignment = torch.softmax(routing @ centres.T, dim=1)  # [B, C]   (2)
        cluster = assignment.argmax(1)  # [B]
        branches = [lambda rows, k=k: self.network(rows, k) for k in range(self.config.num_clusters)]
        logit = route_by_scenario(branches, x, cluster).squeeze(1)  # [B]   (4)
        return ModelOutput(logit, extras={"cluster": nn.functional.one_hot(cluster, len(centres)).float()})

    def refined(self, routing: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        """Eq. 3 on a copy of the centres: R momentum steps towards the assignment-weighted sum."""
        beta = self.config.momentum
        for _ in range(self.config.routing_iterations):
            assignment = torch.softmax(routing @ centres.T, dim=1)  # [B, C]
            centres = nn.functional.normalize(beta * centres + (1 - beta) * assignment.T @ routing, dim=1)
        return centres

    def cluster_parameters(self, cluster: int) -> list[nn.Parameter]:
        """Cluster k's own weights (W^{(k)}, b^{(k)} of every layer)."""
        return [p for layer in self.network.layers for p in (layer.scenario_weight[cluster],
                                                              layer.scenario_bias[cluster])]

    def scenario_parameters(self, scenario: int) -> list[tuple[nn.Parameter, int]]:
        """The scenario field's row: the only parameter tied to a scenario (routing ignores the id)."""
        return [(self.embedding.scenario.weight, scenario)]
