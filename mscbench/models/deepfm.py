"""DeepFM: a factorisation machine and an MLP sharing the field embeddings, logits summed.

docs/models.md#deepfm, fields = the sparse fields, the scenario id, each mean-pooled sequence and (by default)
each dense value z_d as the field vector v_d · z_d:

    y_FM  = b + Σ_f w_f[x_f] + w_d^T z + ½ Σ_k [ (Σ_f v_{f,k})² - Σ_f v_{f,k}² ]
    logit = y_FM + w^T MLP(⊕_f v_f ⊕ z) + b'
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import EMBEDDING_INIT_STD, FeatureEmbedding, dense_linear
from mscbench.models.blocks.mlp import MLP
from mscbench.models.cel import EmbeddingSettings
from mscbench.space import MLP_WIDTHS_2, tunable


@dataclass(frozen=True)
class DeepFMConfig(EmbeddingSettings):
    """Hyperparameters of `deepfm` (defaults: SAML's public setting; the paper: 10-dim, 400-400-400)."""

    embedding_dim: int = 12  # width of the field embeddings shared by the FM and the MLP
    hidden: tuple[int, ...] = tunable((128, 64), MLP_WIDTHS_2)  # MLP layer widths
    dropout: float = 0.0  # dropout after each hidden layer
    dense_in_fm: bool = True  # dense values also enter the FM as fields v_d · z_d (else only the MLP)


class FMInteraction(nn.Module):
    """FM second-order term `Σ_{f<f'} <v_f, v_f'>` by the sum-square trick (Rendle, ICDM 2010):

        ½ Σ_k [ (Σ_f v_{f,k})² - Σ_f v_{f,k}² ]     in O(n·d) instead of O(n²·d).
    """

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        square_of_sum = fields.sum(dim=1).square()  # [B, d]
        sum_of_squares = fields.square().sum(dim=1)  # [B, d]
        return 0.5 * (square_of_sum - sum_of_squares).sum(dim=1)  # [B]


@register("deepfm", config=DeepFMConfig, description="FM (first + second order) + MLP over shared embeddings",
          paper="Guo et al., DeepFM: A Factorization-Machine based Neural Network for CTR Prediction (IJCAI)",
          year=2017)
class DeepFM(nn.Module):
    """The first-order weight w_f[x] of an id is the last column of its embedding row, so that one lookup
    (and one pooling of each sequence) serves both terms. It is still a parameter of its own: Adam, weight
    decay and the initialisation act elementwise, so the split changes nothing but the cost."""

    def __init__(self, manifest: Manifest, config: DeepFMConfig):
        super().__init__()
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim + 1, with_scenario=True)  # [v ⊕ w]
        self.dense_linear = dense_linear(manifest)  # w_d, b
        self.dense_vectors = nn.Parameter(  # v_d per dense feature
            torch.randn(len(manifest.dense), config.embedding_dim) * EMBEDDING_INIT_STD
        ) if config.dense_in_fm else None
        self.interaction = FMInteraction()
        fields = self.embedding.num_fields + self.embedding.num_sequences
        self.mlp = MLP(fields * config.embedding_dim + len(manifest.dense), config.hidden, config.dropout,
                       output_dim=1)

    def forward(self, batch: Batch) -> ModelOutput:
        rows = self.embedding.pooled_fields(batch)  # [B, F+1+S, d+1]
        vectors, weights = rows[..., :-1], rows[..., -1]  # [B, F+1+S, d] v_f, [B, F+1+S] w_f
        first_order = weights.sum(1) + self.dense_linear(batch.dense).squeeze(1)  # [B]
        fm_fields = vectors
        if self.dense_vectors is not None:
            dense_fields = batch.dense.unsqueeze(2) * self.dense_vectors  # [B, D, d]
            fm_fields = torch.cat([vectors, dense_fields], dim=1)  # [B, F+1+S+D, d]
        fm = first_order + self.interaction(fm_fields)  # [B]
        deep = self.mlp(torch.cat([vectors.flatten(1), batch.dense], dim=1)).squeeze(1)  # [B]
        return ModelOutput(fm + deep)
