"""BST (Behavior Sequence Transformer): one transformer block over the behaviours and the target item.

SAML's base model (docs/models.md#bst), in SAML's public setting (embedding 12, 4 heads, MLP 128-64, ReLU).
Item vectors concatenate the fields a sequence shares with the target (e.g. item_id ⊕ category):

    E     = [v_1; ...; v_L; v_target] + P           P = time-gap position embedding (target: bucket 0)
    S     = MH(E)                                            SAML eq. 1-2, padded keys masked
    S'    = LayerNorm(E + Dropout(S))
    F     = LayerNorm(S' + Dropout(LeakyReLU(S' W_1 + b_1) W_2 + b_2))
    logit = w^T MLP(flatten(F) ⊕ ⊕_{other f} e_f ⊕ e_scenario ⊕ z) + b

"Other" fields are those no sequence targets (the targets are already position L+1 of E).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import FeatureEmbedding, item_vectors
from mscbench.models.blocks.mlp import MLP
from mscbench.models.blocks.sequence import (
    TimeGapEmbedding,
    TransformerBlock,
    pool_sequence,
    pooled_width,
    with_target_mask,
)
from mscbench.models.cel import EmbeddingSettings


@dataclass(frozen=True)
class BSTConfig(EmbeddingSettings):
    """Hyperparameters of `bst` (defaults: SAML's public setting; BST paper: 8 heads, MLP 1024-512-256)."""

    embedding_dim: int = 12  # width of every field embedding
    num_heads: int = 4  # attention heads; the item vector width must be divisible by it
    dropout: float = 0.2  # dropout inside the transformer block (BST default)
    seq_pooling: Literal["flatten", "target", "mean"] = "flatten"  # how the L+1 outputs reach the MLP
    hidden: tuple[int, ...] = (128, 64)  # MLP layer widths
    mlp_dropout: float = 0.0  # dropout after each MLP hidden layer


@register("bst", config=BSTConfig, needs_sequence=True,
          description="transformer block over the behaviours and the target item (SAML's base model)",
          paper="Chen et al., Behavior Sequence Transformer for E-commerce Recommendation in Alibaba "
                "(DLP-KDD)",
          year=2019)
class BST(nn.Module):
    def __init__(self, manifest: Manifest, config: BSTConfig):
        super().__init__()
        self.config = config
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim, with_scenario=True)
        targets = [s.target for s in manifest.sequences if s.target]
        self.other_fields = [i for i, f in enumerate(manifest.sparse) if f.name not in targets]
        self.other_fields.append(len(manifest.sparse))  # the scenario field
        item_dim = len(targets) * config.embedding_dim
        self.position = TimeGapEmbedding(item_dim)
        self.block = TransformerBlock(item_dim, config.num_heads, config.dropout)
        width = (pooled_width(manifest.sequence_length + 1, item_dim, config.seq_pooling)
                 + len(self.other_fields) * config.embedding_dim + len(manifest.dense))
        self.mlp = MLP(width, config.hidden, config.mlp_dropout, output_dim=1)

    def forward(self, batch: Batch) -> ModelOutput:
        fields = self.embedding.fields(batch)  # [B, F+1, d]
        target, behaviours = item_vectors(self.embedding, fields, self.embedding.sequence(batch))
        items = torch.cat([behaviours, target.unsqueeze(1)], dim=1)  # [B, L+1, dv]
        mask = with_target_mask(batch)  # [B, L+1]
        outputs = self.block(items + self.position(batch.seq_gap), mask)  # [B, L+1, dv]   F
        x = torch.cat([pool_sequence(outputs, mask, self.config.seq_pooling),
                       fields[:, self.other_fields].flatten(1), batch.dense], dim=1)
        return ModelOutput(self.mlp(x).squeeze(1))  # [B]
