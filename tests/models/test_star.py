"""STAR: W ⊙ W_t star layers, partitioned normalisation with per-scenario statistics, auxiliary logit."""

import torch

from mscbench.models import build_model
from mscbench.models.blocks.routing import PartitionedNorm, StarLinear
from tests.helpers import random_batch, tiny_manifest, torch_threads


def built():
    torch.manual_seed(0)
    manifest = tiny_manifest()
    return manifest, build_model("star", manifest, {"embedding_dim": 4, "hidden": [8, 6], "auxiliary": [4]})


def test_star_weight_is_the_elementwise_product_of_shared_and_scenario_weights():
    torch.manual_seed(0)
    layer = StarLinear(5, 3, num_scenarios=2)
    with torch.no_grad():
        layer.scenario_weight[1].normal_()
        layer.scenario_bias[1].normal_()
    assert torch.equal(layer.weight(1), layer.shared.weight * layer.scenario_weight[1])
    assert torch.equal(layer.weight(0), layer.shared.weight)  # W_t = 1 at init
    x = torch.randn(4, 5)
    weight = layer.shared.weight * layer.scenario_weight[1]
    expected = x @ weight.T + layer.shared.bias + layer.scenario_bias[1]
    torch.testing.assert_close(layer(x, 1), expected)


def test_partitioned_norm_uses_each_scenarios_own_rows_in_training():
    torch.manual_seed(0)
    norm = PartitionedNorm(3, num_scenarios=3, momentum=0.5)
    x = torch.randn(7, 3)
    scenario = torch.tensor([0, 1, 0, 1, 0, 2, 1])  # scenario 2 has a single row
    with torch.no_grad():
        norm.scenario_scale[1].fill_(2.0)
        norm.scenario_shift[1].fill_(0.5)
        norm.running_mean[2] = torch.tensor([1.0, 2.0, 3.0])
        out = norm(x, scenario)
    rows = x[scenario == 1]
    expected = 2 * (rows - rows.mean(0)) / torch.sqrt(rows.var(0, unbiased=False) + 1e-5) + 0.5
    torch.testing.assert_close(out[scenario == 1], expected)
    torch.testing.assert_close(out[5], (x[5] - torch.tensor([1.0, 2.0, 3.0])) / (1 + 1e-5) ** 0.5)
    torch.testing.assert_close(norm.running_mean[1], 0.5 * rows.mean(0))
    torch.testing.assert_close(norm.running_var[1], 0.5 + 0.5 * rows.var(0))
    assert torch.equal(norm.running_mean[2], torch.tensor([1.0, 2.0, 3.0]))  # < 2 rows: not updated
    assert torch.equal(norm.running_var[2], torch.ones(3))


def test_evaluation_uses_the_samples_own_scenario_running_statistics():
    manifest, model = built()
    model.train()
    model(random_batch(manifest, 32, seed=1))  # moves the running statistics
    model.eval()
    batch = random_batch(manifest, 8, seed=2)
    with torch.no_grad():
        before = model(batch).logit
        model.norm.running_mean[3] += 0.7
        after = model(batch).logit
    own = batch.scenario == 3
    assert (after[own] != before[own]).all()
    assert torch.equal(after[~own], before[~own])


def test_logit_is_star_network_plus_auxiliary_network():
    manifest, model = built()
    model.eval()
    batch = random_batch(manifest, 8)
    with torch.no_grad():
        u = model.embedding.flat(batch)
        expected = []
        for row, scenario in enumerate(batch.scenario.tolist()):
            mean, var = model.norm.running_mean[scenario], model.norm.running_var[scenario]
            h = (u[row] - mean) / torch.sqrt(var + 1e-5)  # γ = γ_t = 1, β = β_t = 0 at init
            for layer in model.layers[:-1]:
                h = torch.relu(h @ layer.weight(scenario).T + layer.bias(scenario))
            star = h @ model.layers[-1].weight(scenario).T + model.layers[-1].bias(scenario)
            aux = model.auxiliary(torch.cat([model.scenario_embedding.weight[scenario], u[row]]))
            expected.append((star + aux).squeeze())
        torch.testing.assert_close(model(batch).logit, torch.stack(expected))


def test_training_statistics_ignore_other_scenarios_rows():
    """Unlike whole-batch normalisation, a row's training output depends only on its own scenario's rows."""
    manifest, model = built()
    batch = random_batch(manifest, 16)
    own = batch.scenario == 0
    with torch.no_grad():
        mixed = model(batch).logit[own]
        alone = model(batch.select(own)).logit
    torch.testing.assert_close(mixed, alone)


def test_partitioned_norm_gradients_are_the_same_on_every_call_with_several_threads():
    """Rows are picked by index_select, whose backward adds in a fixed order: with advanced indexing
    (index_put_ with accumulate) the CPU threads added in whatever order they reached the rows, and STAR's
    metrics moved in the 7th digit from one run to the next at 2 threads."""
    torch.manual_seed(0)
    norm = PartitionedNorm(64, num_scenarios=3)
    x = torch.randn(8192, 64, dtype=torch.float32)
    scenario = torch.randint(0, 3, (8192,))
    weight = torch.randn(8192, 64)

    def gradient() -> torch.Tensor:
        leaf = x.clone().requires_grad_()
        (norm(leaf, scenario) * weight).sum().backward()
        return torch.cat([leaf.grad.flatten(), *(p.grad.flatten() for p in norm.parameters())])

    with torch_threads(2):
        first = gradient()
        for _ in range(10):
            norm.zero_grad()
            assert torch.equal(gradient(), first)
