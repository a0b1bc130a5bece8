"""HMoE: scenario towers over shared experts (implicit, feature space), mixed in the label space (explicit).

Li et al., Improving Multi-Scenario Learning to Rank in E-commerce by Exploiting Task Relationships in the
Label Space (CIKM 2020), docs/models.md#hmoe [reconstructed, medium-high]. x = ⊕_f e_f ⊕ z, N scenarios:

    (1) m_t = Σ_k softmax(G_t(x))_k · E_k(x)                  MMoE: K shared experts, one gate per scenario
    (2) ŷ_j = σ(Tower_j(m_j))                                 every scenario's prediction, for every sample
    (3) w(x) = softmax(MLP_w(x)) ∈ R^N                        the label-space relationship weights
    (4) p_t = w_t ŷ_t + Σ_{j≠t} w_j sg(ŷ_j)                   t = the sample's scenario; sg = stop-gradient
    (5) logit = log p_t - log(1 - p_t)

(4) is the task-constrained back-propagation: a scenario-t sample trains tower t and gate t (and the shared
experts and w) but only reads the other scenarios' predictions. `combine = "logit"` mixes the towers'
logits with the same weights and stop-gradients instead of their probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import FeatureEmbedding
from mscbench.models.blocks.mlp import MLP
from mscbench.models.cel import EmbeddingSettings

PROBABILITY_CLAMP = 1e-7


@dataclass(frozen=True)
class HMoEConfig(EmbeddingSettings):
    """Hyperparameters of `hmoe` (defaults: MMLRec's HMoE; the paper's are not recovered)."""

    embedding_dim: int = 16  # width of every field embedding
    num_experts: int = 4  # K shared experts
    expert_hidden: tuple[int, ...] = (256, 128)  # each expert's MLP widths
    gate_hidden: tuple[int, ...] = (64,)  # each scenario gate's hidden widths (then a linear to K)
    tower_hidden: tuple[int, ...] = (64,)  # each scenario tower's hidden widths (then one output unit)
    weight_hidden: tuple[int, ...] = (64,)  # the relationship-weight network's hidden widths (then N)
    combine: Literal["prob", "logit"] = "prob"  # mix predictions in the label space, or mix logits
    dropout: float = 0.0  # dropout after each hidden layer


@register("hmoe", config=HMoEConfig, multi_scenario=True,
          description="MMoE scenario towers mixed by learned scenario-relationship weights in label space",
          paper="Li et al., Improving Multi-Scenario Learning to Rank in E-commerce by Exploiting Task "
                "Relationships in the Label Space (CIKM)", year=2020)
class HMoE(nn.Module):
    cross_scenario_compute = "eq. 4 reads every scenario tower's prediction for every sample"

    def __init__(self, manifest: Manifest, config: HMoEConfig):
        super().__init__()
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim)
        width = self.embedding.flat_dim
        scenarios = manifest.num_scenarios
        self.experts = nn.ModuleList(MLP(width, config.expert_hidden, config.dropout)
                                     for _ in range(config.num_experts))
        expert_dim = self.experts[0].output_dim
        self.gates = nn.ModuleList(MLP(width, config.gate_hidden, output_dim=config.num_experts)
                                   for _ in range(scenarios))
        self.towers = nn.ModuleList(MLP(expert_dim, config.tower_hidden, config.dropout, output_dim=1)
                                    for _ in range(scenarios))
        self.relationship = MLP(width, config.weight_hidden, output_dim=scenarios)
        self.combine = config.combine

    def forward(self, batch: Batch) -> ModelOutput:
        x = self.embedding.flat(batch)  # [B, input_dim]
        experts = torch.stack([expert(x) for expert in self.experts], dim=1)  # [B, K, d_e]
        gates = torch.stack([torch.softmax(gate(x), -1) for gate in self.gates], dim=1)  # [B, N, K]
        mixtures = gates @ experts  # [B, N, d_e]   (1)
        logits = torch.cat([tower(mixtures[:, j]) for j, tower in enumerate(self.towers)], dim=1)  # [B, N]
        weights = torch.softmax(self.relationship(x), dim=1)  # [B, N]   (3)
        own = nn.functional.one_hot(batch.scenario, len(self.towers)).bool()  # [B, N]
        if self.combine == "logit":
            logit = (weights * torch.where(own, logits, logits.detach())).sum(1)  # [B]
        else:
            predictions = torch.sigmoid(logits)  # [B, N]   (2)
            mixed = (weights * torch.where(own, predictions, predictions.detach())).sum(1)  # [B]   (4)
            logit = torch.logit(mixed, eps=PROBABILITY_CLAMP)  # (5)
        return ModelOutput(logit, extras={"relationship": weights.detach()})

    def scenario_parameters(self, scenario: int) -> list[nn.Parameter]:
        """Tower t and gate t; the experts and the relationship weights are shared."""
        return [*self.towers[scenario].parameters(), *self.gates[scenario].parameters()]
