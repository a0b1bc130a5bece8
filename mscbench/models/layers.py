"""Building blocks shared by several models. A block tweaked for one model stays in that model's file."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from mscbench.config import ConfigError
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
    starts = torch.tensor([0, *sizes], device=rows.device).cumsum(0)  # [T+1]
    table = torch.bucketize(rows, starts[1:-1], right=True)  # [n] which table each row belongs to
    order = torch.argsort(table, stable=True)
    counts = torch.bincount(table, minlength=len(sizes)).tolist()
    return [torch.sparse_coo_tensor((own_rows - start).unsqueeze(0), own_values, (size, grad.shape[-1]),
                                    check_invariants=False)  # valid by construction
            for own_rows, own_values, start, size in zip(rows[order].split(counts), values[order].split(counts),
                                                         starts.tolist(), sizes)]


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


def route_by_scenario(branches: Sequence[Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor,
                      scenario: torch.Tensor) -> torch.Tensor:
    """Apply `branches[t]` to the rows of scenario t only, and put the outputs back in row order.

    Each branch runs on its own samples (its cost grows with its traffic, not the batch), and its
    parameters receive gradient only from them; per-branch batch statistics see only its own rows.
    """
    counts = torch.bincount(scenario, minlength=len(branches)).tolist()  # the one host sync per call
    if max(counts) == len(x):  # one scenario in the batch: its branch takes the rows as they are
        return branches[counts.index(len(x))](x)
    order = torch.argsort(scenario, stable=True)
    pieces = torch.split(x.index_select(0, order), counts)
    outputs = [branch(piece) for branch, piece, n in zip(branches, pieces, counts) if n]
    sorted_out = torch.cat(outputs, dim=0)
    return torch.empty_like(sorted_out).index_copy(0, order, sorted_out)


class FeatureLinear(nn.Module):
    """First-order term `b + Σ_f w_f[x_f] + Σ_s mean_i w_s[x_{s,i}] + w_d^T z`: a 1-dim embedding per id.

    It is LR (spec §6.1) and the wide part of Wide & Deep (§6.2); DeepFM keeps its w_f in its embedding rows.
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


class FMInteraction(nn.Module):
    """FM second-order term `Σ_{f<f'} <v_f, v_f'>` by the sum-square trick (Rendle, ICDM 2010):

        ½ Σ_k [ (Σ_f v_{f,k})² - Σ_f v_{f,k}² ]     in O(n·d) instead of O(n²·d).
    """

    def forward(self, fields: torch.Tensor) -> torch.Tensor:
        square_of_sum = fields.sum(dim=1).square()  # [B, d]
        sum_of_squares = fields.square().sum(dim=1)  # [B, d]
        return 0.5 * (square_of_sum - sum_of_squares).sum(dim=1)  # [B]


class CrossLayer(nn.Module):
    """DCN cross layer `x_{l+1} = x_0 · (x_l^T w) + b + x_l` (Wang et al., ADKDD 2017, eq. 3).

    `x_l^T w` is one scalar per sample, so the layer costs O(d); the d×d outer product `x_0 x_l^T` is
    never formed.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(dim) * dim ** -0.5)  # [d]
        self.bias = nn.Parameter(torch.zeros(dim))  # [d]

    def forward(self, x0: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return x0 * (x @ self.weight).unsqueeze(1) + self.bias + x  # [B, d]


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
    """The target item vector and the behaviour item vectors (spec §1.2), over the sequences with a target.

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


