"""EPNet alone: the scenario prior gates the field embeddings, then a plain shared DNN."""

import torch

from mscbench.models import build_model
from tests.helpers import random_batch, tiny_manifest


def test_scenario_gated_embeddings_feed_an_ungated_dnn():
    torch.manual_seed(0)
    manifest = tiny_manifest()
    model = build_model("epnet", manifest, {"embedding_dim": 4, "hidden": [8, 6], "gate_hidden": 5})
    assert model.hidden_gates is None and model.embedding.scenario is None
    batch = random_batch(manifest, 10)
    with torch.no_grad():
        output = model(batch)
        general = model.embedding.pooled_fields(batch)
        prior = model.scenario_embedding(batch.scenario)
        gate = model.embedding_gate(torch.cat([prior, general.flatten(1)], 1))
        h = torch.cat([(general * gate.unsqueeze(2)).flatten(1), batch.dense], 1)
        for layer in model.layers:
            h = torch.relu(layer(h))
        torch.testing.assert_close(output.logit, model.output(h).squeeze(1))
    assert set(output.extras) == {"embedding_gate"}
