"""DUPN (Deep User Perception Network): one user representation, learned from the behaviour sequence,
shared by every scenario; each scenario has its own head on top of it.

docs/models.md#dupn. Behaviour i is <item_i, property_i>: e_i = its item vector (the sequences that share a
table with a target field), p_i = its time-gap bucket embedding ⊕ the sequences with no target field
(behaviour properties such as a behaviour type). With q the target item vector, u the user-profile
fields and t the scenario:

    gates:      [ι_i, φ_i, o_i] = σ(W_g [e_i ⊕ p_i] + U_g h_{i-1} + b_g)   (property-gated LSTM:
    candidate:  ĉ_i = tanh(W_c e_i + U_c h_{i-1} + b_c)                     the property enters the
    state:      c_i = φ_i ⊙ c_{i-1} + ι_i ⊙ ĉ_i,   h_i = o_i ⊙ tanh(c_i)    gates, not the candidate)
    attention:  a_i = softmax_{i present}( MLP(h_i ⊕ p_i ⊕ q ⊕ u) ),   r = Σ_i a_i h_i
    user:       r ⊕ u                                   (shared across scenarios: no scenario input)
    logit:      Head_t(r ⊕ u ⊕ ⊕_{item, context f} e_f ⊕ z)                  (one head per scenario)

Padded positions neither update the LSTM state nor receive attention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import FeatureEmbedding, item_vectors
from mscbench.models.blocks.mlp import MLP
from mscbench.models.blocks.routing import route_by_scenario
from mscbench.models.blocks.sequence import TimeGapEmbedding
from mscbench.models.cel import EmbeddingSettings


@dataclass(frozen=True)
class DUPNConfig(EmbeddingSettings):
    """Hyperparameters of `dupn` (the paper's sizes were not recovered; SAML's public setting elsewhere)."""

    embedding_dim: int = 12  # width of every field, sequence and time-gap embedding
    lstm_hidden: int = 32  # width of the LSTM state h_i
    attention_hidden: tuple[int, ...] = (64,)  # attention-net MLP widths (then one score)
    hidden: tuple[int, ...] = (128, 64)  # per-scenario head widths (then one output unit)
    dropout: float = 0.0  # dropout after each head hidden layer


class PropertyGatedLSTM(nn.Module):
    """An LSTM whose gates read the behaviour's property as well as its item; the candidate reads the item."""

    def __init__(self, item_dim: int, property_dim: int, hidden: int):
        super().__init__()
        self.gate_input = nn.Linear(item_dim + property_dim, 3 * hidden)
        self.candidate_input = nn.Linear(item_dim, hidden)
        self.recurrent = nn.Linear(hidden, 4 * hidden, bias=False)
        self.hidden = hidden

    def forward(self, items: torch.Tensor, properties: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`items` [B, L, di], `properties` [B, L, dp], `mask` [B, L] -> hidden states [B, L, H]."""
        inputs = torch.cat([  # every step's input projections at once; only the recurrence loops
            self.gate_input(torch.cat([items, properties], dim=-1)),  # [B, L, 3H]
            self.candidate_input(items),  # [B, L, H]
        ], dim=-1)
        h = c = items.new_zeros(items.shape[0], self.hidden)  # [B, H]
        states = []
        for step in range(items.shape[1]):
            pre = inputs[:, step] + self.recurrent(h)  # [B, 4H]
            input_gate, forget_gate, output_gate = torch.sigmoid(pre[:, :3 * self.hidden]).chunk(3, dim=1)
            candidate = torch.tanh(pre[:, 3 * self.hidden:])  # [B, H]
            new_c = forget_gate * c + input_gate * candidate
            new_h = output_gate * torch.tanh(new_c)
            present = mask[:, step].unsqueeze(1)  # [B, 1]: padding leaves the state as it was
            c, h = torch.where(present, new_c, c), torch.where(present, new_h, h)
            states.append(h)
        return torch.stack(states, dim=1)  # [B, L, H]


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the present positions; a row with none gets all zeros (finite, so no NaN gradient)."""
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) * mask


@register("dupn", config=DUPNConfig, needs_sequence=True, multi_scenario=True,
          description="property-gated LSTM + attention user representation shared by per-scenario heads",
          paper="Ni et al., Perceive Your Users in Depth: Learning Universal User Representations "
                "from Multiple E-commerce Tasks (KDD)", year=2018)
class DUPN(nn.Module):
    def __init__(self, manifest: Manifest, config: DUPNConfig):
        super().__init__()
        d = config.embedding_dim
        self.embedding = FeatureEmbedding(manifest, d)
        self.gap = TimeGapEmbedding(d)
        self.user_fields = [i for i, f in enumerate(manifest.sparse) if f.side == "user"]
        self.other_fields = [i for i, f in enumerate(manifest.sparse) if f.side != "user"]
        self.property_sequences = [s for s, f in enumerate(manifest.sequences) if not f.target]
        item_dim = (len(manifest.sequences) - len(self.property_sequences)) * d
        property_dim = (1 + len(self.property_sequences)) * d
        user_dim = len(self.user_fields) * d
        self.lstm = PropertyGatedLSTM(item_dim, property_dim, config.lstm_hidden)
        self.attention = MLP(config.lstm_hidden + item_dim + property_dim + user_dim,
                             config.attention_hidden, output_dim=1)
        head_width = config.lstm_hidden + user_dim + len(self.other_fields) * d + len(manifest.dense)
        self.heads = nn.ModuleList(
            MLP(head_width, config.hidden, config.dropout, output_dim=1)
            for _ in range(manifest.num_scenarios)
        )

    def forward(self, batch: Batch) -> ModelOutput:
        fields = self.embedding.fields(batch)  # [B, F, d]
        sequences = self.embedding.sequence(batch)  # [B, S, L, d]
        query, items = item_vectors(self.embedding, fields, sequences)  # [B, di], [B, L, di]
        gaps = self.gap(batch.seq_gap)[:, :-1].unsqueeze(1)  # [B, 1, L, d] (the target's slot dropped)
        properties = torch.cat([gaps, sequences[:, self.property_sequences]], dim=1)  # [B, 1+S'', L, d]
        properties = properties.transpose(1, 2).flatten(2)  # [B, L, dp]
        profile = fields[:, self.user_fields].flatten(1)  # [B, du]
        mask = batch.seq_mask  # [B, L]
        states = self.lstm(items, properties, mask)  # [B, L, H]          property-gated LSTM
        length = states.shape[1]
        context = torch.cat([query, profile], dim=1).unsqueeze(1).expand(-1, length, -1)  # [B, L, di+du]
        scores = self.attention(torch.cat([states, properties, context], dim=-1)).squeeze(-1)  # [B, L]
        weights = masked_softmax(scores, mask)  # [B, L]                    attention net
        user = torch.cat([(weights.unsqueeze(2) * states).sum(dim=1), profile], dim=1)  # [B, H+du]  r ⊕ u
        x = torch.cat([user, fields[:, self.other_fields].flatten(1), batch.dense], dim=1)
        logit = route_by_scenario(self.heads, x, batch.scenario)  # [B, 1]  Head_t
        return ModelOutput(logit.squeeze(1), extras={"user_representation": user, "attention": weights})

    def scenario_parameters(self, scenario: int) -> list[nn.Parameter]:
        return list(self.heads[scenario].parameters())
