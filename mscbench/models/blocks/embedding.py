"""Id embeddings: one table per manifest table, all looked up at once (`FeatureEmbedding`), the item vectors
of the behaviour sequences, and the first-order term (a 1-dim embedding per id)."""

from __future__ import annotations

import itertools
import warnings

import torch
from torch import nn

from mscbench.config import ConfigError
from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest

EMBEDDING_INIT_STD = 1e-2


def new_embedding(rows: int, dim: int) -> nn.Embedding:
    """An embedding table with a small normal init and a zero padding row 0."""
    table = nn.Embedding(rows, dim, padding_idx=0)
    nn.init.normal_(table.weight, std=EMBEDDING_INIT_STD)
    with torch.no_grad():
        table.weight[0].zero_()
    return table


class FusedLookup(torch.autograd.Function):
    """A lookup of global `rows` in `fused`, the tables laid end to end in one storage, that hands the
    gradient back to each table's own weight: slices of one dense gradient, or one sparse gradient per table.

    One lookup (and one backward) for every field at once, instead of one per field. With `bag_weights`
    ([N, L], like `rows`) each row of lookups is summed with those weights into one vector (`embedding_bag`:
    a pooled sequence without its [N, L, d] intermediate). `padding_rows` (id 0 of every id table) are read
    like any row but get no gradient, as with `nn.Embedding(padding_idx=0)`: zeroing those few rows of the
    table gradient costs less than masking every padded lookup's gradient.
    """

    @staticmethod
    def forward(ctx, rows: torch.Tensor, bag_weights: torch.Tensor | None, padding_rows: torch.Tensor,
                fused: torch.Tensor, sparse: bool, *weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows, bag_weights, padding_rows)
        ctx.sparse, ctx.sizes = sparse, [len(weight) for weight in weights]
        if bag_weights is None:
            return nn.functional.embedding(rows, fused)
        return nn.functional.embedding_bag(rows, fused, mode="sum", per_sample_weights=bag_weights)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        rows, bag_weights, padding_rows = ctx.saved_tensors
        if bag_weights is not None:
            grad = grad.unsqueeze(1) * bag_weights.unsqueeze(-1)  # [N, L, d]: each lookup's share of its sum
        rows, grad = rows.flatten(), grad.reshape(-1, grad.shape[-1])
        if ctx.sparse:
            grads = sparse_table_gradients(rows, ~torch.isin(rows, padding_rows), grad, ctx.sizes)
        else:  # index_add_ takes about half the time of embedding_dense_backward, which sorts the rows first
            table = grad.new_zeros(sum(ctx.sizes), grad.shape[-1]).index_add_(0, rows, grad)
            grads = table.index_fill_(0, padding_rows, 0).split(ctx.sizes)
        return None, None, None, None, None, *grads


def sparse_table_gradients(rows: torch.Tensor, present: torch.Tensor, grad: torch.Tensor,
                           sizes: list[int]) -> list[torch.Tensor]:
    """One sparse (uncoalesced) gradient per table from the [n] rows and [n, d] gradient of a fused lookup,
    keeping the `present` ones."""
    rows, values = rows[present], grad[present]  # [n], [n, d]
    starts = list(itertools.accumulate(sizes, initial=0))  # [T+1], on the host: no read back from a GPU
    table = torch.bucketize(rows, torch.tensor(starts[1:-1], device=rows.device), right=True)  # [n]: its table
    order = torch.argsort(table, stable=True)
    counts = torch.bincount(table, minlength=len(sizes)).tolist()
    return [torch.sparse_coo_tensor((own_rows - start).unsqueeze(0), own_values, (size, grad.shape[-1]),
                                    check_invariants=False)  # valid by construction
            for own_rows, own_values, start, size in zip(rows[order].split(counts), values[order].split(counts),
                                                         starts, sizes)]


def entity_fields(manifest: Manifest) -> tuple[str, ...]:
    """The user field and the first item field: the entities of a click (CEL's and PPNet's ids)."""
    first_item = next((f.name for f in manifest.sparse if f.side == "item"), None)
    return tuple(name for name in (manifest.user, first_item) if name is not None)


def sparse_field_positions(manifest: Manifest, names: tuple[str, ...], setting: str) -> list[int]:
    """Positions in `batch.sparse` of the fields a model's `setting` names: each a sparse field, named once
    (a field named twice would count twice, and its gathered gradient would add in thread order)."""
    sparse = [f.name for f in manifest.sparse]
    unknown = [name for name in names if name not in sparse]
    if unknown:
        raise ConfigError(f"{setting} {unknown} are not sparse fields of {manifest.name!r} ({', '.join(sparse)})")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"{setting} names {', '.join(repeated)} more than once")
    return [sparse.index(name) for name in names]


