"""DeepFM: the sum-square trick equals the explicit pairwise sum, and the model adds FM and MLP logits."""

from __future__ import annotations

import itertools

import torch

from mscbench.models import build_model
from mscbench.models.deepfm import FMInteraction
from tests.helpers import random_batch, tiny_manifest


def pairwise(fields: torch.Tensor) -> torch.Tensor:
    """Σ_{f<f'} <v_f, v_f'>, term by term: [B, n, d] -> [B]."""
    pairs = itertools.combinations(range(fields.shape[1]), 2)
    return sum((fields[:, f] * fields[:, g]).sum(1) for f, g in pairs)


def test_sum_square_trick_equals_the_explicit_pairwise_sum():
    fields = torch.randn(5, 7, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(FMInteraction()(fields), pairwise(fields), rtol=0, atol=1e-12)


def test_logit_is_first_order_plus_pairwise_interactions_of_every_field_plus_mlp():
    torch.manual_seed(0)
    manifest = tiny_manifest()
    model = build_model("deepfm", manifest).double()
    batch = random_batch(manifest, 8)
    batch.dense = batch.dense.double()
    with torch.no_grad():
        rows = model.embedding.pooled_fields(batch)  # 4 fields + scenario + 2 pooled sequences: [v_f ⊕ w_f]
        vectors, weights = rows[..., :-1], rows[..., -1]
        first_order = weights.sum(1) + batch.dense @ model.dense_linear.weight[0] + model.dense_linear.bias
        dense_fields = batch.dense.unsqueeze(2) * model.dense_vectors
        fm_fields = torch.cat([vectors, dense_fields], dim=1)
        deep = model.mlp(torch.cat([vectors.flatten(1), batch.dense], 1)).squeeze(1)
        expected = first_order + pairwise(fm_fields) + deep
        assert fm_fields.shape[1] == len(manifest.sparse) + 1 + len(manifest.sequences) + len(manifest.dense)
        torch.testing.assert_close(model(batch).logit, expected, rtol=0, atol=1e-12)


def test_the_first_order_weights_are_trained_like_a_table_of_their_own():
    """w_f[x] shares the id's embedding row but not its update: Adam moves each column by its own gradient."""
    torch.manual_seed(0)
    manifest = tiny_manifest()
    model = build_model("deepfm", manifest)
    batch = random_batch(manifest, 16)
    rows = model.embedding.pooled_fields(batch)
    rows[..., -1].sum().backward()  # the first-order term alone
    grads = [table.weight.grad for table in model.embedding.tables]
    assert all(torch.count_nonzero(grad[:, :-1]) == 0 for grad in grads)
    assert sum(torch.count_nonzero(grad[:, -1]) for grad in grads) > 0
