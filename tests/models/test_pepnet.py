"""PEPNet: gates in (0, 2) scale field embeddings and hidden units; stop-gradients; scenario rows isolated."""

import torch

from mscbench.models import build_model
from tests.helpers import random_batch, tiny_manifest

SMALL = {"embedding_dim": 4, "hidden": [8, 6], "gate_hidden": 5}


def built(**values):
    torch.manual_seed(0)
    manifest = tiny_manifest()
    return manifest, build_model("pepnet", manifest, {**SMALL, **values})


def test_gates_lie_in_zero_two_and_scale_embeddings_and_hidden_units():
    manifest, model = built()
    batch = random_batch(manifest, 12)
    with torch.no_grad():
        for parameter in [*model.embedding_gate.parameters(), *model.hidden_gates.parameters()]:
            parameter.mul_(3)  # push the gates far from 1
        output = model(batch)
        general = model.embedding.pooled_fields(batch)  # [B, k=6, d]
        prior = model.scenario_embedding(batch.scenario)
        gate = model.embedding_gate(torch.cat([prior, general.flatten(1)], 1))
        h0 = torch.cat([(general * gate.unsqueeze(2)).flatten(1), batch.dense], 1)  # field × its gate
        prior = general[:, [0, 1]].flatten(1)  # user_id, item_id
        h = h0
        for layer, hidden_gate in zip(model.layers, model.hidden_gates):
            h = torch.relu(layer(h)) * hidden_gate(torch.cat([prior, h0], 1))
        torch.testing.assert_close(output.logit, model.output(h).squeeze(1))
    gates = [output.extras["embedding_gate"], output.extras["hidden_gate_0"], output.extras["hidden_gate_1"]]
    assert gate.shape == (12, 6)
    for values in gates:
        assert (values > 0).all() and (values < 2).all()
        assert (values - 1).abs().max() > 0.3  # far from the neutral 1, so the scaling is really tested


def test_dim_granularity_gates_every_embedding_dimension():
    manifest, model = built(epnet_granularity="dim")
    assert model(random_batch(manifest, 4)).extras["embedding_gate"].shape == (4, 6 * 4)


def test_gates_do_not_train_the_embeddings_they_select_from():
    manifest, model = built()
    output = model(random_batch(manifest, 12))
    category, user = model.embedding.tables[2].weight, model.embedding.tables[0].weight
    gate = output.extras["embedding_gate"].sum()
    grads = torch.autograd.grad(gate, [category, model.scenario_embedding.weight], allow_unused=True)
    assert grads[0] is None and torch.count_nonzero(grads[1]) > 0  # E reaches the gate only through sg
    hidden = output.extras["hidden_gate_1"].sum()
    grads = torch.autograd.grad(hidden, [category, user, *model.embedding_gate.parameters()],
                                allow_unused=True)
    assert grads[1].abs().sum() > 0  # the prior ids train through the gate
    assert all(g is None or torch.count_nonzero(g) == 0 for g in (grads[0], *grads[2:]))


def test_scenario_embedding_rows_get_gradient_only_from_their_scenario():
    manifest, model = built()
    output = model(random_batch(manifest, 16, scenarios=[0, 1]))
    torch.nn.functional.binary_cross_entropy_with_logits(output.logit, torch.ones(16)).backward()
    grad = model.scenario_embedding.weight.grad  # [N, d]
    assert (grad[:2].abs().sum(1) > 0).all()
    assert torch.count_nonzero(grad[2:]) == 0


def test_halves_switch_off():
    manifest, model = built(use_epnet=False, use_ppnet=False)
    assert model.scenario_embedding is None and model.hidden_gates is None
    assert model(random_batch(manifest, 4)).extras == {}
