"""PEPNet: EPNet personalises the embeddings with the scenario prior, PPNet the hidden units with id priors.

Chang et al., PEPNet: Parameter and Embedding Personalized Network for Infusing with Personalized Prior
Information (KDD 2023), docs/models.md#pepnet, with GateNU(x) = γ·σ(W_2^T ReLU(W_1^T x + b_1) + b_2) ∈ (0, γ), γ = 2:

    E        = [e_1; …; e_k]                             (field embeddings, pooled sequences as fields)
    δ_domain = GateNU(e_t ⊕ sg(E)),   O_ep = δ_domain ⊗ E            (EPNet: one gate per field, or per dim)
    h_0      = O_ep ⊕ z
    δ^l      = GateNU_l(O_prior ⊕ sg(h_0)),   h_{l+1} = ReLU(W_l^T h_l + b_l) ⊙ δ^l      (PPNet)
    logit    = w_o^T h_L + b_o

e_t is the scenario embedding and O_prior the embeddings of the prior id fields (user, item, author).
The stop-gradients keep each gate from reshaping the representation it selects from. `use_epnet` and
`use_ppnet` switch the two halves; the only scenario-owned parameters are the rows of e_t's table.

The halves alone (docs/models.md#pepnet) are the variants `epnet` (EPNet, then a plain DNN) and `ppnet`
(PPNet with the id priors; the scenario prior is not a gate input there, but, as for every baseline, the
scenario id is one more field of E, so PPNet alone is not blind to the scenario).
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
    entity_fields,
    sparse_field_positions,
)
from mscbench.models.blocks.mlp import MLP
from mscbench.models.cel import EmbeddingSettings


@dataclass(frozen=True)
class PEPNetConfig(EmbeddingSettings):
    """Hyperparameters of `pepnet` (defaults: MI-DPG's backbone; gates as FuxiCTR's PPNet)."""

    embedding_dim: int = 16  # width of every field embedding and of the scenario embedding e_t
    hidden: tuple[int, ...] = (128, 64, 32)  # backbone MLP widths (then one output unit)
    gate_hidden: int = 64  # hidden width of every GateNU
    gamma: float = 2.0  # gate range (0, γ)
    epnet_granularity: Literal["field", "dim"] = "field"  # one EPNet gate per field, or per embedding dim
    prior_fields: tuple[str, ...] = ()  # PPNet's prior id fields; () = the user field and first item field
    use_epnet: bool = True  # personalise the embeddings with the scenario prior
    use_ppnet: bool = True  # personalise the hidden units with the id priors
    dropout: float = 0.0  # dropout after each hidden layer


class GateNU(nn.Module):
    """PEPNet's gate neural unit: `γ · σ(W_2^T ReLU(W_1^T x + b_1) + b_2)`, in (0, γ).

    With γ = 2 a gate near its centre leaves what it scales unchanged (σ(0) · 2 = 1).
    """

    def __init__(self, input_dim: int, output_dim: int, hidden: int, gamma: float = 2.0):
        super().__init__()
        self.mlp = MLP(input_dim, (hidden,), output_dim=output_dim)
        self.gamma = gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gamma * torch.sigmoid(self.mlp(x))  # [B, output_dim]


@register("pepnet", config=PEPNetConfig, multi_scenario=True,
          description="EPNet + PPNet gate units (γ·σ in (0, 2)), scenario as prior",
          paper="Chang et al., PEPNet: Parameter and Embedding Personalized Network for Infusing with "
                "Personalized Prior Information (KDD)", year=2023)
class PEPNet(nn.Module):
    def __init__(self, manifest: Manifest, config: PEPNetConfig):
        super().__init__()
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim, with_scenario=not config.use_epnet)
        dim = config.embedding_dim
        fields = self.embedding.num_fields + self.embedding.num_sequences  # k
        width = self.embedding.flat_dim
        self.scenario_embedding = self.embedding_gate = None
        if config.use_epnet:
            self.scenario_embedding = nn.Embedding(manifest.num_scenarios, dim)  # e_t
            nn.init.normal_(self.scenario_embedding.weight, std=EMBEDDING_INIT_STD)
            gates = fields if config.epnet_granularity == "field" else fields * dim
            self.embedding_gate = GateNU(dim + fields * dim, gates, config.gate_hidden, config.gamma)
        widths = [width, *config.hidden]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.prior_fields = (sparse_field_positions(manifest, config.prior_fields or entity_fields(manifest),
                                                    "pepnet: prior_fields") if config.use_ppnet else [])
        self.hidden_gates = nn.ModuleList(
            GateNU(len(self.prior_fields) * dim + width, size, config.gate_hidden, config.gamma)
            for size in config.hidden
        ) if config.use_ppnet else None
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(widths[-1], 1)

    def forward(self, batch: Batch) -> ModelOutput:
        general = self.embedding.pooled_fields(batch)  # [B, k, d]  E
        extras = {}
        personalised = general
        if self.embedding_gate is not None:  # EPNet
            prior = self.scenario_embedding(batch.scenario)  # [B, d]  e_t
            gate = self.embedding_gate(torch.cat([prior, general.detach().flatten(1)], dim=1))  # [B, k | k·d]
            personalised = general * gate.view(len(general), general.shape[1], -1)  # [B, k, d]  O_ep
            extras["embedding_gate"] = gate
        h = torch.cat([personalised.flatten(1), batch.dense], dim=1)  # [B, input_dim]  h_0
        gate_input = None
        if self.hidden_gates is not None:  # PPNet
            prior = general[:, self.prior_fields].flatten(1)  # [B, |prior|·d]  O_prior
            gate_input = torch.cat([prior, h.detach()], dim=1)
        for l, layer in enumerate(self.layers):
            h = torch.relu(layer(h))  # [B, d_{l+1}]
            if gate_input is not None:
                extras[f"hidden_gate_{l}"] = self.hidden_gates[l](gate_input)  # [B, d_{l+1}]  δ^l
                h = h * extras[f"hidden_gate_{l}"]
            h = self.dropout(h)
        return ModelOutput(self.output(h).squeeze(1), extras=extras)

    def scenario_parameters(self, scenario: int) -> list[tuple[nn.Parameter, int]]:
        """Row t of e_t's table (EPNet's prior, or the scenario field when EPNet is off)."""
        table = self.scenario_embedding if self.scenario_embedding is not None else self.embedding.scenario
        return [(table.weight, scenario)]


register_variant("epnet", "pepnet", "EPNet alone: scenario-gated field embeddings, then a plain DNN",
                 use_ppnet=False)
register_variant("ppnet", "pepnet", "PPNet alone: hidden units gated by the user/item id priors",
                 use_epnet=False)
