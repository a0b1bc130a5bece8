"""APG: generated weight U S(z) V with S from the scenario; parameter count; scenario rows isolated."""

import itertools

import torch

from mscbench.models import build_model
from mscbench.models.apg import APGLinear
from tests.helpers import random_batch, tiny_manifest

SMALL = {"embedding_dim": 4, "hidden": [8, 6], "rank": 3, "overparam": 5, "hyper_hidden": [7]}


def built(**values):
    torch.manual_seed(0)
    manifest = tiny_manifest()
    return manifest, build_model("apg", manifest, {**SMALL, **values})


def test_generated_weight_is_u_s_v_and_forward_applies_it():
    torch.manual_seed(0)
    layer = APGLinear(6, 4, condition_dim=3, rank=2, overparam=5, hyper_hidden=[7])
    x, condition = torch.randn(5, 6), torch.randn(5, 3)
    generated = layer.hypernet(condition)  # [5, 2·2 + 4]
    core, bias = generated[:, :4].reshape(5, 2, 2), generated[:, 4:]
    u, v = layer.u_left @ layer.u_right, layer.v_left @ layer.v_right  # [6, 2], [2, 4]
    weight = layer.weight(condition)
    assert weight.shape == (5, 6, 4)
    for i in range(5):
        torch.testing.assert_close(weight[i], u @ core[i] @ v)
        torch.testing.assert_close(layer(x, condition)[i], x[i] @ weight[i] + bias[i])


def test_generated_weight_follows_the_scenario():
    manifest, model = built()
    batch = random_batch(manifest, 8)  # scenarios 0, 1, 2, 3, 0, 1, 2, 3
    with torch.no_grad():
        weight = model.layers[0].weight(model.embedding.scenario(batch.scenario))  # [8, d_0, 8]
    torch.testing.assert_close(weight[0], weight[4])  # same scenario, same layer
    assert not torch.allclose(weight[0], weight[1], atol=1e-6)


def test_logit_composes_the_generated_layers():
    manifest, model = built()
    batch = random_batch(manifest, 8)
    with torch.no_grad():
        condition = model.embedding.scenario(batch.scenario)
        h = model.embedding.flat(batch)
        for layer in model.layers:
            _, bias = layer.generate(condition)
            h = torch.relu(torch.bmm(h.unsqueeze(1), layer.weight(condition)).squeeze(1) + bias)
        torch.testing.assert_close(model(batch).logit, model.output(h).squeeze(1))


def test_parameter_count_formula():
    manifest, model = built()
    k, p, d = 3, 5, 4
    widths = [(4 + 1 + 2) * d + 2, 8, 6]  # 4 fields + scenario + 2 pooled sequences, 2 dense values

    def hypernet(outputs):  # condition (d) -> 7 -> outputs
        return d * 7 + 7 + 7 * outputs + outputs

    layers = sum(p * (a + 2 * k + b) + hypernet(k * k + b) for a, b in itertools.pairwise(widths))
    embeddings = sum(t.weight.numel() for t in model.embedding.tables) + manifest.num_scenarios * d
    total = sum(x.numel() for x in model.parameters())
    assert total == embeddings + layers + widths[-1] + 1


def test_self_and_mix_conditions_build_and_run():
    for condition in ("self", "mix"):
        manifest, model = built(condition=condition)
        assert model(random_batch(manifest, 4)).logit.shape == (4,)
