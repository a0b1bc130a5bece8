"""MMoE: shared experts mixed by one softmax gate per scenario, then one tower per scenario.

Ma et al., Modeling Task Relationships in Multi-task Learning with Multi-gate Mixture-of-Experts (KDD 2018),
with each scenario as a task, as SAML compares it (docs/models.md#mmoe):

    f_e(x) = Expert_e(x),               e = 1..E       (2-layer MLP 128-64, shared)
    g^t(x) = softmax(W_t^T x) ∈ R^E                    (gate of scenario t)
    logit  = Tower_t( Σ_e g^t_e(x) f_e(x) ),  t = t(x)

Each gate and tower runs on its own scenario's rows only, so it is trained by those samples alone.
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
from mscbench.models.blocks.routing import route_by_scenario
from mscbench.models.cel import EmbeddingSettings
from mscbench.space import MLP_WIDTHS_2, IntRange, tunable


@dataclass(frozen=True)
class MMoEConfig(EmbeddingSettings):
    """Hyperparameters of `mmoe` (defaults: SAML's public setting)."""

    embedding_dim: int = 12  # width of every field embedding (SAML d_g)
    num_experts: int = tunable(4, IntRange(2, 8))  # E (not stated by SAML; Scenario-Wise-Rec uses one per scenario)
    expert: tuple[int, ...] = tunable((128, 64), MLP_WIDTHS_2)  # expert MLP widths (SAML: two-layer MLPs 128-64)
    tower: tuple[int, ...] = ()  # per-scenario tower widths before its output unit (SAML's: Linear(64 -> 1))
    dropout: float = 0.0  # dropout after each hidden layer


@register("mmoe", config=MMoEConfig, multi_scenario=True,
          description="shared experts, one softmax gate and one tower per scenario",
          paper="Ma et al., Modeling Task Relationships in Multi-task Learning with Multi-gate "
                "Mixture-of-Experts (KDD)", year=2018)
class MMoE(nn.Module):
    def __init__(self, manifest: Manifest, config: MMoEConfig):
        super().__init__()
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim)
        width = self.embedding.flat_dim
        self.experts = nn.ModuleList(MLP(width, config.expert, config.dropout)
                                     for _ in range(config.num_experts))
        self.gates = nn.ModuleList(
            nn.Sequential(nn.Linear(width, config.num_experts, bias=False), nn.Softmax(dim=1))
            for _ in range(manifest.num_scenarios)
        )
        expert_dim = self.experts[0].output_dim
        self.towers = nn.ModuleList(
            MLP(expert_dim, config.tower, config.dropout, output_dim=1) for _ in range(manifest.num_scenarios)
        )

    def forward(self, batch: Batch) -> ModelOutput:
        x = self.embedding.flat(batch)  # [B, input_dim]
        experts = torch.stack([expert(x) for expert in self.experts], dim=1)  # [B, E, d]
        gate = route_by_scenario(self.gates, x, batch.scenario)  # [B, E]  g^{t(x)}(x)
        mixture = (gate.unsqueeze(2) * experts).sum(dim=1)  # [B, d]
        logit = route_by_scenario(self.towers, mixture, batch.scenario)  # [B, 1]
        return ModelOutput(logit.squeeze(1), extras={"gate": gate})

    def scenario_parameters(self, scenario: int) -> list[nn.Parameter]:
        return [*self.gates[scenario].parameters(), *self.towers[scenario].parameters()]
