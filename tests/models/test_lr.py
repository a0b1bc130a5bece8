"""LR is linear in the one-hot features: changing one field's id moves the logit by w[new] - w[old]."""

from __future__ import annotations

import dataclasses

import torch

from mscbench.models import build_model
from tests.helpers import random_batch, tiny_manifest


def built_in_double():
    torch.manual_seed(0)
    manifest = tiny_manifest()
    model = build_model("lr", manifest).double()
    batch = random_batch(manifest, 16)
    return manifest, model, dataclasses.replace(batch, dense=batch.dense.double())


def test_changing_one_field_moves_the_logit_by_the_difference_of_its_weights():
    manifest, model, batch = built_in_double()
    weights = model.linear.weights
    base = model(batch).logit
    for field, feature in enumerate(manifest.sparse):
        old = batch.sparse[:, field]
        new = (old - 1) % (feature.vocab_size - 2) + 2  # another valid id in 2..vocab-1
        sparse = batch.sparse.clone()
        sparse[:, field] = new
        table = weights.tables[weights.sparse_tables[field]].weight[:, 0]
        expected = base + table[new] - table[old]
        torch.testing.assert_close(model(dataclasses.replace(batch, sparse=sparse)).logit, expected,
                                   rtol=0, atol=1e-12)
    scenario = (batch.scenario + 1) % manifest.num_scenarios
    expected = base + weights.scenario.weight[scenario, 0] - weights.scenario.weight[batch.scenario, 0]
    torch.testing.assert_close(model(dataclasses.replace(batch, scenario=scenario)).logit, expected,
                               rtol=0, atol=1e-12)


def test_dense_features_enter_linearly():
    _, model, batch = built_in_double()
    shift = torch.randn_like(batch.dense)
    expected = model(batch).logit + shift @ model.linear.dense.weight[0]
    moved = model(dataclasses.replace(batch, dense=batch.dense + shift)).logit
    torch.testing.assert_close(moved, expected, rtol=0, atol=1e-12)
