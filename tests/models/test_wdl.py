"""Wide & Deep: the logit is exactly the wide (LR) logit plus the deep (MLP) logit; wide starts at zero."""

from __future__ import annotations

import torch

from mscbench.models import build_model
from tests.helpers import random_batch, tiny_manifest


def test_wide_part_starts_at_exactly_zero_so_the_logit_starts_at_the_deep_logit():
    torch.manual_seed(0)
    manifest = tiny_manifest()
    model = build_model("wdl", manifest)
    output = model(random_batch(manifest, 16))
    assert torch.count_nonzero(output.extras["wide_logit"]) == 0
    assert torch.equal(output.logit, output.extras["deep_logit"])


def test_logit_is_wide_logit_plus_deep_logit_after_training():
    torch.manual_seed(0)
    manifest = tiny_manifest()
    model = build_model("wdl", manifest)
    batch = random_batch(manifest, 16)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch).logit, batch.label)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        wide = model.wide(batch)
        deep = model.deep(model.embedding.flat(batch)).squeeze(1)
        logit = model(batch).logit
    assert torch.count_nonzero(wide) == len(batch)  # the wide part learned
    assert torch.equal(logit, wide + deep)
