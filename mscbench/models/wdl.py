"""Wide & Deep: a linear (wide) part and an MLP (deep) part whose logits are summed.

docs/models.md#wdl, in SAML's setting (wide = LR, deep = MLP 128-64, one Adam optimiser):

    logit = LR(x) + w^T MLP(⊕_f e_f ⊕ e_scenario ⊕ pool(seq) ⊕ z) + b

The wide part starts at exactly zero, so training starts from the deep logit.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import FeatureEmbedding, FeatureLinear
from mscbench.models.blocks.mlp import MLP
from mscbench.models.cel import EmbeddingSettings
from mscbench.space import MLP_WIDTHS_2, tunable


@dataclass(frozen=True)
class WideDeepConfig(EmbeddingSettings):
    """Hyperparameters of `wdl` (defaults: SAML's public setting; the paper: 32-dim, 1024-512-256)."""

    embedding_dim: int = 12  # width of every deep-part field embedding
    hidden: tuple[int, ...] = tunable((128, 64), MLP_WIDTHS_2)  # deep MLP layer widths
    dropout: float = 0.0  # dropout after each hidden layer


@register("wdl", config=WideDeepConfig, description="wide linear part + deep MLP, summed logits",
          paper="Cheng et al., Wide & Deep Learning for Recommender Systems (DLRS)", year=2016)
class WideDeep(nn.Module):
    def __init__(self, manifest: Manifest, config: WideDeepConfig):
        super().__init__()
        self.wide = FeatureLinear(manifest, with_scenario=True, zero_init=True)
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim, with_scenario=True)
        self.deep = MLP(self.embedding.flat_dim, config.hidden, config.dropout, output_dim=1)

    def forward(self, batch: Batch) -> ModelOutput:
        wide = self.wide(batch)  # [B]
        deep = self.deep(self.embedding.flat(batch)).squeeze(1)  # [B]
        return ModelOutput(wide + deep, extras={"wide_logit": wide, "deep_logit": deep})
