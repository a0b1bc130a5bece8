"""Blocks over a behaviour sequence: time-gap positions, multi-head self-attention, the transformer block
and the pooling of its outputs."""

from __future__ import annotations

import torch
from torch import nn

from mscbench.config import ConfigError
from mscbench.data.batch import Batch
from mscbench.models.blocks.embedding import EMBEDDING_INIT_STD

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
    """BST's transformer block (docs/models.md#bst):

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
