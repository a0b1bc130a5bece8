"""M2M: experts over the sample's own features; a meta attention and a meta tower whose weights are
generated per sample from the scenario knowledge representation.

Zhang et al., Leaving No One Behind: A Multi-Scenario Multi-Task Meta Learning Approach for Advertiser
Modeling (WSDM 2022), docs/models.md#m2m [reconstructed from two agreeing write-ups, high]. X [L, d_x] the
behaviour tokens (all sequences side by side) with learned position embeddings, m the padding mask:

    (1) F = masked_mean(Transformer(X + P, m))                       one encoder layer over the L axis
    (2) E_i = MLP_i(F ⊕ X_other),  i = 1..M                          expert views, [M, d_v]
    (3) T = MLP_T(e_task)                                            the task view (one task: learned)
    (4) S̃ = MLP_S(e_s ⊕ A)                                           scenario knowledge (A = user profile)
    (5) Meta(h): for k = 1..K:  W^(k) = reshape(V_w^(k) S̃ + v_w^(k)),  b^(k) = V_b^(k) S̃ + v_b^(k),
                                h <- LeakyReLU(h W^(k) + b^(k))      weights generated per sample
    (6) α_i = softmax_i(v^T Meta_att(E_i ⊕ T)),   R = Σ_i α_i E_i     meta attention
    (7) L^(0) = R,   L^(j) = LeakyReLU(Meta_j(L^(j-1)) + L^(j-1)),  j = 1..L_T      meta tower (residual)
    (8) logit = w^T L^(L_T) + b                                      (Poisson heads -> one click logit)

`task_view = False` scores experts by v^T Meta_att(E_i). Every generated weight is a function of the
sample's own S̃, so nothing mixes samples of a batch. V_w holds d_s·d_h² parameters per generated layer.

Memory: the generated weights W^(k) are [B, d_h, d_h] per layer (64 MiB per 1,000 samples for the meta
attention's d_h = 128). Autograd would keep every layer's W^(k) for the backward pass, so `GeneratedMatmul`
keeps only h and S̃, generates W^(k) a chunk of the batch at a time and again when the gradients are
computed: one chunk of one layer's W^(k) is alive at a time (benchmarks/README.md, "m2m's memory").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mscbench.data.batch import Batch
from mscbench.data.manifest import Manifest
from mscbench.models.base import ModelOutput, register
from mscbench.models.blocks.embedding import EMBEDDING_INIT_STD, FeatureEmbedding, masked_mean
from mscbench.models.blocks.mlp import MLP
from mscbench.models.blocks.sequence import TransformerBlock
from mscbench.models.cel import EmbeddingSettings


@dataclass(frozen=True)
class M2MConfig(EmbeddingSettings):
    """Hyperparameters of `m2m` (paper values not recovered; mscbench's small-data defaults)."""

    embedding_dim: int = 16  # width of every field embedding and of the scenario embedding e_s
    num_experts: int = 4  # M expert views
    view_dim: int = 64  # d_v: width of every expert view and of the task view
    scenario_dim: int = 32  # d_s: width of the scenario knowledge S̃
    meta_layers: int = 2  # K generated layers per meta unit
    tower_layers: int = 2  # L_T residual meta-tower layers
    num_heads: int = 4  # heads of the sequence encoder
    task_view: bool = True  # score experts with the task view T
    dropout: float = 0.0  # dropout in the sequence encoder


class MetaUnit(nn.Module):
    """Eq. 5: K square layers whose weights and biases are linear functions of the scenario knowledge.

    Init (mscbench): V small, v_w = I / sqrt(d_h), so that every sample starts from the same well-scaled
    layer and scenario knowledge moves it away as it learns.
    """

    def __init__(self, width: int, condition_dim: int, layers: int):
        super().__init__()
        self.weight_generators = nn.ModuleList(nn.Linear(condition_dim, width * width) for _ in range(layers))
        self.bias_generators = nn.ModuleList(nn.Linear(condition_dim, width) for _ in range(layers))
        with torch.no_grad():
            for generator in self.weight_generators:
                nn.init.normal_(generator.weight, std=1e-3)
                generator.bias.copy_(torch.eye(width).flatten() * width ** -0.5)
        self.width = width

    def forward(self, h: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """`h` [B, ..., d_h], `condition` S̃ [B, d_s] -> [B, ..., d_h]."""
        for weights, biases in zip(self.weight_generators, self.bias_generators):
            rows = h.reshape(len(h), -1, self.width)  # [B, R, d_h], the R rows of each sample side by side
            transformed = GeneratedMatmul.apply(rows, condition, weights.weight, weights.bias)  # h W^(k)
            bias = biases(condition)  # [B, d_h]  b^(k)
            h = nn.functional.leaky_relu(transformed.view_as(h) + bias.view(len(bias), *[1] * (h.dim() - 2), -1))
        return h


def generate(condition: torch.Tensor, generator_weight: torch.Tensor, generator_bias: torch.Tensor,
             width: int) -> torch.Tensor:
    """W = reshape(V_w S̃ + v_w): [B, d_h, d_h] from `condition` S̃ [B, d_s] (Eq. 5)."""
    return torch.addmm(generator_bias, condition, generator_weight.t()).view(-1, width, width)


GENERATED_BYTES = 32 * 2 ** 20  # at most this much of W^(k) is generated at a time (a chunk of the batch)


def chunks(batch: int, width: int, element_size: int) -> list[slice]:
    """Slices of the batch whose generated weights [n, d_h, d_h] take at most GENERATED_BYTES."""
    size = max(1, GENERATED_BYTES // (width * width * element_size))
    return [slice(start, start + size) for start in range(0, batch, size)]


class GeneratedMatmul(torch.autograd.Function):
    """h W with W generated per sample from S̃, the same numbers as `torch.bmm(h, generate(...))` in less
    memory: W is generated for a chunk of the batch at a time (GENERATED_BYTES), and not kept for the backward
    pass, which saves h and S̃ and generates each chunk's W again. So at batch 4096 no more than one chunk of
    one layer's [B, d_h, d_h] weights (and of their gradient) is alive, not the whole batch's."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, rows, condition, generator_weight, generator_bias):  # rows [B, R, d_h], condition [B, d_s]
        ctx.save_for_backward(rows, condition, generator_weight, generator_bias)
        width = rows.shape[2]
        return torch.cat([torch.bmm(rows[part], generate(condition[part], generator_weight, generator_bias, width))
                          for part in chunks(len(rows), width, rows.element_size())])  # [B, R, d_h]

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad):  # grad [B, R, d_h]
        rows, condition, generator_weight, generator_bias = ctx.saved_tensors
        parts = [chunk_gradients(ctx.needs_input_grad, rows[part], condition[part], generator_weight,
                                 generator_bias, grad[part]) for part in chunks(len(rows), rows.shape[2],
                                                                               rows.element_size())]
        grad_rows, grad_condition, grad_generator_weight, grad_generator_bias = zip(*parts, strict=True)
        return (torch.cat(grad_rows) if ctx.needs_input_grad[0] else None,
                torch.cat(grad_condition) if ctx.needs_input_grad[1] else None,
                sum(grad_generator_weight), sum(grad_generator_bias))


def chunk_gradients(needs: tuple[bool, ...], rows: torch.Tensor, condition: torch.Tensor,
                    generator_weight: torch.Tensor, generator_bias: torch.Tensor, grad: torch.Tensor) -> tuple:
    """GeneratedMatmul's gradients from one chunk of the batch: with respect to h and S̃ (the chunk's rows),
    and the chunk's share of V_w's and v_w's."""
    grad_rows = None
    if needs[0]:
        weight = generate(condition, generator_weight, generator_bias, rows.shape[2])  # [n, d_h, d_h]
        grad_rows = torch.bmm(grad, weight.transpose(1, 2))
        del weight  # before the weight's own gradient, of the same size, is made
    grad_weight = torch.bmm(rows.transpose(1, 2), grad).flatten(1)  # [n, d_h²]  dL/dW
    grad_condition = grad_weight @ generator_weight if needs[1] else None
    return grad_rows, grad_condition, grad_weight.t() @ condition, grad_weight.sum(0)


@register("m2m", config=M2MConfig, needs_sequence=True, multi_scenario=True,
          description="experts over own features; meta attention and tower generated from scenario knowledge",
          paper="Zhang et al., Leaving No One Behind: A Multi-Scenario Multi-Task Meta Learning Approach for "
                "Advertiser Modeling (WSDM)", year=2022)
class M2M(nn.Module):
    def __init__(self, manifest: Manifest, config: M2MConfig):
        super().__init__()
        d = config.embedding_dim
        self.embedding = FeatureEmbedding(manifest, d)
        token = d * len(manifest.sequences)  # d_x
        self.positions = nn.Parameter(torch.randn(manifest.sequence_length, token) * EMBEDDING_INIT_STD)  # P
        self.encoder = TransformerBlock(token, config.num_heads, config.dropout)
        self.experts = nn.ModuleList(MLP(token + self.embedding.num_fields * d + self.embedding.num_dense,
                                         (config.view_dim,)) for _ in range(config.num_experts))
        self.task_embedding = nn.Parameter(torch.randn(config.view_dim) * EMBEDDING_INIT_STD)  # e_task
        self.task_mlp = MLP(config.view_dim, (config.view_dim,))  # MLP_T
        self.scenario_embedding = nn.Embedding(manifest.num_scenarios, d)  # e_s
        nn.init.normal_(self.scenario_embedding.weight, std=EMBEDDING_INIT_STD)
        self.profile = [i for i, f in enumerate(manifest.sparse) if f.side == "user"]  # A
        self.scenario_mlp = MLP(d * (1 + len(self.profile)), (config.scenario_dim,))  # MLP_S
        scored = 2 * config.view_dim if config.task_view else config.view_dim
        self.meta_attention = MetaUnit(scored, config.scenario_dim, config.meta_layers)
        self.attention_vector = nn.Linear(scored, 1, bias=False)  # v
        self.meta_tower = nn.ModuleList(MetaUnit(config.view_dim, config.scenario_dim, config.meta_layers)
                                        for _ in range(config.tower_layers))
        self.output = nn.Linear(config.view_dim, 1)
        self.use_task_view = config.task_view

    def forward(self, batch: Batch) -> ModelOutput:
        fields = self.embedding.fields(batch)  # [B, F, d]
        tokens = self.embedding.sequence(batch).transpose(1, 2).flatten(2) + self.positions  # [B, L, d_x]
        mask = batch.seq_mask  # [B, L]
        attend = mask | ~mask.any(1, keepdim=True)  # an empty history attends to padding, then is zeroed
        encoded = self.encoder.wrap(tokens, self.encoder.attention(tokens, attend), mask)  # [B, L, d_x]
        sequence = masked_mean(encoded.unsqueeze(1), mask).squeeze(1)  # [B, d_x]   (1) F
        own = torch.cat([sequence, fields.flatten(1), batch.dense], dim=1)  # F ⊕ X_other
        experts = torch.stack([expert(own) for expert in self.experts], dim=1)  # [B, M, d_v]   (2)
        knowledge = self.scenario_mlp(torch.cat([self.scenario_embedding(batch.scenario),
                                                 fields[:, self.profile].flatten(1)], dim=1))  # [B, d_s]  (4)
        scored = experts
        if self.use_task_view:
            task = self.task_mlp(self.task_embedding).expand_as(experts)  # [B, M, d_v]   (3) T
            scored = torch.cat([experts, task], dim=2)  # [B, M, 2 d_v]
        scores = self.attention_vector(self.meta_attention(scored, knowledge)).squeeze(2)  # [B, M]
        attention = torch.softmax(scores, dim=1)  # [B, M]   (6) α
        h = (attention.unsqueeze(2) * experts).sum(1)  # [B, d_v]   R
        for meta in self.meta_tower:
            h = nn.functional.leaky_relu(meta(h, knowledge) + h)  # (7)
        return ModelOutput(self.output(h).squeeze(1), extras={"expert_attention": attention.detach()})  # (8)

    def scenario_parameters(self, scenario: int) -> list[tuple[nn.Parameter, int]]:
        """Row t of e_s: everything else is shared, the scenario enters only through S̃ (a new scenario
        needs nothing but its embedding)."""
        return [(self.scenario_embedding.weight, scenario)]
