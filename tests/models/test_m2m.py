"""M2M: meta units whose weights are generated from the scenario knowledge; meta attention over experts."""

import torch

from mscbench.models import build_model
from tests.helpers import random_batch, tiny_manifest

SMALL = {"embedding_dim": 4, "num_experts": 3, "view_dim": 6, "scenario_dim": 5, "meta_layers": 2,
         "tower_layers": 2, "num_heads": 2}


def built(**values):
    torch.manual_seed(0)
    manifest = tiny_manifest()
    return manifest, build_model("m2m", manifest, {**SMALL, **values})


def test_meta_unit_generates_each_samples_layer_from_its_condition():
    _manifest, model = built()
    meta = model.meta_tower[0]
    with torch.no_grad():
        for generator in meta.weight_generators:
            generator.weight.normal_()
        h, condition = torch.randn(4, 6), torch.randn(4, 5)
        out = meta(h, condition)
        for b in range(4):
            expected = h[b]
            for weights, biases in zip(meta.weight_generators, meta.bias_generators):
                weight = (weights.weight @ condition[b] + weights.bias).view(6, 6)  # V_w S̃ + v_w
                expected = torch.nn.functional.leaky_relu(expected @ weight + biases(condition[b]))
            torch.testing.assert_close(out[b], expected)


def test_meta_attention_weights_sum_to_one_over_experts_and_depend_on_the_scenario():
    manifest, model = built()
    with torch.no_grad():
        for generator in model.meta_attention.weight_generators:
            generator.weight.normal_()
    batch = random_batch(manifest, 8)
    moved = random_batch(manifest, 8)
    moved.scenario = (batch.scenario + 1) % manifest.num_scenarios
    with torch.no_grad():
        attention = model(batch).extras["expert_attention"]
        assert attention.shape == (8, 3)
        torch.testing.assert_close(attention.sum(1), torch.ones(8))
        assert not torch.allclose(attention, model(moved).extras["expert_attention"])


def test_meta_tower_is_residual():
    """With the tower's generated layers at zero, Meta(L) = 0 and L^(1) = LeakyReLU(0 + R)."""
    manifest, model = built(tower_layers=1)
    with torch.no_grad():
        for generator in [*model.meta_tower[0].weight_generators, *model.meta_tower[0].bias_generators]:
            generator.weight.zero_(), generator.bias.zero_()
    experts = []
    hooks = [e.register_forward_hook(lambda module, args, out: experts.append(out)) for e in model.experts]
    with torch.no_grad():
        output = model(random_batch(manifest, 4))
    for hook in hooks:
        hook.remove()
    mixed = (output.extras["expert_attention"].unsqueeze(2) * torch.stack(experts, 1)).sum(1)  # R
    expected = model.output(torch.nn.functional.leaky_relu(mixed)).squeeze(1)
    torch.testing.assert_close(output.logit, expected)


def test_without_task_view_experts_are_scored_alone():
    manifest, model = built(task_view=False)
    assert model.meta_attention.width == 6
    assert torch.isfinite(model(random_batch(manifest, 4)).logit).all()
