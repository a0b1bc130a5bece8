"""SAR-Net: scenario- and item-aware attention over behaviours, a scenario-specific transform, and
scenario-specific plus shared experts fused by a scenario gate.

Shen et al., SAR-Net: A Scenario-Aware Ranking Network for Personalized Fair Recommendation in Hundreds of
Travel Scenarios (CIKM 2021), docs/models.md#sarnet [component order from the abstract; equations
reconstructed, medium]. v = target item vector, H [L, d_i] = behaviour item vectors, e_s = the scenario
embedding, t = the sample's scenario, m = the padding mask; attention over the L behaviours of one sample:

    (2) u_s = MHA(Q = e_s W_Q^s, K = H W_K^s, V = H W_V^s, m)        scenario-aware interest
    (3) u_i = MHA(Q = v W_Q^i,   K = H W_K^i, V = H W_V^i, m)        item-aware interest
    (4) x = ⊕_f e_f ⊕ e_s ⊕ u_s ⊕ u_i ⊕ z
    (5) x̃ = x ⊙ w_t + b_t                                            scenario-specific linear transform
    (6) h_k = E_k(x̃), k = 1..K_sh (shared);  h_{t,j} = E_{t,j}(x̃), j = 1..K_sp (scenario t's own)
    (7) g = softmax(W_g x̃ + c_t),   h* = Σ_k g_k h_k,   logit = w_o^T MLP_o(h*) + b_o

MHA(Q, K, V, m) = ⊕_heads softmax_L(Q K^T / sqrt(d_a / heads) + log m) V; a sample without behaviours
gets u = 0. mscbench's datasets carry no scenario per behaviour, so the scenario-aware keys are the
behaviours themselves: the current scenario asks which behaviours matter to it. The fairness coefficient
(debias towers on bias features) needs bias features no public dataset has, and is not built.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mscbench.config import ConfigError
from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import EMBEDDING_INIT_STD, FeatureEmbedding, item_vectors
from mscbench.models.blocks.mlp import MLP
from mscbench.models.blocks.routing import route_by_scenario
from mscbench.models.cel import EmbeddingSettings


@dataclass(frozen=True)
class SARNetConfig(EmbeddingSettings):
    """Hyperparameters of `sarnet` (paper values not recovered; Scenario-Wise-Rec's expert counts)."""

    embedding_dim: int = 16  # width of every field embedding and of the scenario embedding e_s
    attention_dim: int = 32  # d_a: width of Q, K, V and of each interest vector u
    num_heads: int = 4  # attention heads
    shared_experts: int = 8  # K_sh
    specific_experts: int = 2  # K_sp per scenario
    expert_hidden: tuple[int, ...] = (128, 64)  # each expert's MLP widths
    head_hidden: tuple[int, ...] = (32,)  # MLP_o widths (then one output unit)
    dropout: float = 0.1  # dropout after each hidden layer of experts and head


class TargetAttention(nn.Module):
    """Multi-head attention of one query over a sample's L behaviours (never across the batch)."""

    def __init__(self, query_dim: int, key_dim: int, value_dim: int, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"model sarnet: attention_dim {dim} is not divisible by num_heads={num_heads}")
        self.query = nn.Linear(query_dim, dim, bias=False)  # W_Q
        self.key = nn.Linear(key_dim, dim, bias=False)  # W_K
        self.value = nn.Linear(value_dim, dim, bias=False)  # W_V
        self.num_heads = num_heads

    def forward(self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """`query` [B, d_q], `keys`/`values` [B, L, d], `mask` [B, L] (True = present) -> [B, d_a]."""
        batch, length, _ = keys.shape
        q = self.query(query).view(batch, self.num_heads, 1, -1)  # [B, h, 1, d_k]
        k, v = (projection(x).view(batch, length, self.num_heads, -1).transpose(1, 2)
                for projection, x in ((self.key, keys), (self.value, values)))  # [B, h, L, d_k]
        present = mask.any(1, keepdim=True)  # [B, 1]
        attend = (mask | ~present)[:, None, None, :]  # an empty history attends to padding, then is zeroed
        heads = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=attend)  # [B, h, 1, d_k]
        return heads.reshape(batch, -1) * present.to(heads.dtype)  # [B, d_a]


@register("sarnet", config=SARNetConfig, needs_sequence=True, multi_scenario=True,
          description="scenario/item-aware behaviour attention, scenario transform, own + shared experts",
          paper="Shen et al., SAR-Net: A Scenario-Aware Ranking Network for Personalized Fair Recommendation "
                "in Hundreds of Travel Scenarios (CIKM)", year=2021)
class SARNet(nn.Module):
    def __init__(self, manifest: Manifest, config: SARNetConfig):
        super().__init__()
        d, scenarios = config.embedding_dim, manifest.num_scenarios
        self.embedding = FeatureEmbedding(manifest, d)
        self.scenario_embedding = nn.Embedding(scenarios, d)  # e_s
        nn.init.normal_(self.scenario_embedding.weight, std=EMBEDDING_INIT_STD)
        item = d * sum(field is not None for field in self.embedding.target_fields)  # d_i
        self.scenario_attention = TargetAttention(d, item, item, config.attention_dim, config.num_heads)
        self.item_attention = TargetAttention(item, item, item, config.attention_dim, config.num_heads)
        width = self.embedding.flat_dim + d + 2 * config.attention_dim  # D_x
        self.transform_scale = nn.Parameter(torch.ones(scenarios, width))  # w_t (identity at start)
        self.transform_shift = nn.Parameter(torch.zeros(scenarios, width))  # b_t
        self.shared_experts = nn.ModuleList(MLP(width, config.expert_hidden, config.dropout)
                                            for _ in range(config.shared_experts))
        self.specific_experts = nn.ModuleList(
            nn.ModuleList(MLP(width, config.expert_hidden, config.dropout)
                          for _ in range(config.specific_experts))
            for _ in range(scenarios)
        )
        self.gate = nn.Linear(width, config.shared_experts + config.specific_experts)  # W_g
        self.gate_bias = nn.Parameter(torch.zeros(scenarios, config.shared_experts + config.specific_experts))
        self.head = MLP(config.expert_hidden[-1], config.head_hidden, config.dropout, output_dim=1)

    def forward(self, batch: Batch) -> ModelOutput:
        fields = self.embedding.pooled_fields(batch)  # [B, F+S, d]
        target, behaviours = item_vectors(self.embedding, fields, self.embedding.sequence(batch))  # v, H
        scenario = self.scenario_embedding(batch.scenario)  # [B, d]  e_s
        mask = batch.seq_mask  # [B, L]
        interest_scenario = self.scenario_attention(scenario, behaviours, behaviours, mask)  # [B, d_a]  (2)
        interest_item = self.item_attention(target, behaviours, behaviours, mask)  # [B, d_a]  (3)
        x = torch.cat([fields.flatten(1), batch.dense, scenario, interest_scenario, interest_item], 1)  # (4)
        # rows picked by index_select: its backward adds in a fixed order, where advanced indexing's
        # (index_put_ with accumulate) adds in whatever order the CPU threads reach the rows
        scale = self.transform_scale.index_select(0, batch.scenario)  # [B, D_x]  w_t
        shift = self.transform_shift.index_select(0, batch.scenario)  # [B, D_x]  b_t
        x = x * scale + shift  # [B, D_x]  (5)
        shared = torch.stack([expert(x) for expert in self.shared_experts], dim=1)  # [B, K_sh, d_e]  (6)
        specific = route_by_scenario(
            [lambda rows, experts=experts: torch.stack([e(rows) for e in experts], 1).flatten(1)
             for experts in self.specific_experts], x, batch.scenario,
        ).view(len(x), -1, shared.shape[2])  # [B, K_sp, d_e]
        gate = torch.softmax(self.gate(x) + self.gate_bias.index_select(0, batch.scenario), dim=1)  # [B, K_sh + K_sp]  (7)
        mixed = (gate.unsqueeze(2) * torch.cat([shared, specific], dim=1)).sum(1)  # [B, d_e]  h*
        return ModelOutput(self.head(mixed).squeeze(1), extras={"gate": gate.detach()})

    def scenario_parameters(self, scenario: int) -> list[nn.Parameter | tuple[nn.Parameter, int]]:
        """Scenario t's experts, and its rows of w_t, b_t, c_t and e_s."""
        rows = [self.transform_scale, self.transform_shift, self.gate_bias, self.scenario_embedding.weight]
        return [*self.specific_experts[scenario].parameters(), *((p, scenario) for p in rows)]
