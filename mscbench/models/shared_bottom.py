"""Shared-Bottom: one shared MLP, then one tower per scenario (Caruana, Multitask Learning, 1997).

docs/models.md#shared_bottom:  h = MLP_bottom(x);  logit = Tower_{t(x)}(h).
Each tower runs on its own scenario's rows only, so it is trained by those samples alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import FeatureEmbedding
from mscbench.models.blocks.mlp import MLP
from mscbench.models.blocks.routing import route_by_scenario
from mscbench.models.cel import EmbeddingSettings
from mscbench.space import Choice, tunable


@dataclass(frozen=True)
class SharedBottomConfig(EmbeddingSettings):
    """Hyperparameters of `shared_bottom`."""

    embedding_dim: int = 16  # width of every field embedding
    bottom: tuple[int, ...] = tunable((128,), Choice((64,), (128,), (256, 128)))  # shared MLP widths
    tower: tuple[int, ...] = tunable((64,), Choice((32,), (64,)))  # per-scenario tower widths (then one output unit)
    dropout: float = 0.0  # dropout after each hidden layer


@register("shared_bottom", config=SharedBottomConfig, multi_scenario=True,
          description="shared MLP bottom, one tower per scenario",
          paper="Caruana, Multitask Learning (Machine Learning)", year=1997)
class SharedBottom(nn.Module):
    def __init__(self, manifest: Manifest, config: SharedBottomConfig):
        super().__init__()
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim)
        self.bottom = MLP(self.embedding.flat_dim, config.bottom, config.dropout)
        self.towers = nn.ModuleList(
            MLP(self.bottom.output_dim, config.tower, config.dropout, output_dim=1)
            for _ in range(manifest.num_scenarios)
        )

    def forward(self, batch: Batch) -> ModelOutput:
        h = self.bottom(self.embedding.flat(batch))  # [B, bottom[-1]]
        logit = route_by_scenario(self.towers, h, batch.scenario)  # [B, 1]
        return ModelOutput(logit.squeeze(1))

    def scenario_parameters(self, scenario: int):
        return list(self.towers[scenario].parameters())
