"""PLE: progressive layered extraction with shared and scenario-specific experts, one gate per scenario.

Tang et al., Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) Model for Personalized
Recommendations (RecSys 2020), with each scenario as a task (docs/models.md#ple). Level q = 1..Q of customised gate
control (CGC) has m_s specific experts E^q_{t,·} per scenario t and m_c shared experts E^q_{c,·}:

    o^q_t = Σ_e softmax(W^q_t^T in^q_t)_e · [E^q_{t,·}(in^q_t) ; E^q_{c,·}(in^q_c)]_e      (scenario t)
    o^q_c = Σ_e softmax(W^q_c^T in^q_c)_e · [E^q_{1..N,·}(in^q_·) ; E^q_{c,·}(in^q_c)]_e    (shared, q < Q)
    in^1_t = in^1_c = x,   in^{q+1}_t = o^q_t,   in^{q+1}_c = o^q_c,   logit = Tower_t(o^Q_t),  t = t(x)

The last level runs each scenario's experts, gate and tower on its own rows only. Levels below it feed the
shared gate with every scenario's specific experts, so they run every scenario on every row; there
`isolate_specific` stops the gradient through other scenarios' experts (an mscbench deviation: without it
PLE trains scenario t's experts on every scenario's samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import FeatureEmbedding
from mscbench.models.blocks.mlp import MLP
from mscbench.models.blocks.routing import route_by_scenario
from mscbench.models.cel import EmbeddingSettings
from mscbench.space import IntRange, tunable


@dataclass(frozen=True)
class PLEConfig(EmbeddingSettings):
    """Hyperparameters of `ple` (defaults: Scenario-Wise-Rec's run script; experts = MI-DPG's backbone)."""

    embedding_dim: int = 16  # width of every field embedding
    levels: int = 1  # Q extraction levels (1 = one CGC layer)
    specific_experts: int = tunable(2, IntRange(1, 4))  # m_s experts per scenario and level
    shared_experts: int = tunable(1, IntRange(1, 4))  # m_c shared experts per level
    expert: tuple[int, ...] = (128, 64, 32)  # expert MLP widths
    tower: tuple[int, ...] = (16,)  # per-scenario tower widths before its output unit
    dropout: float = 0.0  # dropout after each hidden layer
    isolate_specific: bool = True  # levels < Q: shared gates see other scenarios' experts without gradient


def mix(gate: nn.Linear, x: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Σ_e softmax(W^T x)_e · experts_e: `x` [n, d_in], `experts` [n, E, d] -> [n, d]."""
    weights = torch.softmax(gate(x), dim=1)  # [n, E]
    return (weights.unsqueeze(2) * experts).sum(dim=1)


