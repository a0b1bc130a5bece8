"""SAR-Net: scenario- and item-aware attention over one sample's behaviours, scenario transform, experts."""

import math

import torch

from mscbench.models import build_model
from tests.helpers import random_batch, tiny_manifest

SMALL = {"embedding_dim": 4, "attention_dim": 8, "num_heads": 2, "shared_experts": 3, "specific_experts": 2,
         "expert_hidden": [6], "head_hidden": [4], "dropout": 0.0}


def built(**values):
    torch.manual_seed(0)
    manifest = tiny_manifest()
    return manifest, build_model("sarnet", manifest, {**SMALL, **values})


def test_attention_is_a_softmax_over_the_samples_present_behaviours_per_head():
    _manifest, model = built()
    attention = model.item_attention
    query, keys = torch.randn(3, 8), torch.randn(3, 5, 8)
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    with torch.no_grad():
        out = attention(query, keys, keys, mask)
        q, k, v = attention.query(query), attention.key(keys), attention.value(keys)
        for b in range(2):
            present = mask[b]
            heads = []
            for h in range(2):
                part = slice(4 * h, 4 * h + 4)
                scores = k[b, present, part] @ q[b, part] / math.sqrt(4)
                heads.append(torch.softmax(scores, 0) @ v[b, present, part])
            torch.testing.assert_close(out[b], torch.cat(heads))
    assert torch.equal(out[2], torch.zeros(8))  # no behaviours: zero interest, not NaN


def test_each_attention_is_driven_by_its_own_query():
    """The scenario-aware interest moves with the scenario and not the target item; the item-aware one the
    other way round."""
    manifest, model = built()
    batch = random_batch(manifest, 6)
    other_scenario = random_batch(manifest, 6)
    other_scenario.scenario = (batch.scenario + 1) % manifest.num_scenarios
    other_item = random_batch(manifest, 6)
    other_item.sparse[:, 1:3] = (batch.sparse[:, 1:3] % 10) + 1
    interests = {}
    hooks = [module.register_forward_hook(lambda m, args, out, name=name: interests.__setitem__(name, out))
             for name, module in (("scenario", model.scenario_attention), ("item", model.item_attention))]
    with torch.no_grad():
        model(batch)
        base = dict(interests)
        model(other_scenario)
        moved_scenario = dict(interests)
        model(other_item)
        moved_item = dict(interests)
    for hook in hooks:
        hook.remove()
    assert not torch.allclose(base["scenario"], moved_scenario["scenario"])
    assert torch.equal(base["item"], moved_scenario["item"])
    assert not torch.allclose(base["item"], moved_item["item"])
    assert torch.equal(base["scenario"], moved_item["scenario"])


def test_scenario_transform_starts_as_identity_and_is_per_scenario():
    manifest, model = built()
    assert torch.equal(model.transform_scale, torch.ones_like(model.transform_scale))
    assert torch.equal(model.transform_shift, torch.zeros_like(model.transform_shift))
    model(random_batch(manifest, 8, scenarios=[3])).logit.sum().backward()
    grad = model.transform_scale.grad
    assert grad[3].abs().sum() > 0 and torch.count_nonzero(grad[:3]) == 0


def test_gate_mixes_shared_and_own_specific_experts():
    manifest, model = built()
    gate = model(random_batch(manifest, 8)).extras["gate"]
    assert gate.shape == (8, 3 + 2)
    torch.testing.assert_close(gate.sum(1), torch.ones(8))
