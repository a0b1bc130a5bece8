"""DCN: a cross layer computes x0 * (x·w) + b + x, the paper's x0 x^T w + b + x without the outer product."""

from __future__ import annotations

import torch

from mscbench.models import build_model
from mscbench.models.dcn import CrossLayer
from tests.helpers import random_batch, tiny_manifest


def test_cross_layer_equals_the_outer_product_formula():
    torch.manual_seed(0)
    layer = CrossLayer(6).double()
    with torch.no_grad():
        layer.bias.normal_()
    x0, x = torch.randn(4, 6, dtype=torch.float64), torch.randn(4, 6, dtype=torch.float64)
    outer = torch.einsum("bi,bj->bij", x0, x)  # x0 x^T, [B, d, d]
    expected = outer @ layer.weight + layer.bias + x
    torch.testing.assert_close(layer(x0, x), expected, rtol=0, atol=1e-12)
    scalar_form = x0 * (x @ layer.weight)[:, None] + layer.bias + x
    torch.testing.assert_close(layer(x0, x), scalar_form, rtol=0, atol=0)


def test_default_model_stacks_three_cross_layers_beside_the_mlp():
    torch.manual_seed(0)
    manifest = tiny_manifest()
    model = build_model("dcn", manifest)
    batch = random_batch(manifest, 8)
    assert len(model.cross) == 3
    with torch.no_grad():
        x0 = model.embedding.flat(batch)
        x = x0
        for layer in model.cross:
            x = x0 * (x @ layer.weight)[:, None] + layer.bias + x
        expected = model.output(torch.cat([x, model.deep(x0)], dim=1)).squeeze(1)
        torch.testing.assert_close(model(batch).logit, expected, rtol=1e-6, atol=1e-7)
