"""DIN: the attention weights depend on the target item, and padded behaviours count for exactly nothing."""

from __future__ import annotations

import dataclasses

import torch

from mscbench.models import build_model
from mscbench.models.din import ActivationUnit
from tests.helpers import random_batch, tiny_manifest

ITEM_FIELD = 1  # tiny_manifest: item_id, the target of hist_item


def din_and_batch():
    torch.manual_seed(0)
    manifest = tiny_manifest()
    model = build_model("din", manifest).eval()
    return model, random_batch(manifest, 24)


def test_attention_weights_change_when_the_target_item_changes():
    model, batch = din_and_batch()
    sparse = batch.sparse.clone()
    sparse[:, ITEM_FIELD] = sparse[:, ITEM_FIELD] % 38 + 2  # another item for every row
    with torch.no_grad():
        before = model(batch).extras["attention"]
        after = model(dataclasses.replace(batch, sparse=sparse)).extras["attention"]
    present = batch.seq_mask
    assert present.any(1).sum() > 10
    assert (before != after)[present].all()


def test_padded_positions_get_zero_weight_and_their_embeddings_do_not_matter():
    model, batch = din_and_batch()
    assert (~batch.seq_mask).any()
    with torch.no_grad():
        output = model(batch)
        for table in model.embedding.tables:  # make the padding rows anything but zero
            table.weight[0].normal_(std=10.0)
        changed = model(batch)
    assert torch.count_nonzero(output.extras["attention"][~batch.seq_mask]) == 0
    assert torch.equal(output.logit, changed.logit)


def test_weights_are_not_normalised():
    model, batch = din_and_batch()
    with torch.no_grad():
        totals = model(batch).extras["attention"].sum(1)[batch.seq_mask.any(1)]
    assert not torch.allclose(totals, torch.ones_like(totals))


def test_the_activation_unit_applies_its_first_layer_to_the_four_part_input_of_eq_3():
    """The regrouped first layer is the FFN on [e_i ⊕ e_a ⊕ (e_i - e_a) ⊕ (e_i ⊙ e_a)], values and gradients."""
    torch.manual_seed(0)
    unit = ActivationUnit(6, (5, 4))
    behaviours, target = torch.randn(3, 7, 6), torch.randn(3, 6)
    mask = torch.rand(3, 7) > 0.3
    weights = unit(behaviours, target, mask)
    weights.sum().backward()
    regrouped = [p.grad.clone() for p in unit.parameters()]
    unit.zero_grad()
    pairs = torch.cat([behaviours, target.unsqueeze(1).expand_as(behaviours), behaviours - target.unsqueeze(1),
                       behaviours * target.unsqueeze(1)], -1)  # eq. 3, literally
    literal = torch.where(mask, unit.ffn(pairs).squeeze(-1), torch.zeros(()))
    literal.sum().backward()
    torch.testing.assert_close(weights, literal)
    for grad, parameter in zip(regrouped, unit.parameters(), strict=True):
        torch.testing.assert_close(grad, parameter.grad)