class PartitionedNorm(nn.Module):
    """STAR's partitioned normalisation (spec §6.11), with per-scenario statistics:

        PN(x) = (γ ⊙ γ_t) ⊙ (x - μ_t) / sqrt(σ²_t + ε) + (β + β_t),     t = the row's scenario

    Training: μ_t, σ²_t are the moments of the batch's scenario-t rows (never of the whole batch); a
    scenario with fewer than 2 rows uses, and leaves alone, its running statistics. Evaluation: every row
    uses its own scenario's running statistics, so a prediction never depends on its batch-mates.
    """

    def __init__(self, dim: int, num_scenarios: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.shared_scale = nn.Parameter(torch.ones(dim))  # γ
        self.shared_shift = nn.Parameter(torch.zeros(dim))  # β
        self.scenario_scale = nn.ParameterList(torch.ones(dim) for _ in range(num_scenarios))  # γ_t
        self.scenario_shift = nn.ParameterList(torch.zeros(dim) for _ in range(num_scenarios))  # β_t
        self.register_buffer("running_mean", torch.zeros(num_scenarios, dim))
        self.register_buffer("running_var", torch.ones(num_scenarios, dim))
        self.momentum = momentum  # weight of the current batch in the running statistics
        self.eps = eps

    def forward(self, x: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean, var = self.batch_statistics(x, scenario)  # [N, d] each
        else:
            mean, var = self.running_mean, self.running_var
        scale = self.shared_scale * torch.stack(list(self.scenario_scale))[scenario]  # [B, d]
        shift = self.shared_shift + torch.stack(list(self.scenario_shift))[scenario]  # [B, d]
        return scale * (x - mean[scenario]) / torch.sqrt(var[scenario] + self.eps) + shift  # [B, d]

    def batch_statistics(self, x: torch.Tensor, scenario: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, d] mean and (biased) variance of each scenario's rows; updates the running statistics."""
        counts = torch.bincount(scenario, minlength=len(self.running_mean)).to(x.dtype)[:, None]  # [N, 1]
        mean = torch.zeros_like(self.running_mean).index_add(0, scenario, x) / counts.clamp_min(1)  # [N, d]
        squares = torch.zeros_like(self.running_var).index_add(0, scenario, (x - mean[scenario]).square())
        enough = counts >= 2  # [N, 1]: a single row has no variance
        with torch.no_grad():
            unbiased = squares / (counts - 1).clamp_min(1)
            self.running_mean.copy_(torch.where(enough, self.running_mean.lerp(mean, self.momentum),
                                                self.running_mean))
            self.running_var.copy_(torch.where(enough, self.running_var.lerp(unbiased, self.momentum),
                                               self.running_var))
        variance = squares / counts.clamp_min(1)
        return torch.where(enough, mean, self.running_mean), torch.where(enough, variance, self.running_var)


class StarLinear(nn.Module):
    """STAR's star-topology linear layer (spec §6.11): scenario t computes with

        W*_t = W ⊙ W_t,   b*_t = b + b_t

    `W_t = 1, b_t = 0` at init, so every scenario starts as the shared layer (a product of two random
    matrices would start badly scaled). Call it on one scenario's rows at a time (`route_by_scenario`),
    so that W_t and b_t learn from scenario t's samples only.
    """

    def __init__(self, input_dim: int, output_dim: int, num_scenarios: int):
        super().__init__()
        self.shared = nn.Linear(input_dim, output_dim)  # W, b
        self.scenario_weight = nn.ParameterList(torch.ones(output_dim, input_dim)
                                                for _ in range(num_scenarios))
        self.scenario_bias = nn.ParameterList(torch.zeros(output_dim) for _ in range(num_scenarios))

    def weight(self, scenario: int) -> torch.Tensor:
        return self.shared.weight * self.scenario_weight[scenario]  # [out, in]

    def bias(self, scenario: int) -> torch.Tensor:
        return self.shared.bias + self.scenario_bias[scenario]  # [out]

    def forward(self, x: torch.Tensor, scenario: int) -> torch.Tensor:
        return nn.functional.linear(x, self.weight(scenario), self.bias(scenario))  # [n, out]


class GateNU(nn.Module):
    """PEPNet's gate neural unit (spec §6.12): `γ · σ(W_2^T ReLU(W_1^T x + b_1) + b_2)`, in (0, γ).

    With γ = 2 a gate near its centre leaves what it scales unchanged (σ(0) · 2 = 1).
    """

    def __init__(self, input_dim: int, output_dim: int, hidden: int, gamma: float = 2.0):
        super().__init__()
        self.mlp = MLP(input_dim, (hidden,), output_dim=output_dim)
        self.gamma = gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * torch.sigmoid(self.mlp(x))  # [B, output_dim]


class APGLinear(nn.Module):
    """APG's adaptive linear layer (spec §6.14), parameters generated per sample from a condition z:

        S(z) = reshape_{k×k}(hypernet(z)),   W(z) = U S(z) V,   y = ((x U) S(z)) V + b(z)
        U = U_l U_r (d_in×P · P×k),  V = V_l V_r (k×P · P×d_out)       (over-parameterisation, P ≥ k)

    Multiplying left to right costs O(d_in·k + k² + k·d_out) per sample; W(z) is never formed.
    Init (an mscbench choice): each factor N(0, 1/fan_in) and the hypernetwork's output bias vec(I) ⊕ 0, so
    W starts as U V with a unit gain per factor; Xavier factors times a random S start with a gain ~1/100,
    which stalls training of a 3-layer stack.
    """

    def __init__(self, input_dim: int, output_dim: int, condition_dim: int, rank: int, overparam: int,
                 hyper_hidden: Sequence[int]):
        super().__init__()
        if rank > overparam:
            raise ValueError(f"APG needs rank k <= over-parameterisation P, got k={rank}, P={overparam}")
        self.u_left = self.factor(input_dim, overparam)
        self.u_right = self.factor(overparam, rank)
        self.v_left = self.factor(rank, overparam)
        self.v_right = self.factor(overparam, output_dim)
        self.hypernet = MLP(condition_dim, hyper_hidden, output_dim=rank * rank + output_dim)  # S(z) ⊕ b(z)
        head = self.hypernet.layers[-1]
        with torch.no_grad():
            head.bias.copy_(torch.cat([torch.eye(rank).flatten(), torch.zeros(output_dim)]))
        self.rank = rank

    @staticmethod
    def factor(fan_in: int, fan_out: int) -> nn.Parameter:
        return nn.Parameter(torch.randn(fan_in, fan_out) * fan_in ** -0.5)

    def generate(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """S(z) [B, k, k] and b(z) [B, d_out]."""
        generated = self.hypernet(condition)  # [B, k² + d_out]
        core = generated[:, : self.rank ** 2].reshape(-1, self.rank, self.rank)
        return core, generated[:, self.rank ** 2:]

    def weight(self, condition: torch.Tensor) -> torch.Tensor:
        """The per-sample weight W(z) = U S(z) V, [B, d_in, d_out] (to inspect it; forward never forms it)."""
        core, _ = self.generate(condition)
        return self.u_left @ self.u_right @ core @ (self.v_left @ self.v_right)

    def forward(self, x: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        core, bias = self.generate(condition)
        h = x @ (self.u_left @ self.u_right)  # [B, k]
        h = torch.bmm(h.unsqueeze(1), core).squeeze(1)  # [B, k]
        return h @ (self.v_left @ self.v_right) + bias  # [B, d_out]


TIME_GAP_BUCKETS = 32  # Batch.seq_gap holds buckets 0..31


class TimeGapEmbedding(nn.Module):
    """BST's position embedding `pos(v_i)`: one learned vector per bucketised time gap to the impression.

    Reads the behaviours' buckets [B, L] and appends the target item's bucket 0, giving [B, L+1, d].
    Padded behaviours also carry bucket 0; the attention's key mask keeps them out.
    """

    def __init__(self, dim: int, buckets: int = TIME_GAP_BUCKETS):
        super().__init__()
        self.table = nn.Embedding(buckets, dim)
        nn.init.normal_(self.table.weight, std=EMBEDDING_INIT_STD)

    def forward(self, seq_gap: torch.Tensor) -> torch.Tensor:
        target = seq_gap.new_zeros(seq_gap.shape[0], 1)  # [B, 1]
        return self.table(torch.cat([seq_gap, target], dim=1))  # [B, L+1, d]


def with_target_mask(batch: Batch) -> torch.Tensor:
    """[B, L+1] key mask of a behaviour sequence with the target appended: the target is never masked."""
    return torch.cat([batch.seq_mask, batch.seq_mask.new_ones(len(batch), 1)], dim=1)


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention with padded keys masked (SAML eq. 1-2, as in BST and Vaswani et al.):

        (1) Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k)) V
        (2) MH(E) = Concat(head_1, ..., head_h) W^O,   head_j = Attention(E W^Q_j, E W^K_j, E W^V_j)

    `attend` takes already projected Q, K, V, so that a model can build them from different inputs
    (SAML's scenario attention: its own Q, K and the global V and W^O).
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ConfigError(f"attention width {dim} is not divisible by num_heads={num_heads}: "
                              "choose a number of heads that divides it")
        self.num_heads = num_heads
        self.query = nn.Linear(dim, dim, bias=False)  # W^Q (all heads side by side)
        self.key = nn.Linear(dim, dim, bias=False)  # W^K
        self.value = nn.Linear(dim, dim, bias=False)  # W^V
        self.output = nn.Linear(dim, dim, bias=False)  # W^O

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`x` [B, L, d], `mask` [B, L] (True = present) -> [B, L, d]."""
        return self.attend(self.query(x), self.key(x), self.value(x), mask)

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
               mask: torch.Tensor) -> torch.Tensor:
        batch, length, dim = value.shape
        q, k, v = (t.view(batch, length, self.num_heads, -1).transpose(1, 2)
                   for t in (query, key, value))  # [B, h, L, d_k]
        heads = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :])  # eq. 1
        return self.output(heads.transpose(1, 2).reshape(batch, length, dim))  # [B, L, d]   eq. 2


class TransformerBlock(nn.Module):
    """BST's transformer block (spec §6.6):

        S' = LayerNorm(E + Dropout(MH(E)))
        F  = LayerNorm(S' + Dropout(LeakyReLU(S' W_1 + b_1) W_2 + b_2))

    Outputs at padded positions are set to zero, so padding content never reaches what follows.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.2):
        super().__init__()
        self.attention = MultiHeadSelfAttention(dim, num_heads)
        self.attention_norm = nn.LayerNorm(dim)
        self.feed_forward = nn.Sequential(nn.Linear(dim, dim), nn.LeakyReLU(), nn.Linear(dim, dim))
        self.output_norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`x` [B, L, d], `mask` [B, L] (True = present) -> [B, L, d]."""
        return self.wrap(x, self.attention(x, mask), mask)

    def wrap(self, residual: torch.Tensor, attended: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The block around an attention output: residual, LayerNorm, feed-forward, LayerNorm."""
        hidden = self.attention_norm(residual + self.dropout(attended))  # [B, L, d]   S'
        out = self.output_norm(hidden + self.dropout(self.feed_forward(hidden)))  # [B, L, d]   F
        return out * mask.unsqueeze(-1).to(out.dtype)


