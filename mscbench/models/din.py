"""DIN (Deep Interest Network): the user's behaviours weighted by their relevance to the target item.

docs/models.md#din, with ReLU everywhere and main MLP 128-64 (SAML's setting). Item vectors concatenate the
fields a sequence shares with the target (e.g. item_id ⊕ category):

    a_i   = FFN([e_i ⊕ e_a ⊕ (e_i - e_a) ⊕ (e_i ⊙ e_a)]), FFN 80-40-1  (paper eq. 3, activation unit)
    v_U   = Σ_{i present} a_i · e_i                                       (no softmax; padding masked)
    logit = w^T MLP(v_U ⊕ e_a ⊕ ⊕_{other f} e_f ⊕ e_scenario ⊕ z) + b

Sequences without a target field (e.g. a behaviour type) have no item vector and are not used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import FeatureEmbedding, item_vectors
from mscbench.models.blocks.mlp import MLP
from mscbench.models.cel import EmbeddingSettings


@dataclass(frozen=True)
class DINConfig(EmbeddingSettings):
    """Hyperparameters of `din` (defaults: SAML's public setting; the paper: MLP 200-80 with Dice)."""

    embedding_dim: int = 12  # width of every field embedding
    attention_hidden: tuple[int, ...] = (80, 40)  # activation-unit FFN widths
    hidden: tuple[int, ...] = (128, 64)  # main MLP layer widths
    dropout: float = 0.0  # dropout after each main hidden layer


class ActivationUnit(nn.Module):
    """DIN's local activation unit: one unnormalised weight per behaviour, given the target item.

        a_i = FFN([e_i ⊕ e_a ⊕ (e_i - e_a) ⊕ (e_i ⊙ e_a)])   (no softmax: the sum keeps the intensity)

    The FFN's first layer W = [W_1 | W_2 | W_3 | W_4] is applied as the same linear map regrouped,
    W_1 e_i + W_2 e_a + W_3 (e_i - e_a) + W_4 (e_i ⊙ e_a) = [W_1 + W_3 | W_4] [e_i ⊕ e_i ⊙ e_a] + (W_2 - W_3) e_a,
    so that per behaviour it reads 2d inputs instead of 4d and the target's part is computed once per row.
    Padded positions get exactly zero weight, whatever their embedding holds.
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (80, 40), activation: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.ffn = MLP(4 * dim, hidden, activation=activation, output_dim=1)

    def forward(self, behaviours: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`behaviours` [B, L, d], `target` [B, d], `mask` [B, L] (True = present) -> weights [B, L]."""
        first, rest = self.ffn.layers[0], self.ffn.layers[1:]
        w_behaviour, w_target, w_difference, w_product = first.weight.chunk(4, dim=1)  # [h, d] each
        per_behaviour = torch.cat([behaviours, behaviours * target.unsqueeze(1)], -1)  # [B, L, 2d]
        hidden = per_behaviour @ torch.cat([w_behaviour + w_difference, w_product], 1).T  # [B, L, h]
        hidden = hidden + nn.functional.linear(target, w_target - w_difference, first.bias).unsqueeze(1)
        weights = rest(hidden).squeeze(-1)  # [B, L]
        return torch.where(mask, weights, torch.zeros_like(weights))


@register("din", config=DINConfig, needs_sequence=True,
          description="target-aware attention (activation unit) over the behaviour sequence",
          paper="Zhou et al., Deep Interest Network for Click-Through Rate Prediction (KDD)", year=2018)
class DIN(nn.Module):
    def __init__(self, manifest: Manifest, config: DINConfig):
        super().__init__()
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim, with_scenario=True)
        targets = {s.target for s in manifest.sequences if s.target}
        other_fields = [i for i, f in enumerate(manifest.sparse) if f.name not in targets] + [len(manifest.sparse)]
        self.register_buffer("other_fields", torch.tensor(other_fields), persistent=False)  # and the scenario
        item_dim = len([s for s in manifest.sequences if s.target]) * config.embedding_dim
        self.attention = ActivationUnit(item_dim, config.attention_hidden)
        width = 2 * item_dim + len(self.other_fields) * config.embedding_dim + len(manifest.dense)
        self.mlp = MLP(width, config.hidden, config.dropout, output_dim=1)

    def forward(self, batch: Batch) -> ModelOutput:
        fields = self.embedding.fields(batch)  # [B, F+1, d]
        sequences = self.embedding.sequence(batch)  # [B, S, L, d]
        target, behaviours = item_vectors(self.embedding, fields, sequences)  # [B, dv], [B, L, dv]
        weights = self.attention(behaviours, target, batch.seq_mask)  # [B, L]   activation unit
        interest = (weights.unsqueeze(2) * behaviours).sum(dim=1)  # [B, dv]   v_U
        x = torch.cat([interest, target, fields.index_select(1, self.other_fields).flatten(1), batch.dense], dim=1)
        return ModelOutput(self.mlp(x).squeeze(1), extras={"attention": weights})