class ScenarioExperts(nn.Module):
    """One level's specific experts of one scenario, and that scenario's gate."""

    def __init__(self, input_dim: int, config: PLEConfig):
        super().__init__()
        self.experts = nn.ModuleList(MLP(input_dim, config.expert, config.dropout)
                                     for _ in range(config.specific_experts))
        self.gate = nn.Linear(input_dim, config.specific_experts + config.shared_experts, bias=False)  # W^q_t

    def specific(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([expert(x) for expert in self.experts], dim=1)  # [n, m_s, d]

    def forward(self, x: torch.Tensor, specific: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        return mix(self.gate, x, torch.cat([specific, shared], dim=1))  # [n, d]  o^q_t


class ExtractionLevel(nn.Module):
    """One CGC level: every scenario's experts and gate, the shared experts and (below the top) their gate."""

    def __init__(self, input_dim: int, num_scenarios: int, config: PLEConfig, top: bool):
        super().__init__()
        self.scenarios = nn.ModuleList(ScenarioExperts(input_dim, config) for _ in range(num_scenarios))
        self.shared = nn.ModuleList(MLP(input_dim, config.expert, config.dropout)
                                    for _ in range(config.shared_experts))
        candidates = num_scenarios * config.specific_experts + config.shared_experts
        self.shared_gate = None if top else nn.Linear(input_dim, candidates, bias=False)  # W^q_c
        self.isolate_specific = config.isolate_specific
        self.output_dim = self.shared[0].output_dim

    def shared_experts(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([expert(x) for expert in self.shared], dim=1)  # [B, m_c, d]

    def every_scenario(self, inputs: torch.Tensor, shared_input: torch.Tensor,
                       own: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A level below the top: `inputs` [B, N, d_in] (in^q_t for every t), `own` [B, N] the row's scenario.

        Returns o^q_t for every t [B, N, d] and o^q_c [B, d].
        """
        shared = self.shared_experts(shared_input)  # [B, m_c, d]
        specific = torch.stack([cell.specific(inputs[:, t]) for t, cell in enumerate(self.scenarios)], 1)
        outputs = torch.stack([cell(inputs[:, t], specific[:, t], shared)
                               for t, cell in enumerate(self.scenarios)], dim=1)  # [B, N, d]
        if self.isolate_specific:
            specific = torch.where(own[:, :, None, None], specific, specific.detach())  # [B, N, m_s, d]
        candidates = torch.cat([specific.flatten(1, 2), shared], dim=1)  # [B, N·m_s + m_c, d]
        return outputs, mix(self.shared_gate, shared_input, candidates)


@register("ple", config=PLEConfig, multi_scenario=True,
          description="CGC/PLE: shared + scenario-specific experts, one gate and tower per scenario",
          paper="Tang et al., Progressive Layered Extraction (PLE): A Novel Multi-Task Learning (MTL) Model "
                "for Personalized Recommendations (RecSys)", year=2020)
class PLE(nn.Module):
    def __init__(self, manifest: Manifest, config: PLEConfig):
        super().__init__()
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim)
        scenarios = manifest.num_scenarios
        self.levels = nn.ModuleList()
        width = self.embedding.flat_dim
        for q in range(config.levels):
            self.levels.append(ExtractionLevel(width, scenarios, config, top=q == config.levels - 1))
            width = self.levels[-1].output_dim
        self.towers = nn.ModuleList(MLP(width, config.tower, config.dropout, output_dim=1)
                                    for _ in range(scenarios))

    def forward(self, batch: Batch) -> ModelOutput:
        x = self.embedding.flat(batch)  # [B, input_dim]
        scenarios = len(self.towers)
        own = nn.functional.one_hot(batch.scenario, scenarios).bool()  # [B, N]
        inputs, shared_input = x.unsqueeze(1).expand(-1, scenarios, -1), x  # in^1_t = in^1_c = x
        for level in self.levels[:-1]:
            inputs, shared_input = level.every_scenario(inputs, shared_input, own)  # [B, N, d], [B, d]
        own_input = inputs.take_along_dim(batch.scenario[:, None, None], 1).squeeze(1)  # [B, d_in]  in^Q_{t(x)}
        shared = self.levels[-1].shared_experts(shared_input)  # [B, m_c, d]
        packed = torch.cat([shared.flatten(1), own_input], dim=1)  # one tensor to route
        branches = [partial(self.top_and_tower, t) for t in range(scenarios)]
        return ModelOutput(route_by_scenario(branches, packed, batch.scenario).squeeze(1))

    def top_and_tower(self, scenario: int, packed: torch.Tensor) -> torch.Tensor:
        """Scenario t's top-level experts, gate and tower on its own rows: [n, m_c·d + d_in] -> [n, 1]."""
        top = self.levels[-1]
        cell = top.scenarios[scenario]
        shared_width = len(top.shared) * top.output_dim
        shared = packed[:, :shared_width].unflatten(1, (len(top.shared), top.output_dim))  # [n, m_c, d]
        x = packed[:, shared_width:]  # [n, d_in]  in^Q_t
        return self.towers[scenario](cell(x, cell.specific(x), shared))  # [n, 1]  Tower_t(o^Q_t)

    def scenario_parameters(self, scenario: int) -> list[nn.Parameter]:
        cells = [level.scenarios[scenario] for level in self.levels]
        return [*(p for cell in cells for p in cell.parameters()), *self.towers[scenario].parameters()]
