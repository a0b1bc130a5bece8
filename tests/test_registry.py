"""Checks every registered model must pass, whatever it is (parametrised over the whole registry)."""

from __future__ import annotations

import io

import pytest
import torch

from mscbench.models import REGISTRY, build_model
from mscbench.models.base import ConfigError, get_card
from tests.helpers import random_batch, tiny_manifest

MODELS = sorted(REGISTRY)


def built(name: str, seed: int = 0):
    torch.manual_seed(seed)
    manifest = tiny_manifest()
    return manifest, build_model(name, manifest)


@pytest.mark.parametrize("name", MODELS)
def test_forward_gives_one_finite_logit_per_sample(name):
    manifest, model = built(name)
    output = model(random_batch(manifest, 24))
    assert output.logit.shape == (24,)
    assert torch.isfinite(output.logit).all()
    if output.aux_loss is not None:
        assert output.aux_loss.dim() == 0 and torch.isfinite(output.aux_loss)


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trip_gives_identical_predictions(name):
    manifest, model = built(name, seed=1)
    batch = random_batch(manifest, 16)
    model.train()
    model(batch).logit.sum().backward()  # a training pass, so that any running state moves
    model.eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    _, fresh = built(name, seed=2)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(batch).logit, fresh(batch).logit)


@pytest.mark.parametrize("name", MODELS)
def test_evaluation_is_pure_and_batch_independent(name):
    manifest, model = built(name)
    model.eval()
    batch = random_batch(manifest, 20)
    with torch.no_grad():
        first = model(batch).logit
        again = model(batch).logit
        permutation = torch.randperm(20, generator=torch.Generator().manual_seed(3))
        shuffled = model(batch.select(permutation)).logit
        alone = torch.cat([model(batch.select(torch.tensor([i]))).logit for i in range(20)])
    assert torch.equal(first, again)
    torch.testing.assert_close(shuffled, first[permutation], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone, first, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in MODELS if hasattr(REGISTRY[n].builder, "scenario_parameters")])
def test_scenario_parameters_get_gradient_only_from_their_scenario(name):
    """Spec §1.4: one backward pass on scenarios {0, 1}; scenarios 2.. get exactly zero gradient."""
    manifest, model = built(name)
    output = model(random_batch(manifest, 32, scenarios=[0, 1]))
    torch.nn.functional.binary_cross_entropy_with_logits(output.logit, torch.ones_like(output.logit)).backward()
    for scenario in range(manifest.num_scenarios):
        grads = [p.grad for p in model.scenario_parameters(scenario)]
        assert grads, "scenario_parameters must name the scenario's parameters"
        if scenario < 2:
            assert any(g is not None and g.abs().sum() > 0 for g in grads), f"scenario {scenario} learns nothing"
        else:
            assert all(g is None or torch.count_nonzero(g) == 0 for g in grads), f"scenario {scenario} leaks"


def test_multi_scenario_models_declare_their_scenario_parameters():
    for name, card in REGISTRY.items():
        if card.multi_scenario:
            assert hasattr(card.builder, "scenario_parameters"), name


def test_unknown_model_and_setting_are_clear_errors():
    with pytest.raises(ConfigError, match="did you mean 'dnn'"):
        get_card("dnm")
    with pytest.raises(ConfigError, match="has no setting 'hiden'.*'hidden'"):
        get_card("dnn").make_config({"hiden": [8]})
    with pytest.raises(ConfigError, match="must be a list"):
        get_card("dnn").make_config({"hidden": 8})


def test_sequence_models_refuse_datasets_without_sequences():
    manifest = tiny_manifest(with_sequence=False)
    for name, card in REGISTRY.items():
        if card.needs_sequence:
            with pytest.raises(ConfigError, match="needs a behaviour sequence"):
                build_model(name, manifest)
