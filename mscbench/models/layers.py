"""Building blocks shared by several models. A block tweaked for one model stays in that model's file."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest

EMBEDDING_INIT_STD = 1e-2


class MLP(nn.Module):
    """Linear -> activation (-> BatchNorm) (-> Dropout) per hidden layer; optional linear output layer."""

    def __init__(self, input_dim: int, hidden: Sequence[int], dropout: float = 0.0,
                 activation: type[nn.Module] = nn.ReLU, batch_norm: bool = False,
                 output_dim: int | None = None):
        super().__init__()
        layers: list[nn.Module] = []
        width = input_dim
        for size in hidden:
            layers += [nn.Linear(width, size), activation()]
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        if output_dim is not None:
            layers.append(nn.Linear(width, output_dim))
            width = output_dim
        self.layers = nn.Sequential(*layers)
        self.output_dim = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def new_embedding(rows: int, dim: int) -> nn.Embedding:
    """An embedding table with a small normal init and a zero padding row 0."""
    table = nn.Embedding(rows, dim, padding_idx=0)
    nn.init.normal_(table.weight, std=EMBEDDING_INIT_STD)
    with torch.no_grad():
        table.weight[0].zero_()
    return table


class FeatureEmbedding(nn.Module):
    """One embedding table per manifest `table`, shared by the fields and sequences that name it.

    `with_scenario` adds the scenario id as one more sparse field (for models that have no scenario
    structure of their own, so that they are not handicapped by lacking it).
    """

    def __init__(self, manifest: Manifest, dim: int, with_scenario: bool = False):
        super().__init__()
        rows: dict[str, int] = {}
        for feature in [*manifest.sparse, *manifest.sequences]:
            rows[feature.table] = max(rows.get(feature.table, 0), feature.vocab_size)
        self.table_names = list(rows)
        self.tables = nn.ModuleList(new_embedding(size, dim) for size in rows.values())
        self.sparse_tables = [self.table_names.index(f.table) for f in manifest.sparse]
        self.sequence_tables = [self.table_names.index(s.table) for s in manifest.sequences]
        sparse_names = [f.name for f in manifest.sparse]
        self.target_fields = [sparse_names.index(s.target) if s.target else None for s in manifest.sequences]
        self.scenario = nn.Embedding(manifest.num_scenarios, dim) if with_scenario else None
        if self.scenario is not None:
            nn.init.normal_(self.scenario.weight, std=EMBEDDING_INIT_STD)
        self.dim = dim
        self.num_fields = len(manifest.sparse) + (1 if with_scenario else 0)
        self.num_sequences = len(manifest.sequences)
        self.num_dense = len(manifest.dense)

    def fields(self, batch: Batch) -> torch.Tensor:
        """[B, F(+1), d] embeddings of the sparse fields (and the scenario)."""
        columns = [self.tables[t](batch.sparse[:, i]) for i, t in enumerate(self.sparse_tables)]
        if self.scenario is not None:
            columns.append(self.scenario(batch.scenario))
        return torch.stack(columns, dim=1)

    def sequence(self, batch: Batch) -> torch.Tensor:
        """[B, S, L, d] embeddings of the behaviour sequences."""
        return torch.stack([self.tables[t](batch.seq[:, i]) for i, t in enumerate(self.sequence_tables)], 1)

    def flat(self, batch: Batch) -> torch.Tensor:
        """[B, input_dim]: field embeddings, mean-pooled sequences and dense values, concatenated."""
        parts = [self.fields(batch).flatten(1)]
        if self.num_sequences:
            parts.append(masked_mean(self.sequence(batch), batch.seq_mask).flatten(1))
        parts.append(batch.dense)
        return torch.cat(parts, dim=1)

    @property
    def flat_dim(self) -> int:
        return (self.num_fields + self.num_sequences) * self.dim + self.num_dense


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the length axis of [B, S, L, d] `values` where `mask` [B, L] is True; zero if empty."""
    weights = mask.to(values.dtype)[:, None, :, None]  # [B, 1, L, 1]
    return (values * weights).sum(2) / weights.sum(2).clamp_min(1.0)  # [B, S, d]


def route_by_scenario(branches: Sequence[nn.Module], x: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
    """Apply `branches[t]` to the rows of scenario t only, and put the outputs back in row order.

    Each branch runs on its own samples (its cost grows with its traffic, not the batch), and its
    parameters receive gradient only from them; per-branch batch statistics see only its own rows.
    """
    counts = torch.bincount(scenario, minlength=len(branches)).tolist()  # the one host sync per call
    order = torch.argsort(scenario, stable=True)
    pieces = torch.split(x[order], counts)
    outputs = [branch(piece) for branch, piece, n in zip(branches, pieces, counts) if n]
    sorted_out = torch.cat(outputs, dim=0)
    return torch.empty_like(sorted_out).index_copy(0, order, sorted_out)
