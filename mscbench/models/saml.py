"""SAML: Scenario-aware Mutual Learning (Chen et al., ICDM Workshops 2020), docs/models.md#saml.

The paper's typeset equations were lost; docs/models.md#saml rebuilds them under the paper's numbers. For a sample x of scenario t:

Scenario-aware embedding: every field has a global table and one table per scenario,
    e^g_f = E^g_f[x_f] ∈ R^{d_g},   e^s_f = E^s_f[t, x_f] ∈ R^{d_s}
Behaviour sequences, the target item appended, P = time-gap position embedding:
    E_g = [v^g_1; ...; v^g_L; v^g_target] + P_g,   E_s = [v^s_1; ...; v^s_target] + P_s
Attention (eq. 1-2), each wrapped in BST's block (residual on E_g, LayerNorm, FFN):
    S_g = MH(Q = E_g W^Q_g,     K = E_g W^K_g,     V = E_g W^V_g)
    S_s = MH(Q = E_s W^Q_{s,t}, K = E_s W^K_{s,t}, V = E_g W^V_g)        values (and W^O) shared
Features:
    x_ind = ⊕_f e^g_f ⊕ pool(S_g) ⊕ z,   x_dep = ⊕_f e^s_f ⊕ pool(S_s)
Auxiliary network, supervised by its own loss:
    h_a^0 = x_ind,   h_a^l = ReLU(W_a^l h_a^{l-1} + b_a^l),   logit_a = w_a^T h_a^K + c_a
Multi-branch network (eq. 4), one branch k per scenario, every branch on every sample:
    h_m^{k,l} = ReLU(W_m^{k,l} h̃_m^{k,l-1} + W_a^{k,l} h_a^{l-1} + b^{k,l}),   h̃_m^{k,0} = x_dep
Mutual unit (eq. 6-8) after each branch hidden layer, sg = stop-gradient:
    (6) c_{k,j} = cos(h_k, sg(h_j)),   α_{k,j} = softmax_{j≠k}(c_{k,j})
    (7) g_k = σ(w_g^{k T} h_k + b_g^k)
    (8) h̃_k = h_k + g_k · Σ_{j≠k} α_{k,j} sg(h_j)
Output and loss (eq. 5): logit_k = w^{k T} h̃_m^{k,K} + u^{k T} h_a^K + c^k, the prediction is logit_{t};
    L = BCE(logit_t, y) + λ_a · BCE(logit_a, y)

A branch k gets gradient only from scenario-k samples: other samples reach it only through sg(·) and
through logits that are not selected. Ablations (paper Table IV): `saml_no_gate` fixes g = 0 (each
branch then runs on its own rows only); `saml_no_aux` drops the auxiliary network and feeds
x_ind ⊕ x_dep to the branches; `saml_no_gate_mut` feeds x_ind ⊕ x_dep to one unified MLP.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register, register_variant
from mscbench.models.blocks.embedding import (
    EMBEDDING_INIT_STD,
    FeatureEmbedding,
    item_vectors,
    register_sequence_targets,
)
from mscbench.models.blocks.mlp import MLP
from mscbench.models.blocks.routing import route_by_scenario
from mscbench.models.blocks.sequence import (
    TimeGapEmbedding,
    TransformerBlock,
    pool_sequence,
    pooled_width,
    with_target_mask,
)
from mscbench.models.cel import EmbeddingSettings
from mscbench.space import MLP_WIDTHS_2, LogUniform, tunable

COSINE_EPS = 1e-8  # keeps the cosine of an all-zero ReLU output finite (and its gradient)


@dataclass(frozen=True)
class SAMLConfig(EmbeddingSettings):
    """Hyperparameters of `saml` (defaults: the paper's public setting, docs/models.md#saml).

    The paper trains with Adam at lr 5e-4 and batch 128: recipes/saml_public.toml applies that setting;
    `train` and `compare` without it use mscbench's training defaults (lr 1e-3, batch 512) like every model.
    """

    global_dim: int = 12  # d_g, global embedding width (industrial: 8)
    scenario_dim: int = 4  # d_s, scenario-specific embedding width (industrial: 2)
    num_heads: int = 4  # attention heads; the global item vector width must be divisible by it
    attention_dropout: float = 0.2  # dropout inside the transformer block (BST default; paper silent)
    seq_pooling: Literal["flatten", "target", "mean"] = "flatten"  # how the L+1 outputs are pooled
    scenario_attention_params: Literal["per_scenario", "shared"] = "per_scenario"  # W^{Q,K}_{s,t} per t?
    tie_values: bool = True  # scenario attention uses the global W^V (reader's note); False: its own
    hidden: tuple[int, ...] = tunable((128, 64), MLP_WIDTHS_2)  # widths of the auxiliary network and of each branch
    lambda_aux: float = tunable(1.0, LogUniform(0.1, 10.0))  # λ_a, weight of the auxiliary loss (paper gives none)
    aux_detach_into_branches: bool = False  # stop-gradient on h_a^l where the branches read it
    output_reads_aux: bool = True  # the branch output layer also reads h_a^K (eq. 4's pattern)
    predict_with_aux: bool = False  # add the auxiliary logit to the prediction (STAR-style)
    mutual_combine: Literal["residual", "convex"] = "residual"  # eq. 8: h + gΣ, or (1-g)h + gΣ
    mutual_layers: Literal["all", "last"] = "all"  # mutual unit after every branch hidden layer or the last
    gate_dim: Literal["scalar", "vector"] = "scalar"  # g per sample (Fig. 3) or per hidden unit
    mutual_unit: bool = True  # False: g ≡ 0, independent branches (ablation `saml_no_gate`)
    auxiliary: bool = True  # False: no auxiliary network (ablation `saml_no_aux`)
    multi_branch: bool = True  # False: one unified MLP on x_ind ⊕ x_dep (ablation `saml_no_gate_mut`)


class ScenarioSpecificEmbedding(nn.Module):
    """E^s_f ∈ R^{N × V_f × d_s} for every table, stored as one Embedding(N·V_f, d_s): row t·V_f + id.

    Only scenario-t samples ever read the rows of scenario t, so they learn from those samples alone.
    Same layout as `FeatureEmbedding` (fields then the scenario field; `target_fields`).
    """

    def __init__(self, manifest: Manifest, dim: int):
        super().__init__()
        rows: dict[str, int] = {}
        for feature in [*manifest.sparse, *manifest.sequences]:
            rows[feature.table] = max(rows.get(feature.table, 0), feature.vocab_size)
        names = list(rows)
        self.vocab_sizes = list(rows.values())
        self.tables = nn.ModuleList(nn.Embedding(manifest.num_scenarios * size, dim)
                                    for size in self.vocab_sizes)
        self.scenario = nn.Embedding(manifest.num_scenarios, dim)  # the scenario field's own vector
        for table in [*self.tables, self.scenario]:
            nn.init.normal_(table.weight, std=EMBEDDING_INIT_STD)
        self.sparse_tables = [names.index(f.table) for f in manifest.sparse]
        self.sequence_tables = [names.index(s.table) for s in manifest.sequences]
        register_sequence_targets(self, manifest)

    def lookup(self, table: int, ids: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        offset = scenario.view(-1, *[1] * (ids.dim() - 1)) * self.vocab_sizes[table]
        return self.tables[table](offset + ids)

    def fields(self, batch: Batch) -> torch.Tensor:
        """[B, F+1, d_s] scenario-specific embeddings of the sparse fields and the scenario."""
        columns = [self.lookup(t, batch.sparse[:, i], batch.scenario)
                   for i, t in enumerate(self.sparse_tables)]
        return torch.stack([*columns, self.scenario(batch.scenario)], dim=1)

    def sequence(self, batch: Batch) -> torch.Tensor:
        """[B, S, L, d_s] scenario-specific embeddings of the behaviour sequences."""
        return torch.stack([self.lookup(t, batch.seq[:, i], batch.scenario)
                            for i, t in enumerate(self.sequence_tables)], dim=1)


class BranchLayer(nn.Module):
    """One layer of one branch: W_m, b and W_a of eq. 4, and the branch's gate W_g, b_g of eq. 7."""

    def __init__(self, input_dim: int, aux_dim: int | None, output_dim: int, gate_dim: int | None):
        super().__init__()
        self.main = nn.Linear(input_dim, output_dim)  # W_m^{k,l}, b^{k,l}
        self.auxiliary = nn.Linear(aux_dim, output_dim, bias=False) if aux_dim else None  # W_a^{k,l}
        self.gate = nn.Linear(output_dim, gate_dim) if gate_dim else None  # w_g^k, b_g^k


class Branch(nn.Module):
    """The tower of one scenario: hidden layers (eq. 4) and its output logit."""

    def __init__(self, layers: list[BranchLayer], aux_dim: int | None):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.output = nn.Linear(layers[-1].main.out_features, 1)  # w^k, c^k
        self.aux_output = nn.Linear(aux_dim, 1, bias=False) if aux_dim else None  # u^k

    def forward(self, x: torch.Tensor, *aux_hidden: torch.Tensor) -> torch.Tensor:
        """The branch alone (no mutual unit) on `x` [n, d] and the auxiliary layers h_a^0..K -> [n, 1]."""
        for depth, layer in enumerate(self.layers):
            pre = layer.main(x)
            if layer.auxiliary is not None:
                pre = pre + layer.auxiliary(aux_hidden[depth])
            x = torch.relu(pre)  # eq. 4
        logit = self.output(x)  # [n, 1]
        return logit if self.aux_output is None else logit + self.aux_output(aux_hidden[-1])


def across_branches(linears: list[nn.Linear], x: torch.Tensor) -> torch.Tensor:
    """Apply linear k to branch k's input: `x` [B, d] (the same for all) or [B, N, d] -> [B, N, out]."""
    weight = torch.stack([linear.weight for linear in linears])  # [N, out, d]
    y = torch.einsum("bd,nod->bno" if x.dim() == 2 else "bnd,nod->bno", x, weight)
    if linears[0].bias is not None:
        y = y + torch.stack([linear.bias for linear in linears])  # [B, N, out]
    return y


def mutual_unit(hidden: torch.Tensor, gates: list[nn.Linear],
                combine: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 6-8 on all branches' outputs `hidden` [B, N, d]; returns h̃ [B, N, d], α [B, N, N], g [B, N, 1|d].

    Other branches enter through sg(·) only, so branch k's parameters never learn from branch j's loss.
    """
    others = hidden.detach()  # sg(h_j)
    squared_norms = hidden.square().sum(-1).unsqueeze(2) * others.square().sum(-1).unsqueeze(1)  # [B, N, N]
    cosine = hidden @ others.transpose(1, 2) / squared_norms.clamp_min(COSINE_EPS ** 2).sqrt()  # eq. 6 c
    own = torch.eye(hidden.shape[1], dtype=torch.bool, device=hidden.device)
    alpha = torch.softmax(cosine.masked_fill(own, float("-inf")), dim=-1)  # [B, N, N]   eq. 6 α, α_kk = 0
    gate = torch.sigmoid(across_branches(gates, hidden))  # [B, N, 1|d]   eq. 7
    borrowed = alpha @ others  # [B, N, d]   Σ_j α_kj sg(h_j)
    if combine == "residual":
        return hidden + gate * borrowed, alpha, gate  # eq. 8
    return (1 - gate) * hidden + gate * borrowed, alpha, gate


@register("saml", config=SAMLConfig, needs_sequence=True, multi_scenario=True,
          description="scenario-aware embeddings/attention, auxiliary net, multi-branch net with mutual unit",
          paper="Chen et al., Scenario-aware and Mutual-based approach for Multi-scenario Recommendation "
                "in E-Commerce (ICDM Workshops)", year=2020)
class SAML(nn.Module):
    def __init__(self, manifest: Manifest, config: SAMLConfig):
        super().__init__()
        self.config = config
        num_scenarios = manifest.num_scenarios
        targets = [s.target for s in manifest.sequences if s.target]
        global_item_dim = len(targets) * config.global_dim  # d_v^g
        scenario_item_dim = len(targets) * config.scenario_dim  # d_v^s
        self.other_fields = [i for i, f in enumerate(manifest.sparse) if f.name not in targets]
        self.other_fields.append(len(manifest.sparse))  # the scenario field

        # scenario-aware embedding and attention
        self.global_embedding = FeatureEmbedding(manifest, config.global_dim, with_scenario=True)
        self.scenario_embedding = ScenarioSpecificEmbedding(manifest, config.scenario_dim)
        self.global_position = TimeGapEmbedding(global_item_dim)  # P_g
        self.scenario_position = TimeGapEmbedding(scenario_item_dim)  # P_s
        self.block = TransformerBlock(global_item_dim, config.num_heads, config.attention_dropout)
        copies = num_scenarios if config.scenario_attention_params == "per_scenario" else 1
        self.scenario_query_key = nn.ModuleList(  # [W^Q_{s,t} W^K_{s,t}] into the global width
            nn.Linear(scenario_item_dim, 2 * global_item_dim, bias=False) for _ in range(copies))
        self.scenario_value = (None if config.tie_values  # W^V_s, still applied to E_g
                               else nn.Linear(global_item_dim, global_item_dim, bias=False))

        # widths of x_ind and x_dep
        sequence_width = pooled_width(manifest.sequence_length + 1, global_item_dim, config.seq_pooling)
        ind_dim = len(self.other_fields) * config.global_dim + sequence_width + len(manifest.dense)
        dep_dim = len(self.other_fields) * config.scenario_dim + sequence_width

        self.unified = self.auxiliary = self.auxiliary_output = self.branches = None
        if not config.multi_branch:  # ablation `saml_no_gate_mut`
            self.unified = MLP(ind_dim + dep_dim, config.hidden, output_dim=1)
            return
        if config.auxiliary:  # the auxiliary network
            widths = [ind_dim, *config.hidden]
            self.auxiliary = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
            self.auxiliary_output = nn.Linear(widths[-1], 1)
        else:  # ablation `saml_no_aux`: both feature vectors go to the branches
            dep_dim += ind_dim
        self.mutual = config.mutual_unit and num_scenarios > 1
        self.branches = nn.ModuleList(self.new_branch(dep_dim, ind_dim) for _ in range(num_scenarios))

    def new_branch(self, input_dim: int, ind_dim: int) -> Branch:
        config = self.config
        aux_widths = [ind_dim, *config.hidden] if config.auxiliary else [None] * (len(config.hidden) + 1)
        branch_widths = [input_dim, *config.hidden]
        gate_width = 1 if config.gate_dim == "scalar" else None
        layers = [BranchLayer(branch_widths[depth], aux_widths[depth], width,
                              (gate_width or width) if self.mutual and self.mutual_after(depth) else None)
                  for depth, width in enumerate(config.hidden)]
        return Branch(layers, aux_widths[-1] if config.output_reads_aux else None)

    def mutual_after(self, layer: int) -> bool:
        return self.config.mutual_layers == "all" or layer == len(self.config.hidden) - 1

    def forward(self, batch: Batch) -> ModelOutput:
        config = self.config
        # scenario-aware embedding
        global_fields = self.global_embedding.fields(batch)  # [B, F+1, d_g]
        scenario_fields = self.scenario_embedding.fields(batch)  # [B, F+1, d_s]
        # item vectors of the behaviours and the target, plus time-gap positions
        mask = with_target_mask(batch)  # [B, L+1]
        global_items = (self.items(self.global_embedding, global_fields, batch)
                        + self.global_position(batch.seq_gap))  # [B, L+1, d_v^g]
        scenario_items = (self.items(self.scenario_embedding, scenario_fields, batch)
                          + self.scenario_position(batch.seq_gap))  # [B, L+1, d_v^s]
        # eq. 1-2: global attention, and scenario attention with the global values
        global_seq = self.block(global_items, mask)  # [B, L+1, d_v^g]   S_g
        scenario_attended = self.scenario_attention(scenario_items, global_items, mask, batch.scenario)
        scenario_seq = self.block.wrap(global_items, scenario_attended, mask)  # [B, L+1, d_v^g]   S_s
        # scenario-independent and scenario-dependent feature vectors
        x_ind = torch.cat([global_fields[:, self.other_fields].flatten(1),
                           pool_sequence(global_seq, mask, config.seq_pooling), batch.dense], dim=1)
        x_dep = torch.cat([scenario_fields[:, self.other_fields].flatten(1),
                           pool_sequence(scenario_seq, mask, config.seq_pooling)], dim=1)
        if self.unified is not None:  # ablation `saml_no_gate_mut`
            return ModelOutput(self.unified(torch.cat([x_ind, x_dep], dim=1)).squeeze(1))

        aux_hidden: list[torch.Tensor] = []
        aux_loss = aux_logit = None
        if self.auxiliary is not None:  # auxiliary network and its loss (eq. 5, L_a)
            aux_hidden = self.auxiliary_layers(x_ind)  # h_a^0..K
            aux_logit = self.auxiliary_output(aux_hidden[-1]).squeeze(1)  # [B]
            aux_nll = nn.functional.binary_cross_entropy_with_logits(aux_logit, batch.label)
            aux_loss = config.lambda_aux * aux_nll
            if config.aux_detach_into_branches:
                aux_hidden = [h.detach() for h in aux_hidden]
        else:  # ablation `saml_no_aux`
            x_dep = torch.cat([x_ind, x_dep], dim=1)

        # eq. 4-8: the branches, and the prediction from the sample's own branch
        extras: dict[str, torch.Tensor] = {}
        if self.mutual:
            logit, extras = self.mutual_branches(x_dep, aux_hidden, batch.scenario)
        else:
            logit = self.own_branches(x_dep, aux_hidden, batch.scenario)
        if config.predict_with_aux:
            logit = logit + aux_logit
        return ModelOutput(logit, aux_loss, extras)

    @staticmethod
    def items(embedding: FeatureEmbedding | ScenarioSpecificEmbedding, fields: torch.Tensor,
              batch: Batch) -> torch.Tensor:
        """[B, L+1, d_v]: the behaviours' item vectors, then the target's."""
        target, behaviours = item_vectors(embedding, fields, embedding.sequence(batch))
        return torch.cat([behaviours, target.unsqueeze(1)], dim=1)

    def scenario_attention(self, scenario_items: torch.Tensor, global_items: torch.Tensor, mask: torch.Tensor,
                           scenario: torch.Tensor) -> torch.Tensor:
        """MH(Q = E_s W^Q_{s,t}, K = E_s W^K_{s,t}, V = E_g W^V_g), W^{Q,K} of each sample's scenario."""
        if len(self.scenario_query_key) > 1:
            query_key = route_by_scenario(self.scenario_query_key, scenario_items, scenario)  # [B, L+1, 2d]
        else:
            query_key = self.scenario_query_key[0](scenario_items)
        query, key = query_key.chunk(2, dim=-1)  # [B, L+1, d_v^g] each
        attention = self.block.attention
        value = (self.scenario_value or attention.value)(global_items)  # [B, L+1, d_v^g]
        return attention.attend(query, key, value, mask)

    def auxiliary_layers(self, x_ind: torch.Tensor) -> list[torch.Tensor]:
        """h_a^0 = x_ind, h_a^l = ReLU(W_a^l h_a^{l-1} + b_a^l) for l = 1..K."""
        hidden = [x_ind]
        for layer in self.auxiliary:
            hidden.append(torch.relu(layer(hidden[-1])))
        return hidden

    def mutual_branches(self, x_dep: torch.Tensor, aux_hidden: list[torch.Tensor],
                        scenario: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Every branch on every sample with mutual units between layers; the own branch's logit [B]."""
        hidden = x_dep  # [B, d]: h̃^{k,0}, the same for all branches
        alphas, gates = [], []
        own = scenario.view(-1, 1, 1)
        for depth in range(len(self.config.hidden)):
            layers = [branch.layers[depth] for branch in self.branches]
            pre = across_branches([layer.main for layer in layers], hidden)  # [B, N, d_l]
            if aux_hidden:
                pre = pre + across_branches([layer.auxiliary for layer in layers], aux_hidden[depth])
            hidden = torch.relu(pre)  # [B, N, d_l]   eq. 4
            if self.mutual_after(depth):
                hidden, alpha, gate = mutual_unit(hidden, [layer.gate for layer in layers],
                                                  self.config.mutual_combine)  # eq. 6-8
                alphas.append(alpha.gather(1, own.expand(-1, 1, alpha.shape[2])).squeeze(1))  # [B, N]
                gates.append(gate.mean(-1).gather(1, scenario.view(-1, 1)).squeeze(1))  # [B]
        logits = across_branches([branch.output for branch in self.branches], hidden)  # [B, N, 1]
        if self.config.output_reads_aux and aux_hidden:
            logits = logits + across_branches([branch.aux_output for branch in self.branches], aux_hidden[-1])
        logit = logits.squeeze(2).gather(1, scenario.view(-1, 1)).squeeze(1)  # [B]   logit_{t(x)}
        extras = {"alpha": torch.stack(alphas, 1).detach(),  # [B, mutual layers, N], own entry 0
                  "gate": torch.stack(gates, 1).detach()}  # [B, mutual layers]
        return logit, extras

    def own_branches(self, x_dep: torch.Tensor, aux_hidden: list[torch.Tensor],
                     scenario: torch.Tensor) -> torch.Tensor:
        """g ≡ 0: branches are independent, so each runs on its own scenario's rows only -> [B]."""
        widths = [x_dep.shape[1], *(h.shape[1] for h in aux_hidden)]

        def on_rows(branch: Branch):
            return lambda rows: branch(*rows.split(widths, dim=1))

        inputs = torch.cat([x_dep, *aux_hidden], dim=1)
        return route_by_scenario([on_rows(b) for b in self.branches], inputs, scenario).squeeze(1)

    def scenario_parameters(self, scenario: int) -> list[nn.Parameter | tuple[nn.Parameter, slice | int]]:
        """Branch `scenario`, its scenario attention projections, and its rows of the scenario-specific
        embedding tables."""
        owned: list = list(self.branches[scenario].parameters()) if self.branches is not None else []
        if len(self.scenario_query_key) > 1:
            owned += list(self.scenario_query_key[scenario].parameters())
        embedding = self.scenario_embedding
        owned += [(table.weight, slice(scenario * size, (scenario + 1) * size))
                  for table, size in zip(embedding.tables, embedding.vocab_sizes)]
        return owned + [(embedding.scenario.weight, scenario)]


register_variant("saml_no_gate", "saml", "SAML without the mutual unit (gate fixed to 0)", mutual_unit=False)
register_variant("saml_no_aux", "saml", "SAML without the auxiliary network", auxiliary=False)
register_variant("saml_no_gate_mut", "saml", "SAML without the multi-branch network: one unified MLP",
                 multi_branch=False)
