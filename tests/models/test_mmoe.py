"""MMoE: each sample is mixed by its own scenario's gate and scored by its own scenario's tower."""

import torch

from mscbench.models import build_model
from tests.helpers import random_batch, tiny_manifest


def built():
    torch.manual_seed(0)
    manifest = tiny_manifest()
    return manifest, build_model("mmoe", manifest, {"embedding_dim": 4, "expert": [8, 6]}).eval()


def test_each_sample_uses_its_own_scenarios_gate():
    manifest, model = built()
    batch = random_batch(manifest, 16)
    with torch.no_grad():
        before = model(batch)
        model.gates[2][0].weight.zero_()  # scenario 2's gate becomes uniform
        after = model(batch)
    own = batch.scenario == 2
    assert not torch.allclose(before.logit[own], after.logit[own])
    assert torch.equal(before.logit[~own], after.logit[~own])
    torch.testing.assert_close(after.extras["gate"][own], torch.full((int(own.sum()), 4), 0.25))


def test_each_sample_uses_its_own_scenarios_tower():
    manifest, model = built()
    batch = random_batch(manifest, 16)
    with torch.no_grad():
        before = model(batch).logit
        model.towers[1].layers[-1].bias.add_(1.5)
        after = model(batch).logit
    own = batch.scenario == 1
    torch.testing.assert_close(after[own], before[own] + 1.5)
    assert torch.equal(after[~own], before[~own])


def test_logit_is_the_tower_of_the_gated_mixture_of_experts():
    manifest, model = built()
    batch = random_batch(manifest, 8)
    with torch.no_grad():
        x = model.embedding.flat(batch)
        expected = []
        for row, scenario in enumerate(batch.scenario.tolist()):
            gate = torch.softmax(x[row] @ model.gates[scenario][0].weight.T, dim=0)  # [E]
            mixture = sum(g * expert(x[row : row + 1]) for g, expert in zip(gate, model.experts))
            expected.append(model.towers[scenario](mixture).squeeze())
        torch.testing.assert_close(model(batch).logit, torch.stack(expected))