def pool_sequence(outputs: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """[B, L+1, d] transformer outputs (zero at padding) -> one vector per sample.

    "flatten" (BST's figure): all L+1 outputs side by side, [B, (L+1)·d]; "target": the target position's
    output, [B, d]; "mean": the mean over present positions and the target, [B, d].
    """
    if pooling == "flatten":
        return outputs.flatten(1)
    if pooling == "target":
        return outputs[:, -1]
    return outputs.sum(1) / mask.sum(1, keepdim=True).to(outputs.dtype)


def pooled_width(positions: int, dim: int, pooling: str) -> int:
    """Width of `pool_sequence`'s output for `positions` (= L+1) outputs of width `dim`."""
    return positions * dim if pooling == "flatten" else dim


@dataclass(frozen=True)
class EmbeddingSettings:
    """How the id fields of any model are embedded (every model's config has these settings)."""

    embedding: Literal["full", "cel"] = "full"  # "cel": the id fields share cluster embeddings (CEL)
    cel_compression: float = 2650.0  # entities per cluster embedding at full budget (CEL's reported 2650x)
    cel_fields: tuple[str, ...] = ()  # fields clustered by CEL; () = the user field and the first item field
    cel_split_every: int = 500  # training steps between CEL's splitting rounds (until the budget is full)
    cel_reassign_every: int = 500  # training steps between CEL's reassignment rounds


class ClusteredEmbedding(nn.Module):
    """CEL's clustered embedding table (Chen et al., WWW 2023; models.md §6.17, reconstructed).

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


def entity_fields(manifest: Manifest) -> tuple[str, ...]:
    """The user field and the first item field: the entities of a click (CEL's and PPNet's ids)."""
    first_item = next((f.name for f in manifest.sparse if f.side == "item"), None)
    return tuple(name for name in (manifest.user, first_item) if name is not None)


def cluster_id_embeddings(model: nn.Module, manifest: Manifest, settings: EmbeddingSettings) -> None:
    """Replace the tables of the CEL fields, in every FeatureEmbedding of `model`, by clustered tables."""
    names = settings.cel_fields or entity_fields(manifest)
    sparse = {f.name: f for f in manifest.sparse}
    unknown = [name for name in names if name not in sparse]
    if unknown:
        raise ConfigError(f"cel_fields {unknown} are not sparse fields of {manifest.name!r} "
                          f"({', '.join(sparse)})")
    tables = {sparse[name].table for name in names}
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