class FeatureEmbedding(nn.Module):
    """One embedding table per manifest `table`, shared by the fields and sequences that name it.

    `with_scenario` adds the scenario id as one more sparse field (for models that have no scenario
    structure of their own, so that they are not handicapped by lacking it).

    The tables (and the scenario's) stay separate parameters (`tables[i].weight`, `scenario.weight`: their
    own state-dict keys and gradients) but live end to end in one storage, so that all fields are looked up
    at once and each sequence is pooled in the same call (`FusedLookup`). A table replaced by another kind
    of module (CEL) turns this off: then each field is looked up in its table.
    `sparse_gradient` (set by `use_sparse_gradients`) makes the tables' gradients sparse.
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
        register_sequence_targets(self, manifest)
        self.scenario = nn.Embedding(manifest.num_scenarios, dim) if with_scenario else None
        if self.scenario is not None:
            nn.init.normal_(self.scenario.weight, std=EMBEDDING_INIT_STD)
        self.dim = dim
        self.num_fields = len(manifest.sparse) + (1 if with_scenario else 0)
        self.num_sequences = len(manifest.sequences)
        self.num_dense = len(manifest.dense)
        starts = torch.tensor([0, *rows.values()]).cumsum(0)  # first row of each table (and the scenario's)
        field_starts = starts[self.sparse_tables + ([len(rows)] if with_scenario else [])]
        self.register_buffer("field_starts", field_starts, persistent=False)  # [F(+1)]
        self.register_buffer("sequence_starts", starts[self.sequence_tables].unsqueeze(1), persistent=False)
        self.register_buffer("padding_rows", starts[:-1], persistent=False)  # id 0 of every id table
        self.sparse_gradient = False
        self.fuse()

    def weights(self) -> list[nn.Parameter]:
        """The weights laid end to end in the fused storage, in its order."""
        return [table.weight for table in self.tables] + ([self.scenario.weight] if self.scenario else [])

    def fuse(self) -> None:
        """Move the weights into one storage, in table order (after a move to another device, too)."""
        weights = self.weights()
        self.fused = torch.cat([weight.detach() for weight in weights])  # [Σ rows, d]
        for weight, part in zip(weights, self.fused.split([len(w) for w in weights])):
            weight.data = part

    def fused_weight(self) -> torch.Tensor | None:
        """The shared storage of every weight, or None when a table is not a plain `nn.Embedding`."""
        if not all(type(table) is nn.Embedding for table in self.tables):
            return None
        if torch.compiler.is_compiling():  # compiled after its move (the trainer's order); storages are opaque
            return self.fused
        storage = self.fused.untyped_storage().data_ptr()
        if any(weight.untyped_storage().data_ptr() != storage for weight in self.weights()):
            self.fuse()  # `.to(device)` and the like give each weight a storage of its own
        return self.fused

    def lookup(self, fused: torch.Tensor, rows: torch.Tensor,
               bag_weights: torch.Tensor | None = None) -> torch.Tensor:
        """`FusedLookup` of storage `rows`: [..., d] vectors, or [N, d] sums of bags with `bag_weights`."""
        return FusedLookup.apply(rows, bag_weights, self.padding_rows, fused, self.sparse_gradient,
                                 *self.weights())

    def fields(self, batch: Batch) -> torch.Tensor:
        """[B, F(+1), d] embeddings of the sparse fields (and the scenario)."""
        fused = self.fused_weight()
        if fused is None:
            return self.plain_fields(batch)
        ids = batch.sparse if self.scenario is None else torch.cat([batch.sparse, batch.scenario.unsqueeze(1)], 1)
        return self.lookup(fused, ids + self.field_starts)

    def plain_fields(self, batch: Batch) -> torch.Tensor:
        """`fields` by one lookup per field, for tables that are not plain embeddings (CEL)."""
        columns = [self.tables[t](batch.sparse[:, k]) for k, t in enumerate(self.sparse_tables)]
        if self.scenario is not None:
            columns.append(self.scenario(batch.scenario))
        return torch.stack(columns, dim=1)

    def sequence(self, batch: Batch) -> torch.Tensor:
        """[B, S, L, d] embeddings of the behaviour sequences."""
        fused = self.fused_weight()
        if fused is None:
            return torch.stack([self.tables[t](batch.seq[:, s]) for s, t in enumerate(self.sequence_tables)], 1)
        return self.lookup(fused, batch.seq + self.sequence_starts)

    def pooled_sequences(self, batch: Batch) -> torch.Tensor:
        """[B, S, d]: each behaviour sequence's mean over its present positions (zero if it has none)."""
        fused = self.fused_weight()
        if fused is None:
            return masked_mean(self.sequence(batch), batch.seq_mask)
        mask = batch.seq_mask.to(fused.dtype)  # [B, L]
        rows = (batch.seq + self.sequence_starts).flatten(0, 1)  # [B·S, L]
        weights = mask.repeat_interleave(self.num_sequences, dim=0)  # [B·S, L]
        sums = self.lookup(fused, rows, weights).view(len(batch), self.num_sequences, self.dim)
        return sums / mask.sum(1).clamp_min(1.0)[:, None, None]

    def pooled_fields(self, batch: Batch) -> torch.Tensor:
        """[B, F(+1)+S, d]: the field embeddings, each mean-pooled sequence being one more field."""
        fields = self.fields(batch)
        if not self.num_sequences:
            return fields
        return torch.cat([fields, self.pooled_sequences(batch)], dim=1)

    def flat(self, batch: Batch) -> torch.Tensor:
        """[B, input_dim]: field embeddings, mean-pooled sequences and dense values, concatenated."""
        return torch.cat([self.pooled_fields(batch).flatten(1), batch.dense], dim=1)

    @property
    def flat_dim(self) -> int:
        return (self.num_fields + self.num_sequences) * self.dim + self.num_dense


