"""PLE: the extraction network follows docs/models.md#ple's equations; scenario experts learn from their scenario."""

import pytest
import torch

from mscbench.models import build_model
from tests.helpers import random_batch, tiny_manifest

SMALL = {"embedding_dim": 4, "expert": [8, 6], "tower": [4]}


def built(**values):
    torch.manual_seed(0)
    manifest = tiny_manifest()
    return manifest, build_model("ple", manifest, {**SMALL, **values})


def gated(gate, x, experts):
    return sum(w * e for w, e in zip(torch.softmax(gate.weight @ x, dim=0), experts))


def reference_logit(model, x, scenario):
    """One row through the equations of docs/models.md#ple, written as plain loops over experts and scenarios."""
    inputs = [x] * len(model.towers)
    shared_input = x
    for level in model.levels:
        shared = [expert(shared_input) for expert in level.shared]
        specific = [[expert(inputs[t]) for expert in cell.experts] for t, cell in enumerate(level.scenarios)]
        outputs = [gated(cell.gate, inputs[t], specific[t] + shared)
                   for t, cell in enumerate(level.scenarios)]
        if level.shared_gate is not None:
            shared_input = gated(level.shared_gate, shared_input, [e for s in specific for e in s] + shared)
        inputs = outputs
    return model.towers[scenario](inputs[scenario]).squeeze()


@pytest.mark.parametrize("levels", [1, 2])
def test_logit_follows_the_extraction_network_equations(levels):
    manifest, model = built(levels=levels)
    batch = random_batch(manifest, 8)
    with torch.no_grad():
        x = model.embedding.flat(batch)
        expected = torch.stack([reference_logit(model, x[i], int(s)) for i, s in enumerate(batch.scenario)])
        torch.testing.assert_close(model(batch).logit, expected)
    assert model.levels[-1].shared_gate is None
    if levels == 2:  # the lower shared gate weighs every scenario's 2 experts plus the shared one
        assert model.levels[0].shared_gate.weight.shape[0] == manifest.num_scenarios * 2 + 1


def backward_on_scenarios_0_and_1(model, manifest):
    output = model(random_batch(manifest, 16, scenarios=[0, 1]))
    torch.nn.functional.binary_cross_entropy_with_logits(output.logit, torch.ones(16)).backward()


def nonzero(parameters):
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in parameters)


def test_two_levels_keep_scenario_experts_isolated():
    manifest, model = built(levels=2)
    backward_on_scenarios_0_and_1(model, manifest)
    assert nonzero(model.scenario_parameters(0)) and nonzero(model.scenario_parameters(1))
    for scenario in (2, 3):
        assert not nonzero(model.scenario_parameters(scenario))


def test_without_isolation_lower_shared_gate_trains_every_scenarios_experts():
    """PLE's own design (isolate_specific=False): lower-level experts learn from every scenario."""
    manifest, model = built(levels=2, isolate_specific=False)
    backward_on_scenarios_0_and_1(model, manifest)
    assert nonzero(model.levels[0].scenarios[3].experts.parameters())
    assert not nonzero(model.levels[1].scenarios[3].parameters())  # the top level is routed
    assert not nonzero(model.towers[3].parameters())
