"""HMoE: scenario towers mixed in the label space, with stop-gradient on the other scenarios' predictions."""

import torch

from mscbench.models import build_model
from tests.helpers import random_batch, tiny_manifest

SMALL = {"embedding_dim": 4, "expert_hidden": [8], "gate_hidden": [4], "tower_hidden": [4],
         "weight_hidden": [4]}


def built(**values):
    torch.manual_seed(0)
    manifest = tiny_manifest()
    return manifest, build_model("hmoe", manifest, {**SMALL, **values})


def tower_logits(model, batch):
    """Every scenario tower's logit for every sample, recomputed from the equations (1)-(2): [B, N]."""
    x = model.embedding.flat(batch)
    experts = torch.stack([expert(x) for expert in model.experts], 1)
    return torch.cat([tower((torch.softmax(gate(x), -1).unsqueeze(1) @ experts).squeeze(1))
                      for gate, tower in zip(model.gates, model.towers)], 1)


def test_prediction_is_the_relationship_weighted_mixture_of_every_towers_probability():
    manifest, model = built()
    batch = random_batch(manifest, 12)
    with torch.no_grad():
        logit = model(batch).logit
        weights = torch.softmax(model.relationship(model.embedding.flat(batch)), 1)
        mixed = (weights * torch.sigmoid(tower_logits(model, batch))).sum(1)  # p_t = Σ_j w_j ŷ_j
    torch.testing.assert_close(torch.sigmoid(logit), mixed)


def test_logit_combination_mixes_tower_logits():
    manifest, model = built(combine="logit")
    batch = random_batch(manifest, 12)
    with torch.no_grad():
        weights = torch.softmax(model.relationship(model.embedding.flat(batch)), 1)
        torch.testing.assert_close(model(batch).logit, (weights * tower_logits(model, batch)).sum(1))


def test_a_scenario_batch_trains_only_its_own_tower_and_gate_but_reads_every_tower():
    """Task-constrained back-propagation: scenario-1 samples give zero gradient to towers and gates j != 1,
    while the relationship weights still learn from the other towers' (detached) predictions."""
    manifest, model = built()
    batch = random_batch(manifest, 16, scenarios=[1])
    model(batch).logit.sum().backward()
    for j in range(manifest.num_scenarios):
        grads = [p.grad for p in [*model.towers[j].parameters(), *model.gates[j].parameters()]]
        if j == 1:
            assert all(g is not None and g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
    assert all(p.grad.abs().sum() > 0 for p in model.relationship.parameters())
