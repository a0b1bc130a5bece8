"""Scenario-owned computation: each scenario's branch on its own rows, partitioned normalisation and the
star-topology linear layer (shared weights times scenario weights)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


def rows_per_scenario(scenario: torch.Tensor, num_scenarios: int) -> torch.Tensor:
    """[N] int64: how many rows each scenario has. bincount's numbers, but in a tensor of fixed shape
    (bincount's grows with the largest id), which a compiled graph can hold without a break."""
    ones = torch.ones_like(scenario, dtype=torch.long)
    return torch.zeros(num_scenarios, dtype=torch.long, device=scenario.device).index_add(0, scenario, ones)


def route_by_scenario(branches: Sequence[Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor,
                      scenario: torch.Tensor) -> torch.Tensor:
    """Apply `branches[t]` to the rows of scenario t only, and put the outputs back in row order.

    Each branch runs on its own samples (its cost grows with its traffic, not the batch), and its
    parameters receive gradient only from them; per-branch batch statistics see only its own rows.
    Compiled, a branch also runs when its scenario has no rows, so it must accept an empty input.
    """
    counts = rows_per_scenario(scenario, len(branches)).tolist()  # the one host sync per call
    if torch.compiler.is_compiling():
        # compiled with capture_scalar_outputs (trainer.compiled), the counts are symbolic sizes: one graph
        # serves every pattern of counts, but cannot branch on them, so every branch runs (on 0 rows where
        # its scenario is absent: no output rows, a zero gradient). The last count is written as the rest
        # of the batch, so that the pieces provably add up to len(x): from a sum of unknown counts Dynamo
        # cannot tell even whether the output is empty, and breaks the graph to ask.
        counts[-1] = len(x) - sum(counts[:-1])
        for n in counts:
            torch._check(n >= 0)
        running = range(len(branches))
    elif max(counts) == len(x):  # one scenario in the batch: its branch takes the rows as they are
        return branches[counts.index(len(x))](x)
    else:
        running = [t for t, n in enumerate(counts) if n]
    order = torch.argsort(scenario, stable=True)
    pieces = torch.split(x.index_select(0, order), counts)
    sorted_out = torch.cat([branches[t](pieces[t]) for t in running], dim=0)
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
        counts = rows_per_scenario(scenario, len(self.running_mean)).to(x.dtype)[:, None]  # [N, 1]
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
