"""M3oE: shared, scenario (domain) and task experts over a STAR bottom, fused at two learned levels.

Zhang et al., M3oE: Multi-Domain Multi-Task Mixture-of-Experts Recommendation Framework (SIGIR 2024),
docs/models.md#m3oe [reconstructed from the authors' code, high]. With x = ⊕_f e_f ⊕ z, d = the sample's
domain (scenario), N domains, M shared experts and one task (mscbench has one label):

    (2)  u = x (W_d ⊙ W_0) + b_d + b_0,   h = LNReLU(u W_1) + LNReLU(x W_skip)          STAR-style bottom
    (3)  S_m(h), m = 1..M;   D_j(h), j = 1..N;   T(h)                                   experts
    (4)  g_d = softmax(W_g,d sg(h)) ∈ R^M                                     gate: stop-gradient input
    (5)  D̃_d = β D_d + (1 - β)/(N - 1) Σ_{j≠d} D_j,    β = σ(θ_bal)                     level 1: balance
    (6)  f_d = Σ_m g_{d,m} S_m + γ_D D̃_d + γ_T T,    γ_D = σ(θ_D), γ_T = σ(θ_T)           level 2: expert mix
    (7)  logit = Tower_d(f_d),   Tower_d = Linear -> LayerNorm -> ReLU -> Linear
    loss = Σ_d mean_{i ∈ d} BCE_i        (the authors' trainer: one mean per domain, summed)

LNReLU = Linear -> LayerNorm -> ReLU, also inside every expert. The θ are the "AutoML" architecture weights,
trained jointly with the network, as in the published runs (their second optimiser never took effect).
The per-domain sum is returned as `aux_loss` = Σ_d BCE_d - BCE, so that the trainer's BCE + aux_loss is it;
`loss_balance = "batch"` keeps the plain batch mean. With one task the task-expert balance (5) is empty.
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
from mscbench.models.blocks.routing import StarLinear, route_by_scenario, rows_per_scenario
from mscbench.models.cel import EmbeddingSettings


@dataclass(frozen=True)
class M3oEConfig(EmbeddingSettings):
    """Hyperparameters of `m3oe` (defaults: the authors' MovieLens script, fcn_dims = [512, 256, 256, 64])."""

    embedding_dim: int = 16  # width of every field embedding
    star_dims: tuple[int, ...] = (512, 256)  # STAR bottom: x -> h_1 (domain ⊙ shared) -> h_2
    expert_dims: tuple[int, ...] = (64,)  # every expert's LNReLU widths after h_2
    num_shared_experts: int = 4  # M
    task_expert: bool = True  # keep the (single) task expert weighted by γ_T
    architecture_init: float = 1.0  # θ_bal, θ_D, θ_T at start (σ(1) = 0.73)
    loss_balance: Literal["per_domain", "batch"] = "per_domain"  # sum of per-domain means, or batch mean


def ln_relu(input_dim: int, widths: tuple[int, ...]) -> nn.Sequential:
    """Linear -> LayerNorm -> ReLU per width (the authors' MLP block)."""
    layers: list[nn.Module] = []
    for width in widths:
        layers += [nn.Linear(input_dim, width), nn.LayerNorm(width), nn.ReLU()]
        input_dim = width
    return nn.Sequential(*layers)


@register("m3oe", config=M3oEConfig, multi_scenario=True,
          description="shared + domain + task experts over a STAR bottom, two-level learned fusion",
          paper="Zhang et al., M3oE: Multi-Domain Multi-Task Mixture-of-Experts Recommendation Framework "
                "(SIGIR)", year=2024)
class M3oE(nn.Module):
    def __init__(self, manifest: Manifest, config: M3oEConfig):
        super().__init__()
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim)
        width, scenarios = self.embedding.flat_dim, manifest.num_scenarios
        first, second = config.star_dims
        self.star = StarLinear(width, first, scenarios)  # W_d ⊙ W_0, b_d + b_0
        self.star_mlp = ln_relu(first, (second,))
        self.skip = ln_relu(width, (second,))
        expert = config.expert_dims[-1]
        self.shared_experts = nn.ModuleList(ln_relu(second, config.expert_dims)
                                            for _ in range(config.num_shared_experts))
        self.domain_experts = nn.ModuleList(ln_relu(second, config.expert_dims) for _ in range(scenarios))
        self.task_expert = ln_relu(second, config.expert_dims) if config.task_expert else None
        self.gates = nn.ModuleList(nn.Linear(second, config.num_shared_experts) for _ in range(scenarios))
        self.towers = nn.ModuleList(nn.Sequential(ln_relu(expert, (expert,)), nn.Linear(expert, 1))
                                    for _ in range(scenarios))
        self.architecture = nn.ParameterDict({name: nn.Parameter(torch.tensor(config.architecture_init))
                                              for name in ("balance", "domain", "task")})  # θ_bal, θ_D, θ_T
        self.loss_balance = config.loss_balance

    def forward(self, batch: Batch) -> ModelOutput:
        x = self.embedding.flat(batch)  # [B, input_dim]
        scenario = batch.scenario
        star = [lambda rows, t=t: self.star(rows, t) for t in range(len(self.towers))]
        u = route_by_scenario(star, x, scenario)  # [B, h_1]
        h = self.star_mlp(u) + self.skip(x)  # [B, h_2]   (2)
        shared = torch.stack([expert(h) for expert in self.shared_experts], dim=1)  # [B, M, d_e]   (3)
        gates = torch.softmax(route_by_scenario(self.gates, h.detach(), scenario), dim=1)  # [B, M]   (4)
        fused = (gates.unsqueeze(2) * shared).sum(1) + torch.sigmoid(self.architecture["domain"]) * \
            self.balanced_domain_expert(h, scenario)  # [B, d_e]
        if self.task_expert is not None:
            fused = fused + torch.sigmoid(self.architecture["task"]) * self.task_expert(h)  # (6)
        logit = route_by_scenario(self.towers, fused, scenario).squeeze(1)  # [B]   (7)
        return ModelOutput(logit, self.domain_balanced_loss(logit, batch), {"gate": gates.detach()})

    def balanced_domain_expert(self, h: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        """D̃_d of eq. 5 for each row's domain d: every domain expert runs on every row, by design."""
        experts = torch.stack([expert(h) for expert in self.domain_experts], dim=1)  # [B, N, d_e]
        own = experts[torch.arange(len(h)), scenario]  # [B, d_e]  D_d
        count = experts.shape[1]
        if count == 1:
            return own
        others = (experts.sum(1) - own) / (count - 1)  # [B, d_e]
        balance = torch.sigmoid(self.architecture["balance"])  # β
        return balance * own + (1 - balance) * others

    def domain_balanced_loss(self, logit: torch.Tensor, batch: Batch) -> torch.Tensor | None:
        """Σ_d BCE_d - BCE: added to the trainer's batch BCE it gives the authors' per-domain sum."""
        if self.loss_balance == "batch":
            return None
        losses = nn.functional.binary_cross_entropy_with_logits(logit, batch.label, reduction="none")  # [B]
        scenarios = len(self.towers)
        sums = losses.new_zeros(scenarios).index_add(0, batch.scenario, losses)  # [N]
        counts = rows_per_scenario(batch.scenario, scenarios)  # [N]
        per_domain = (sums / counts.clamp_min(1)).sum()
        return per_domain - losses.mean()

    def scenario_parameters(self, scenario: int) -> list[nn.Parameter]:
        """Domain d's STAR weights, gate and tower. The domain experts are cross-domain by design (eq. 5
        sends (1 - β)/(N - 1) of every other domain's traffic to D_d), so they are not declared."""
        return [self.star.scenario_weight[scenario], self.star.scenario_bias[scenario],
                *self.gates[scenario].parameters(), *self.towers[scenario].parameters()]
