"""BST: padding is invisible, time-gap positions matter, the target is always attended to."""

from __future__ import annotations

import dataclasses

import torch

from mscbench.models import build_model
from mscbench.models.blocks.sequence import TransformerBlock
from tests.helpers import random_batch, tiny_manifest


def bst_and_batch(size: int = 16):
    torch.manual_seed(0)
    manifest = tiny_manifest()
    model = build_model("bst", manifest).eval()
    return model, random_batch(manifest, size)


def test_padded_positions_content_changes_nothing():
    """Padding (id 0) may hold any embedding and any time gap: no prediction moves."""
    model, batch = bst_and_batch()
    padded = ~batch.seq_mask  # [B, L]
    assert padded.any() and (~padded).any()
    with torch.no_grad():
        before = model(batch).logit
        for table in model.embedding.tables:
            table.weight[0] = torch.randn(table.weight.shape[1])
        gaps = torch.where(padded, torch.randint(1, 32, padded.shape), batch.seq_gap)
        noisy_gaps = dataclasses.replace(batch, seq_gap=gaps)
        assert torch.equal(model(noisy_gaps).logit, before)


def test_time_gap_positions_matter():
    model, batch = bst_and_batch()
    present = batch.seq_mask
    moved = dataclasses.replace(batch, seq_gap=torch.where(present, batch.seq_gap + 10, batch.seq_gap))
    with torch.no_grad():
        changed = model(batch).logit != model(moved).logit
    assert torch.equal(changed, present.any(1))  # exactly the samples with some history move


def test_block_masks_padding_and_never_the_target():
    torch.manual_seed(0)
    block = TransformerBlock(8, num_heads=2, dropout=0.0)
    x = torch.randn(1, 4, 8)
    mask = torch.tensor([[False, False, False, True]])  # no history: only the target is present
    out = block(x, mask)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, :3], torch.zeros(3, 8))  # padded positions output zero
    changed = x.clone()
    changed[0, :3] += 5.0
    assert torch.equal(block(changed, mask), out)  # and their content does not reach the target
