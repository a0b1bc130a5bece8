"""DUPN: the user representation is shared across scenarios; the property enters the LSTM gates only;
padding is ignored; the attention is a softmax over the present behaviours."""

from __future__ import annotations

import dataclasses

import torch

from mscbench.models import build_model
from mscbench.models.dupn import PropertyGatedLSTM
from tests.helpers import random_batch, tiny_manifest


def dupn_and_batch():
    torch.manual_seed(0)
    manifest = tiny_manifest()
    return manifest, build_model("dupn", manifest).eval(), random_batch(manifest, 24)


def test_user_representation_is_the_same_in_every_scenario_while_the_heads_differ():
    manifest, model, batch = dupn_and_batch()
    moved = dataclasses.replace(batch, scenario=(batch.scenario + 1) % manifest.num_scenarios)
    with torch.no_grad():
        here, there = model(batch), model(moved)
    assert torch.equal(here.extras["user_representation"], there.extras["user_representation"])
    assert (here.logit != there.logit).all()


def test_padding_changes_nothing():
    _, model, batch = dupn_and_batch()
    assert (~batch.seq_mask).any()
    with torch.no_grad():
        before = model(batch)
        for table in [*model.embedding.tables, model.gap.table]:
            table.weight[0].normal_(std=10.0)
        after = model(batch)
    assert torch.equal(before.logit, after.logit)


def test_attention_is_a_softmax_over_present_behaviours():
    _, model, batch = dupn_and_batch()
    with torch.no_grad():
        weights = model(batch).extras["attention"]
    any_present = batch.seq_mask.any(1)
    assert not any_present.all()  # some rows have no behaviour at all: their weights are zero
    torch.testing.assert_close(weights.sum(1), any_present.float())
    assert torch.count_nonzero(weights[~batch.seq_mask]) == 0


def test_property_reaches_the_state_through_the_gates_only():
    torch.manual_seed(0)
    lstm = PropertyGatedLSTM(item_dim=4, property_dim=3, hidden=5)
    items, mask = torch.randn(6, 4, 4), torch.ones(6, 4, dtype=torch.bool)
    properties, other_properties = torch.randn(6, 4, 3), torch.randn(6, 4, 3)
    with torch.no_grad():
        assert not torch.equal(lstm(items, properties, mask), lstm(items, other_properties, mask))
        lstm.gate_input.weight.zero_()  # gates no longer read the input: σ(50) == 1 exactly
        lstm.gate_input.bias.fill_(50.0)
        assert torch.equal(lstm(items, properties, mask), lstm(items, other_properties, mask))
