"""HAMUR: per-domain backbones with bottleneck adapters whose weights a shared hyper-network generates.

Li et al., HAMUR: Hyper Adapter for Multi-Domain Recommendation (CIKM 2023), docs/models.md#hamur
[structure reconstructed from the author's code, high; per-domain ownership medium]. With x = ⊕_f e_f ⊕ z
and d = the sample's domain (scenario):

    (1) h = MLP_d(x)                                  the domain's backbone up to an adapter position, [m]
    (2) M(x) = reshape_{k×k}(MLP_hyper(x))            shared hyper-network, per instance, last layer linear
    (3) W_down(x) = U_1 M(x) V_1  [m×r],   W_up(x) = U_2 M(x) V_2  [r×m]       (U, V of domain d; low rank)
    (4) a = σ(h W_down(x) + b_1),   a' = a W_up(x) + b_2,   h <- h + DomainNorm_d(a')     adapter cell
    (5) logit = w_d^T h_L + c_d                       after the last backbone layer

(3) is computed as ((h U_1) M(x)) V_1, so no [m×r] matrix is ever formed per sample. DomainNorm_d
normalises with the statistics of domain d's rows in training and its running statistics in evaluation
(STAR's partitioned normalisation), so a prediction never depends on its batch-mates.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
from torch import nn

from mscbench.config import ConfigError
from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import FeatureEmbedding
from mscbench.models.blocks.mlp import MLP
from mscbench.models.blocks.routing import PartitionedNorm, route_by_scenario
from mscbench.models.cel import EmbeddingSettings


@dataclass(frozen=True)
class HAMURConfig(EmbeddingSettings):
    """Hyperparameters of `hamur` (defaults: the author's HamurSmall, Amazon/Douban scripts)."""

    embedding_dim: int = 16  # width of every field embedding
    backbone: tuple[int, ...] = (256, 128)  # each domain's backbone widths (then one output unit)
    adapter_after: tuple[int, ...] = (2,)  # backbone layers (1-based) followed by an adapter (Large: 6, 7)
    hyper_hidden: tuple[int, ...] = (64,)  # hyper-network widths (then a linear layer to k²)
    hyper_rank: int = 35  # k: M(x) is k×k (Large: 65)
    bottleneck: int = 32  # r: the adapter's bottleneck width
    dropout: float = 0.0  # dropout after each backbone layer


class Adapter(nn.Module):
    """One domain's adapter cell (eq. 3-4, without the norm): U_1, V_1, U_2, V_2, b_1, b_2."""

    def __init__(self, width: int, rank: int, bottleneck: int):
        super().__init__()
        self.down_left = self.factor(width, rank)  # U_1
        self.down_right = self.factor(rank, bottleneck)  # V_1
        self.up_left = self.factor(bottleneck, rank)  # U_2
        self.up_right = self.factor(rank, width)  # V_2
        self.down_bias = nn.Parameter(torch.zeros(bottleneck))  # b_1
        self.up_bias = nn.Parameter(torch.zeros(width))  # b_2

    @staticmethod
    def factor(fan_in: int, fan_out: int) -> nn.Parameter:
        return nn.Parameter(torch.randn(fan_in, fan_out) * fan_in ** -0.5)

    def forward(self, h: torch.Tensor, core: torch.Tensor) -> torch.Tensor:
        """`h` [n, m], `core` M(x) [n, k, k] -> a' [n, m]."""
        down = torch.bmm((h @ self.down_left).unsqueeze(1), core).squeeze(1) @ self.down_right  # [n, r]
        a = torch.sigmoid(down + self.down_bias)  # [n, r]
        up = torch.bmm((a @ self.up_left).unsqueeze(1), core).squeeze(1) @ self.up_right  # [n, m]
        return up + self.up_bias


class DomainTower(nn.Module):
    """Domain d's backbone with its adapters, run on domain d's rows only."""

    def __init__(self, input_dim: int, config: HAMURConfig, scenario: int):
        super().__init__()
        widths = [input_dim, *config.backbone]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.adapters = nn.ModuleDict({str(l): Adapter(widths[l], config.hyper_rank, config.bottleneck)
                                       for l in config.adapter_after})
        self.output = nn.Linear(widths[-1], 1)
        self.dropout = nn.Dropout(config.dropout)
        self.scenario = scenario
        self.rank = config.hyper_rank

    def forward(self, rows: torch.Tensor, norms: nn.ModuleDict) -> torch.Tensor:
        """`rows` [n, input_dim + k²]: x ⊕ vec(M(x)) -> logit [n, 1]; `norms` the shared DomainNorms."""
        h, core = rows[:, : -self.rank ** 2], rows[:, -self.rank ** 2:].view(-1, self.rank, self.rank)
        domain = torch.full((len(rows),), self.scenario, dtype=torch.long, device=rows.device)
        for l, layer in enumerate(self.layers, start=1):
            h = self.dropout(torch.relu(layer(h)))  # [n, m_l]   (1)
            if str(l) in self.adapters:
                h = h + norms[str(l)](self.adapters[str(l)](h, core), domain)  # (4)
        return self.output(h)  # [n, 1]   (5)


@register("hamur", config=HAMURConfig, multi_scenario=True,
          description="per-domain towers, bottleneck adapters generated per sample by a shared hyper-network",
          paper="Li et al., HAMUR: Hyper Adapter for Multi-Domain Recommendation (CIKM)", year=2023)
class HAMUR(nn.Module):
    def __init__(self, manifest: Manifest, config: HAMURConfig):
        super().__init__()
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim)
        width, scenarios = self.embedding.flat_dim, manifest.num_scenarios
        self.hyper = MLP(width, config.hyper_hidden, output_dim=config.hyper_rank ** 2)  # (2)
        if not set(config.adapter_after) <= set(range(1, len(config.backbone) + 1)):
            raise ConfigError(f"model hamur: adapter_after {list(config.adapter_after)} must name backbone "
                              f"layers 1..{len(config.backbone)}")
        widths = [width, *config.backbone]
        self.norms = nn.ModuleDict({str(l): PartitionedNorm(widths[l], scenarios)
                                    for l in config.adapter_after})
        self.towers = nn.ModuleList(DomainTower(width, config, t) for t in range(scenarios))

    def forward(self, batch: Batch) -> ModelOutput:
        x = self.embedding.flat(batch)  # [B, input_dim]
        core = self.hyper(x)  # [B, k²]   (2)
        towers = [lambda rows, tower=tower: tower(rows, self.norms) for tower in self.towers]
        logit = route_by_scenario(towers, torch.cat([x, core], dim=1), batch.scenario)  # [B, 1]
        return ModelOutput(logit.squeeze(1))

    def scenario_parameters(self, scenario: int) -> list[nn.Parameter]:
        """Domain d's backbone and adapters, and its DomainNorm scale and shift."""
        tower = self.towers[scenario]
        owned = list(tower.parameters())
        for norm in self.norms.values():
            owned += [norm.scenario_scale[scenario], norm.scenario_shift[scenario]]
        return owned
