"""PPNet alone: hidden units gated by the user and item id priors; the scenario is an input field only."""

import torch

from mscbench.models import build_model
from tests.helpers import random_batch, tiny_manifest


def built():
    torch.manual_seed(0)
    manifest = tiny_manifest()
    return manifest, build_model("ppnet", manifest, {"embedding_dim": 4, "hidden": [8, 6], "gate_hidden": 5})


def test_id_priors_gate_every_hidden_layer_and_no_scenario_gates_the_embeddings():
    manifest, model = built()
    assert model.embedding_gate is None and model.prior_fields == [0, 1]  # user_id, item_id
    batch = random_batch(manifest, 10)
    with torch.no_grad():
        output = model(batch)
        general = model.embedding.pooled_fields(batch)  # the scenario is the field after the 4 sparse ones
        h0 = torch.cat([general.flatten(1), batch.dense], 1)
        h = h0
        for layer, gate in zip(model.layers, model.hidden_gates):
            h = torch.relu(layer(h)) * gate(torch.cat([general[:, [0, 1]].flatten(1), h0], 1))
        torch.testing.assert_close(output.logit, model.output(h).squeeze(1))
    assert set(output.extras) == {"hidden_gate_0", "hidden_gate_1"}


def test_the_scenario_field_is_seen_and_its_rows_are_isolated():
    manifest, model = built()
    batch = random_batch(manifest, 8, scenarios=[2])
    model(batch).logit.sum().backward()
    grad = model.embedding.scenario.weight.grad
    assert grad[2].abs().sum() > 0 and torch.count_nonzero(grad[[0, 1, 3]]) == 0
