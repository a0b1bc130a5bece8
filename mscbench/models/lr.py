"""LR: logistic regression over every feature, the scenario id being one more field.

docs/models.md#lr (a 1-dim embedding per id is the weight of that id's one-hot feature):

    logit = b + Σ_f w_f[x_f] + w_scenario[t] + Σ_s mean_i w_s[x_{s,i}] + w_d^T z

Sequences enter as normalised bags of ids; each shares its weights with its target field's table.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import FeatureLinear
from mscbench.models.cel import EmbeddingSettings


@dataclass(frozen=True)
class LRConfig(EmbeddingSettings):
    """LR has no hyperparameters of its own (the optimiser and its L2 belong to the recipe)."""


@register("lr", config=LRConfig, description="logistic regression over all features and the scenario id",
          paper="Richardson et al., Predicting Clicks: Estimating the Click-Through Rate for New Ads (WWW)",
          year=2007)
class LR(nn.Module):
    def __init__(self, manifest: Manifest, config: LRConfig):
        super().__init__()
        self.linear = FeatureLinear(manifest, with_scenario=True)

    def forward(self, batch: Batch) -> ModelOutput:
        return ModelOutput(self.linear(batch))  # [B]
