"""AdaSparse: scenario-conditioned neuron-level weighting and pruning of every layer's input.

Yang et al., AdaSparse: Learning Adaptively Sparse Structures for Multi-Domain Click-Through Rate
Prediction (CIKM 2022), docs/models.md#adasparse, with the pruner placed as in Scenario-Wise-Rec (on each layer's input):

    v^l     = W_p^{l T} (e_t ⊕ h^l)                       (linear, no bias; e_t scenario embedding)
    π^l     = form(v^l)                                  (Fusion: β·σ(α v), entries ≤ ε set to 0)
    h^{l+1} = Dropout(ReLU(W_l^T (π^l ⊙ h^l) + b_l)),   h^0 = ⊕_f e_f ⊕ e_t ⊕ z
    logit   = w_o^T (π^L ⊙ h^L) + b_o

The other forms: Scaling π = β·σ(v) with entries < ε set to 0; Binarization π = 1[σ(α v) ≥ ε] (trained
through σ(α v) by a straight-through estimator). α = α_0 + `alpha_growth` · step, set by the trainer before
every training step (`advance_schedule`), so σ(α v) sharpens towards a step; forward only reads α. Optional sparsity
regulariser (the paper's form is not recovered; this one is mscbench's):

    aux = λ_s Σ_l [ max(0, r_min - r_l) + max(0, r_l - r_max) ],   r_l = mean σ((ε - β σ(α v^l)) / τ)

the sigmoid-relaxed fraction of pruned neurons of layer l.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import FeatureEmbedding
from mscbench.models.cel import EmbeddingSettings


@dataclass(frozen=True)
class AdaSparseConfig(EmbeddingSettings):
    """Hyperparameters of `adasparse` (defaults: MI-DPG's backbone; pruner as in the public implementations, docs/models.md#adasparse)."""

    embedding_dim: int = 16  # width of every field embedding and of the scenario embedding e_t
    hidden: tuple[int, ...] = (128, 64, 32)  # backbone MLP widths (then one output unit)
    form: Literal["fusion", "scaling", "binarization"] = "fusion"  # how v becomes the factor π
    beta: float = 2.0  # factor range (0, β)
    epsilon: float = 0.25  # factors at or below ε are pruned to exactly 0
    alpha: float = 1.0  # initial sharpness α of σ(α v)
    alpha_growth: float = 1e-4  # added to α per training step
    dropout: float = 0.2  # dropout after each hidden layer
    sparsity_weight: float = 0.0  # λ_s of the sparsity regulariser (0 = off)
    sparsity_band: tuple[float, ...] = (0.1, 0.3)  # (r_min, r_max): target pruned fraction of each layer
    sparsity_temperature: float = 0.05  # τ of the relaxed pruning mask


@register("adasparse", config=AdaSparseConfig, multi_scenario=True,
          description="scenario-conditioned neuron weighting/pruning factors on every layer's input",
          paper="Yang et al., AdaSparse: Learning Adaptively Sparse Structures for Multi-Domain "
                "Click-Through Rate Prediction (CIKM)", year=2022)
class AdaSparse(nn.Module):
    def __init__(self, manifest: Manifest, config: AdaSparseConfig):
        super().__init__()
        self.embedding = FeatureEmbedding(manifest, config.embedding_dim, with_scenario=True)
        widths = [self.embedding.flat_dim, *config.hidden]
        self.pruners = nn.ModuleList(nn.Linear(config.embedding_dim + w, w, bias=False)  # W_p^l
                                     for w in widths)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(widths))
        self.output = nn.Linear(widths[-1], 1)
        self.dropout = nn.Dropout(config.dropout)
        self.register_buffer("alpha", torch.tensor(config.alpha))
        self.config = config

    def forward(self, batch: Batch) -> ModelOutput:
        scenario = self.embedding.scenario(batch.scenario)  # [B, d]  e_t
        h = self.embedding.flat(batch)  # [B, input_dim]  h^0
        extras, penalties = {}, []
        for l, pruner in enumerate(self.pruners):
            v = pruner(torch.cat([scenario, h], dim=1))  # [B, d_l]  v^l
            extras[f"factor_{l}"] = self.factor(v)  # [B, d_l]  π^l
            h = extras[f"factor_{l}"] * h  # π^l ⊙ h^l
            if l < len(self.layers):
                h = self.dropout(torch.relu(self.layers[l](h)))  # [B, d_{l+1}]
            if self.config.sparsity_weight:
                penalties.append(self.band_penalty(v))
        aux = self.config.sparsity_weight * torch.stack(penalties).sum() if penalties else None
        return ModelOutput(self.output(h).squeeze(1), aux, extras)

    def advance_schedule(self, step: int) -> None:
        """α after `step` training steps (a buffer: saved with the weights, read-only in forward)."""
        self.alpha.fill_(self.config.alpha + self.config.alpha_growth * step)

    def scenario_parameters(self, scenario: int) -> list[tuple[nn.Parameter, int]]:
        """Scenario t owns row t of the scenario embedding e_t (every other parameter is shared)."""
        return [(self.embedding.scenario.weight, scenario)]

    def factor(self, v: torch.Tensor) -> torch.Tensor:
        """π = form(v), zero where pruned."""
        config = self.config
        if config.form == "binarization":
            soft = torch.sigmoid(self.alpha * v)
            return (soft >= config.epsilon).to(v.dtype) + (soft - soft.detach())  # straight-through
        if config.form == "scaling":
            scaled = config.beta * torch.sigmoid(v)
            return torch.where(scaled < config.epsilon, torch.zeros_like(scaled), scaled)
        scaled = config.beta * torch.sigmoid(self.alpha * v)
        return torch.where(scaled <= config.epsilon, torch.zeros_like(scaled), scaled)

    def band_penalty(self, v: torch.Tensor) -> torch.Tensor:
        """max(0, r_min - r) + max(0, r - r_max) for the relaxed pruned fraction r of one layer."""
        config = self.config
        unthresholded = config.beta * torch.sigmoid(self.alpha * v)
        pruned = torch.sigmoid((config.epsilon - unthresholded) / config.sparsity_temperature).mean()  # r_l
        low, high = config.sparsity_band
        return torch.relu(low - pruned) + torch.relu(pruned - high)
