"""CEL, clustered embeddings (Chen et al., WWW 2023): the id fields' tables replaced by cluster tables that
split and reassign on the training schedule, and the settings every model config carries to switch it on
(`--set embedding=cel`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from mscbench.config import ConfigError
from mscbench.data.manifest import Manifest
from mscbench.models.blocks.embedding import (
    EMBEDDING_INIT_STD,
    FeatureEmbedding,
    entity_fields,
    sparse_field_positions,
)


@dataclass(frozen=True)
class EmbeddingSettings:
    """How a model's id fields are embedded: a model config that embeds through `FeatureEmbedding` inherits
    these settings (`class DNNConfig(EmbeddingSettings)`), so `--set embedding=cel` clusters its id tables."""

    embedding: Literal["full", "cel"] = "full"  # "cel": the id fields share cluster embeddings (CEL)
    cel_compression: float = 2650.0  # entities per cluster embedding at full budget (CEL's reported 2650x)
    cel_fields: tuple[str, ...] = ()  # fields clustered by CEL; () = the user field and the first item field
    cel_split_every: int = 500  # training steps between CEL's splitting rounds (until the budget is full)
    cel_reassign_every: int = 500  # training steps between CEL's reassignment rounds

    def __post_init__(self) -> None:
        if self.cel_compression < 1:
            raise ConfigError(f"cel_compression is entities per cluster, at least 1, not {self.cel_compression}")
        for key in ("cel_split_every", "cel_reassign_every"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} is a number of training steps, at least 1, not {getattr(self, key)}")


class ClusteredEmbedding(nn.Module):
    """CEL's clustered embedding table (Chen et al., WWW 2023; docs/models.md#cel, reconstructed).

    Entity i looks up its cluster's shared vector: e_i = C[a(i)]. The table C holds `clusters` rows
    (plus the zero padding row), the assignment a one integer per entity. Cluster optimisation alternates
    with embedding optimisation on the trainer's step (`advance_schedule`), from the per-entity gradients
    g_i = Σ ∂L/∂e_i gathered since the last round (by backward hooks; forward reads state only):

        split (GPCA, top-down, every `split_every` steps while clusters remain): every cluster k with at least
            two observed members is split along the first principal component u_k of their centred gradients:
            members with (g_i - ḡ_k)·u_k > 0 move to a new cluster that starts as a copy of C[k]
        reassign (every `reassign_every` steps): each observed entity moves to the cluster whose vector
            most lowers its loss to first order, argmin_k g_i·(C[k] - C[a(i)]), if that is below 0

    Everything that affects predictions (C, a, the number of clusters in use) is saved with the weights.
    """

    def __init__(self, rows: int, dim: int, clusters: int, split_every: int, reassign_every: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(clusters + 1, dim) * EMBEDDING_INIT_STD)  # C, row 0 = padding
        with torch.no_grad():
            self.weight[0].zero_()
        self.register_buffer("assignment", (torch.arange(rows) > 0).long())  # a: every entity in cluster 1
        self.register_buffer("active", torch.tensor(1))  # clusters in use: 1..active
        self.register_buffer("running_gradient", torch.zeros(rows, dim))  # g_i since the last round
        self.register_buffer("running_count", torch.zeros(rows))  # occurrences of i since the last round
        self.split_every = split_every
        self.reassign_every = reassign_every

    @property
    def capacity(self) -> int:
        return len(self.weight) - 1

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        vectors = nn.functional.embedding(self.assignment[ids], self.weight, padding_idx=0)  # [..., d]
        if self.training and vectors.requires_grad:
            vectors.register_hook(lambda grad: self.record(ids, grad))
        return vectors

    @torch.no_grad()
    def record(self, ids: torch.Tensor, grad: torch.Tensor) -> None:
        """Backward hook: add each occurrence's gradient to its entity's g_i."""
        flat = ids.reshape(-1)
        self.running_gradient.index_add_(0, flat, grad.reshape(len(flat), -1).to(self.running_gradient.dtype))
        self.running_count.index_add_(0, flat, torch.ones_like(flat, dtype=self.running_count.dtype))

    @torch.no_grad()
    def advance_schedule(self, step: int) -> None:
        split = step > 0 and step % self.split_every == 0 and int(self.active) < self.capacity
        reassign = step > 0 and step % self.reassign_every == 0
        if split:
            self.split()
        if reassign:
            self.reassign()
        if split or reassign:
            self.running_gradient.zero_()
            self.running_count.zero_()

    def observed(self) -> torch.Tensor:
        """[rows] True for the entities (never padding) seen since the last round."""
        seen = self.running_count > 0
        seen[0] = False
        return seen

    def split(self) -> None:
        observed = self.observed()
        for cluster in range(1, int(self.active) + 1):
            if int(self.active) >= self.capacity:
                return
            members = torch.nonzero(observed & (self.assignment == cluster)).squeeze(1)
            if len(members) < 2:
                continue
            centred = self.running_gradient[members] - self.running_gradient[members].mean(0)  # [m, d]
            direction = torch.linalg.svd(centred, full_matrices=False).Vh[0]  # u_k, the first component
            side = centred @ direction > 0  # [m]
            if side.all() or not side.any():
                continue
            new = int(self.active) + 1
            self.weight[new] = self.weight[cluster]
            self.assignment[members[side]] = new
            self.active += 1

    def reassign(self) -> None:
        entities = torch.nonzero(self.observed()).squeeze(1)
        gradient = self.running_gradient[entities]  # [n, d]
        centres = self.weight[1:int(self.active) + 1]  # [K, d]
        current = (gradient * self.weight[self.assignment[entities]]).sum(1, keepdim=True)  # [n, 1]
        change = gradient @ centres.T - current  # [n, K]: first-order loss change of each move
        gain, best = change.min(1)
        moving = gain < 0
        self.assignment[entities[moving]] = best[moving] + 1


def cluster_id_embeddings(model: nn.Module, manifest: Manifest, settings: EmbeddingSettings) -> None:
    """Replace the tables of the CEL fields, in every FeatureEmbedding of `model`, by clustered tables."""
    names = settings.cel_fields or entity_fields(manifest)
    tables = {manifest.sparse[position].table for position in sparse_field_positions(manifest, names, "cel_fields")}
    embeddings = [m for m in model.modules() if isinstance(m, FeatureEmbedding)]
    replaced = 0
    for embedding in embeddings:
        for position, name in enumerate(embedding.table_names):
            if name in tables:
                full = embedding.tables[position]
                clusters = max(1, math.ceil((full.num_embeddings - 1) / settings.cel_compression))
                embedding.tables[position] = ClusteredEmbedding(
                    full.num_embeddings, full.embedding_dim, clusters, settings.cel_split_every,
                    settings.cel_reassign_every)
                replaced += 1
    if not replaced:
        raise ConfigError("embedding=cel: this model has no embedding table of the fields "
                          f"{', '.join(names)} to cluster")
