"""AdaptDHM: rows routed to learned clusters, not to their scenario; centres are saved, trained state."""

import io

import torch

from mscbench.models import build_model
from tests.helpers import random_batch, tiny_manifest

SMALL = {"embedding_dim": 4, "hidden": [6], "num_clusters": 3}


def built(seed=0, **values):
    torch.manual_seed(seed)
    manifest = tiny_manifest()
    return manifest, build_model("adaptdhm", manifest, {**SMALL, **values})


def test_routing_ignores_the_scenario_id():
    manifest, model = built()
    model.eval()
    batch = random_batch(manifest, 16)
    moved = random_batch(manifest, 16)
    moved.scenario = (batch.scenario + 1) % manifest.num_scenarios
    with torch.no_grad():
        assert torch.equal(model(batch).extras["cluster"], model(moved).extras["cluster"])
        assert not torch.equal(model(batch).logit, model(moved).logit)  # the networks still read the id


def test_centres_are_refined_once_per_training_step_and_only_read_in_evaluation():
    manifest, model = built()
    batch = random_batch(manifest, 32)
    start = model.running_centres.clone()
    model.eval()
    with torch.no_grad():
        model(batch)
    assert torch.equal(model.running_centres, start)
    model.train()
    model(batch)
    fields = model.embedding.pooled_fields(batch)
    others = [i for i in range(fields.shape[1]) if i != model.scenario_field]
    routing = torch.nn.functional.normalize(torch.cat([fields[:, others].flatten(1), batch.dense], 1), dim=1)
    torch.testing.assert_close(model.running_centres, model.refined(routing.detach(), start))
    assert torch.allclose(model.running_centres.norm(dim=1), torch.ones(3))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer)["running_centres"], model.running_centres)


def test_a_cluster_without_rows_gets_no_gradient():
    manifest, model = built()
    model.eval()
    with torch.no_grad():
        model.running_centres[2] = model.running_centres[0]  # ties go to cluster 0: cluster 2 gets no row
    output = model(random_batch(manifest, 24))
    used = set(output.extras["cluster"].argmax(1).tolist())
    output.logit.sum().backward()
    assert 2 not in used
    for k in range(3):
        grads = [p.grad for p in model.cluster_parameters(k)]
        if k in used:
            assert all(g.abs().sum() > 0 for g in grads)
        else:
            assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
