"""APG: every backbone layer's parameters generated per sample from a condition, in low-rank form.

Yan et al., APG: Adaptive Parameter Generation Network for Click-Through Rate Prediction (NeurIPS 2022),
docs/models.md#apg. Hidden layer l of the backbone, condition z (group-wise: the scenario embedding e_t):

    S_l(z) = reshape_{k×k}(hypernet_l(z)),   W_l(z) = U_l S_l(z) V_l,   b_l(z) = hypernet_l(z)'s last d_{l+1}
    U_l = U_l,left U_l,right  (d_l×P · P×k),   V_l = V_l,left V_l,right  (k×P · P×d_{l+1})
    h_{l+1} = Dropout(ReLU( ((h_l U_l) S_l(z)) V_l + b_l(z) )),   h_0 = ⊕_f e_f ⊕ e_t ⊕ z_dense
    logit   = w_o^T h_L + b_o

Parameters per generated layer: P·(d_l + 2k + d_{l+1}) + |hypernet with k² + d_{l+1} outputs|.
The condition may also be the layer input itself (self-wise) or both (mix-wise). The only
scenario-owned parameters are the rows of e_t's table.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
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


@dataclass(frozen=True)
class APGConfig(EmbeddingSettings):
    """Hyperparameters of `apg` (defaults: FuxiCTR's APG config on MI-DPG's backbone)."""

    embedding_dim: int = 16  # width of every field embedding and of the scenario embedding e_t
    hidden: tuple[int, ...] = (128, 64, 32)  # generated hidden layers' widths (then one plain output unit)
    rank: int = 8  # k: S(z) is k×k
    overparam: int = 64  # P ≥ k: width of the over-parameterised factors of U and V
    hyper_hidden: tuple[int, ...] = (64, 32)  # hypernetwork widths (APG's "small"; "large" is 512-256)
    condition: Literal["group", "self", "mix"] = "group"  # z = e_t, the layer input, or both
    dropout: float = 0.0  # dropout after each hidden layer


class APGLinear(nn.Module):
    """APG's adaptive linear layer, parameters generated per sample from a condition z:

        S(z) = reshape_{k×k}(hypernet(z)),   W(z) = U S(z) V,   y = ((x U) S(z)) V + b(z)
        U = U_l U_r (d_in×P · P×k),  V = V_l V_r (k×P · P×d_out)       (over-parameterisation, P ≥ k)

    Multiplying left to right costs O(d_in·k + k² + k·d_out) per sample; W(z) is never formed.
    Init (an mscbench choice): each factor N(0, 1/fan_in) and the hypernetwork's output bias vec(I) ⊕ 0, so
    W starts as U V with a unit gain per factor; Xavier factors times a random S start with a gain ~1/100,
    which stalls training of a 3-layer stack.
    """

    def __init__(self, input_dim: int, output_dim: int, condition_dim: int, rank: int, overparam: int,
                 hyper_hidden: Sequence[int]):
        super().__init__()
        if rank > overparam:
            raise ValueError(f"APG needs rank k <= over-parameterisation P, got k={rank}, P={overparam}")
        self.u_left = self.factor(input_dim, overparam)
        self.u_right = self.factor(overparam, rank)
        self.v_left = self.factor(rank, overparam)
        self.v_right = self.factor(overparam, output_dim)
        self.hypernet = MLP(condition_dim, hyper_hidden, output_dim=rank * rank + output_dim)  # S(z) ⊕ b(z)
        head = self.hypernet.layers[-1]
        with torch.no_grad():
            head.bias.copy_(torch.cat([torch.eye(rank).flatten(), torch.zeros(output_dim)]))
        self.rank = rank

    @staticmethod
    def factor(fan_in: int, fan_out: int) -> nn.Parameter:
        return nn.Parameter(torch.randn(fan_in, fan_out) * fan_in ** -0.5)

    def generate(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """S(z) [B, k, k] and b(z) [B, d_out]."""
        generated = self.hypernet(condition)  # [B, k² + d_out]
        core = generated[:, : self.rank ** 2].reshape(-1, self.rank, self.rank)
        return core, generated[:, self.rank ** 2:]

    def weight(self, condition: torch.Tensor) -> torch.Tensor:
        """The per-sample weight W(z) = U S(z) V, [B, d_in, d_out] (to inspect it; forward never forms it)."""
        core, _ = self.generate(condition)
        return self.u_left @ self.u_right @ core @ (self.v_left @ self.v_right)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        core, bias = self.generate(condition)
        h = x @ (self.u_left @ self.u_right)  # [B, k]
        h = torch.bmm(h.unsqueeze(1), core).squeeze(1)  # [B, k]
        return h @ (self.v_left @ self.v_right) + bias  # [B, d_out]


@register("apg", config=APGConfig, multi_scenario=True,
          description="scenario-conditioned generated layers W(z) = U S(z) V (low rank, over-parameterised)",
          paper="Yan et al., APG: Adaptive Parameter Generation Network for Click-Through Rate Prediction "
                "(NeurIPS)", year=2022)
class APG(nn.Module):
    def __init__(self, manifest: Manifest, config: APGConfig):
        super().__init__()
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim, with_scenario=True)
        widths = [self.embedding.flat_dim, *config.hidden]
        self.layers = nn.ModuleList(
            APGLinear(a, b, self.condition_dim(config, a), config.rank, config.overparam, config.hyper_hidden)
            for a, b in itertools.pairwise(widths)
        )
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(widths[-1], 1)
        self.condition = config.condition

    @staticmethod
    def condition_dim(config: APGConfig, input_dim: int) -> int:
        return {"group": config.embedding_dim, "self": input_dim,
                "mix": config.embedding_dim + input_dim}[config.condition]

    def forward(self, batch: Batch) -> ModelOutput:
        scenario = self.embedding.scenario(batch.scenario)  # [B, d]  e_t
        h = self.embedding.flat(batch)  # [B, input_dim]  h_0
        for layer in self.layers:
            condition = {"group": scenario, "self": h, "mix": torch.cat([scenario, h], dim=1)}[self.condition]
            h = self.dropout(torch.relu(layer(h, condition)))  # [B, d_{l+1}]
        return ModelOutput(self.output(h).squeeze(1))

    def scenario_parameters(self, scenario: int) -> list[tuple[nn.Parameter, int]]:
        """Scenario t owns row t of the scenario embedding e_t (the generators are shared)."""
        return [(self.embedding.scenario.weight, scenario)]
