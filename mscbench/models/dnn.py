"""DNN: one MLP over every feature, the scenario id being one more field.

MI-DPG's backbone and base model (docs/models.md#dnn; Covington et al., RecSys 2016, tower style):

    logit = w^T MLP([128, 64, 32], ReLU)( ⊕_f e_f ⊕ e_scenario ⊕ pool(seq) ⊕ z ) + b
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import FeatureEmbedding
from mscbench.models.blocks.mlp import MLP
from mscbench.models.cel import EmbeddingSettings
from mscbench.space import MLP_WIDTHS_3, tunable


@dataclass(frozen=True)
class DNNConfig(EmbeddingSettings):
    """Hyperparameters of `dnn` (defaults: MI-DPG's setting)."""

    embedding_dim: int = 16  # width of every field embedding
    hidden: tuple[int, ...] = tunable((128, 64, 32), MLP_WIDTHS_3)  # MLP layer widths
    dropout: float = 0.0  # dropout after each hidden layer


@register("dnn", config=DNNConfig, description="MLP over all features, scenario id as one more field",
          paper="Covington et al., Deep Neural Networks for YouTube Recommendations (RecSys)", year=2016)
class DNN(nn.Module):
    def __init__(self, manifest: Manifest, config: DNNConfig):
        super().__init__()
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim, with_scenario=True)
        self.mlp = MLP(self.embedding.flat_dim, config.hidden, config.dropout, output_dim=1)

    def forward(self, batch: Batch) -> ModelOutput:
        x = self.embedding.flat(batch)  # [B, input_dim]
        return ModelOutput(self.mlp(x).squeeze(1))  # [B]
