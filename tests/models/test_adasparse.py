"""AdaSparse: factors β·σ(α v) in (ε, β) or exactly 0, built from the scenario, scaling each layer's input."""

import torch

from mscbench.models import build_model
from tests.helpers import random_batch, tiny_manifest

SMALL = {"embedding_dim": 4, "hidden": [8, 6], "dropout": 0.0}


def built(**values):
    torch.manual_seed(0)
    manifest = tiny_manifest()
    model = build_model("adasparse", manifest, {**SMALL, **values})
    with torch.no_grad():
        for pruner in model.pruners:
            pruner.weight.mul_(40)  # spread v so that some factors fall below ε
    return manifest, model


def test_fusion_factors_are_beta_sigmoid_and_exactly_zero_at_or_below_epsilon():
    manifest, model = built()
    model.eval()
    batch = random_batch(manifest, 16)
    with torch.no_grad():
        output = model(batch)
        h = model.embedding.flat(batch)
        v = model.pruners[0](torch.cat([model.embedding.scenario(batch.scenario), h], 1))
    factor, soft = output.extras["factor_0"], 2 * torch.sigmoid(v)
    pruned = soft <= 0.25
    assert pruned.any() and (~pruned).any()
    assert torch.equal(factor[pruned], torch.zeros(int(pruned.sum())))
    assert torch.equal(factor[~pruned], soft[~pruned])
    assert ((factor[~pruned] > 0.25) & (factor[~pruned] < 2)).all()


def test_factors_scale_each_layers_input():
    manifest, model = built()
    model.eval()
    batch = random_batch(manifest, 8)
    with torch.no_grad():
        output = model(batch)
        h = model.embedding.flat(batch) * output.extras["factor_0"]
        for l, layer in enumerate(model.layers):
            h = torch.relu(layer(h)) * output.extras[f"factor_{l + 1}"]
        torch.testing.assert_close(output.logit, model.output(h).squeeze(1))


def test_factors_depend_on_the_scenario():
    manifest, model = built()
    model.eval()
    batch = random_batch(manifest, 8)
    moved = random_batch(manifest, 8)
    moved.scenario = (batch.scenario + 1) % manifest.num_scenarios
    with torch.no_grad():
        assert not torch.equal(model(batch).extras["factor_0"], model(moved).extras["factor_0"])


def test_other_forms():
    manifest, model = built(form="scaling")
    factor = model.eval()(random_batch(manifest, 8)).extras["factor_1"]
    assert factor.min() == 0 and ((factor == 0) | (factor >= 0.25)).all() and factor.max() < 2
    manifest, model = built(form="binarization")
    factor = model.eval()(random_batch(manifest, 8)).extras["factor_1"]
    assert set(factor.unique().tolist()) == {0.0, 1.0}


def test_alpha_follows_the_trainers_step_and_forward_never_moves_it():
    manifest, model = built(alpha_growth=0.5)
    batch = random_batch(manifest, 8)
    model.train()
    model(batch)
    model(batch)
    assert model.alpha.item() == 1.0
    model.advance_schedule(2)
    assert model.alpha.item() == 2.0 and "alpha" in model.state_dict()


def test_sparsity_regulariser_keeps_each_layers_pruned_fraction_in_the_band():
    manifest, model = built()
    assert model(random_batch(manifest, 8)).aux_loss is None  # off by default
    manifest, model = built(sparsity_weight=0.5, sparsity_band=[0.0, 0.0], sparsity_temperature=0.1)
    model.eval()
    batch = random_batch(manifest, 8)
    with torch.no_grad():
        output = model(batch)
        h, expected = model.embedding.flat(batch), 0.0
        for l, pruner in enumerate(model.pruners):
            v = pruner(torch.cat([model.embedding.scenario(batch.scenario), h], 1))
            expected += torch.sigmoid((0.25 - 2 * torch.sigmoid(v)) / 0.1).mean()
            h = h * output.extras[f"factor_{l}"]
            h = torch.relu(model.layers[l](h)) if l < len(model.layers) else h
    torch.testing.assert_close(output.aux_loss, 0.5 * expected)
