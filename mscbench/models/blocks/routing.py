"""Scenario-owned computation: each scenario's branch on its own rows, partitioned normalisation and the
star-topology linear layer (shared weights times scenario weights)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


def route_by_scenario(branches: Sequence[Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor,
                      scenario: torch.Tensor) -> torch.Tensor:
    """Apply `branches[t]` to the rows of scenario t only, and put the outputs back in row order.

    Each branch runs on its own samples (its cost grows with its traffic, not the batch), and its
    parameters receive gradient only from them; per-branch batch statistics see only its own rows.
    """
    counts = torch.bincount(scenario, minlength=len(branches)).tolist()  # the one host sync per call
    if max(counts) == len(x):  # one scenario in the batch: its branch takes the rows as they are
        return branches[counts.index(len(x))](x)
    order = torch.argsort(scenario, stable=True)
    pieces = torch.split(x.index_select(0, order), counts)
    outputs = [branch(piece) for branch, piece, n in zip(branches, pieces, counts) if n]
    sorted_out = torch.cat(outputs, dim=0)
    return torch.empty_like(sorted_out).index_copy(0, order, sorted_out)


class PartitionedNorm(nn.Module):
    """STAR's partitioned normalisation (docs/models.md#star), with per-scenario statistics:

        PN(x) = (γ ⊙ γ_t) ⊙ (x - μ_t) / sqrt(σ²_t + ε) + (β + β_t),     t = the row's scenario

    Training: μ_t, σ²_t are the moments of the batch's scenario-t rows (never of the whole batch); a
    scenario with fewer than 2 rows uses, and leaves alone, its running statistics. Evaluation: every row
    uses its own scenario's running statistics, so a prediction never depends on its batch-mates.
    """

    def __init__(self, dim: int, num_scenarios: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.shared_scale = nn.Parameter(torch.ones(dim))  # γ
        self.shared_shift = nn.Parameter(torch.zeros(dim))  # β
        self.scenario_scale = nn.ParameterList(torch.ones(dim) for _ in range(num_scenarios))  # γ_t
        self.scenario_shift = nn.ParameterList(torch.zeros(dim) for _ in range(num_scenarios))  # β_t
        self.register_buffer("running_mean", torch.zeros(num_scenarios, dim))
        self.register_buffer("running_var", torch.ones(num_scenarios, dim))
        self.momentum = momentum  # weight of the current batch in the running statistics
        self.eps = eps

    def forward(self, x: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean, var = self.batch_statistics(x, scenario)  # [N, d] each
        else:
            mean, var = self.running_mean, self.running_var
        # rows picked by index_select: its backward adds in a fixed order, where advanced indexing's
        # (index_put_ with accumulate) adds in whatever order the CPU threads reach the rows
        scale = self.shared_scale * torch.stack(list(self.scenario_scale)).index_select(0, scenario)  # [B, d]
        shift = self.shared_shift + torch.stack(list(self.scenario_shift)).index_select(0, scenario)  # [B, d]
        mean, var = mean.index_select(0, scenario), var.index_select(0, scenario)  # [B, d] each
        return scale * (x - mean) / torch.sqrt(var + self.eps) + shift  # [B, d]

    def batch_statistics(self, x: torch.Tensor, scenario: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, d] mean and (biased) variance of each scenario's rows; updates the running statistics."""
        counts = torch.bincount(scenario, minlength=len(self.running_mean)).to(x.dtype)[:, None]  # [N, 1]
        mean = torch.zeros_like(self.running_mean).index_add(0, scenario, x) / counts.clamp_min(1)  # [N, d]
        squares = torch.zeros_like(self.running_var).index_add(0, scenario,
                                                               (x - mean.index_select(0, scenario)).square())
        enough = counts >= 2  # [N, 1]: a single row has no variance
        with torch.no_grad():
            unbiased = squares / (counts - 1).clamp_min(1)
            self.running_mean.copy_(torch.where(enough, self.running_mean.lerp(mean, self.momentum),
                                                self.running_mean))
            self.running_var.copy_(torch.where(enough, self.running_var.lerp(unbiased, self.momentum),
                                               self.running_var))
        variance = squares / counts.clamp_min(1)
        return torch.where(enough, mean, self.running_mean), torch.where(enough, variance, self.running_var)


class StarLinear(nn.Module):
    """STAR's star-topology linear layer (docs/models.md#star): scenario t computes with

        W*_t = W ⊙ W_t,   b*_t = b + b_t

    `W_t = 1, b_t = 0` at init, so every scenario starts as the shared layer (a product of two random
    matrices would start badly scaled). Call it on one scenario's rows at a time (`route_by_scenario`),
    so that W_t and b_t learn from scenario t's samples only.
    """

    def __init__(self, input_dim: int, output_dim: int, num_scenarios: int):
        super().__init__()
        self.shared = nn.Linear(input_dim, output_dim)  # W, b
        self.scenario_weight = nn.ParameterList(torch.ones(output_dim, input_dim)
                                                for _ in range(num_scenarios))
        self.scenario_bias = nn.ParameterList(torch.zeros(output_dim) for _ in range(num_scenarios))

    def weight(self, scenario: int) -> torch.Tensor:
        return self.shared.weight * self.scenario_weight[scenario]  # [out, in]

    def bias(self, scenario: int) -> torch.Tensor:
        return self.shared.bias + self.scenario_bias[scenario]  # [out]

    def forward(self, x: torch.Tensor, scenario: int) -> torch.Tensor:
        return nn.functional.linear(x, self.weight(scenario), self.bias(scenario))  # [n, out]