def use_sparse_gradients(model: nn.Module) -> list[nn.Parameter]:
    """Give every table (ids and scenario) of every `FeatureEmbedding` in `model` sparse gradients; returns
    their weights."""
    weights = []
    for embedding in (m for m in model.modules() if isinstance(m, FeatureEmbedding)):
        embedding.sparse_gradient = True
        for table in [*embedding.tables, *([embedding.scenario] if embedding.scenario else [])]:
            if type(table) is nn.Embedding:
                table.sparse = True
                weights.append(table.weight)
    return weights


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the length axis of [B, S, L, d] `values` where `mask` [B, L] is True; zero if empty."""
    weights = mask.to(values.dtype)[:, None, :, None]  # [B, 1, L, 1]
    return (values * weights).sum(2) / weights.sum(2).clamp_min(1.0)  # [B, S, d]


def register_sequence_targets(embedding: nn.Module, manifest: Manifest) -> None:
    """Give `embedding` what `item_vectors` reads: `target_fields` (per sequence, the position of the sparse
    field it targets, or None) and, as buffers, the targeted sequences and their target fields' positions."""
    sparse_names = [f.name for f in manifest.sparse]
    embedding.target_fields = [sparse_names.index(s.target) if s.target else None for s in manifest.sequences]
    targeted = [s for s, field in enumerate(embedding.target_fields) if field is not None]
    embedding.register_buffer("targeted_sequences", torch.tensor(targeted, dtype=torch.long), persistent=False)
    embedding.register_buffer("target_positions", torch.tensor([embedding.target_fields[s] for s in targeted],
                                                               dtype=torch.long), persistent=False)


def item_vectors(embedding: FeatureEmbedding, fields: torch.Tensor,
                 sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The target item vector and the behaviour item vectors (docs/models.md#conventions), over the sequences with a target.

    `fields` [B, F, d] from `embedding.fields`, `sequences` [B, S, L, d] from `embedding.sequence`.
    Returns the target [B, S'·d] (the concatenated fields the sequences target, e.g. item_id ⊕ category)
    and the behaviours [B, L, S'·d] (the sequences concatenated in the same order), so that position i
    and the target live in one space (their tables are shared).
    """
    target = fields.index_select(1, embedding.target_positions).flatten(1)  # [B, S'·d]
    if len(embedding.targeted_sequences) < sequences.shape[1]:
        sequences = sequences.index_select(1, embedding.targeted_sequences)
    behaviours = sequences.transpose(1, 2).flatten(2)  # [B, L, S'·d]
    return target, behaviours


class FeatureLinear(nn.Module):
    """First-order term `b + Σ_f w_f[x_f] + Σ_s mean_i w_s[x_{s,i}] + w_d^T z`: a 1-dim embedding per id.

    It is LR and the wide part of Wide & Deep (docs/models.md#lr, #wdl); DeepFM keeps its w_f in its embedding rows.
    `zero_init` makes the term start at exactly zero (W&D's wide part, so the sum starts at the deep logit).
    """

    def __init__(self, manifest: Manifest, with_scenario: bool = False, zero_init: bool = False):
        super().__init__()
        self.weights = FeatureEmbedding(manifest, 1, with_scenario)
        self.dense = dense_linear(manifest)
        if zero_init:
            for parameter in self.parameters():
                nn.init.zeros_(parameter)

    def forward(self, batch: Batch) -> torch.Tensor:
        ids = self.weights.pooled_fields(batch).sum(dim=(1, 2))  # [B]
        return ids + self.dense(batch.dense).squeeze(1)  # [B]


def dense_linear(manifest: Manifest) -> nn.Linear:
    """`w_d^T z + b` over the dense values: the dense part of a first-order term, its bias b."""
    with warnings.catch_warnings():  # no dense features: Linear(0, 1) is right (term 0), but torch warns
        warnings.filterwarnings("ignore", "Initializing zero-element tensors is a no-op")
        return nn.Linear(len(manifest.dense), 1)
