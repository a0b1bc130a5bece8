"""MI-DPG / DPG (docs/models.md#midpg): eq. 1 with each DWM variant, parameter counts by its formulas, the
AdaSparse/PEPNet special case, the MIR term (present, reproducible, rising where scenarios differ)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.nn.functional import binary_cross_entropy_with_logits

from mscbench.models import build_model
from mscbench.models.base import get_card
from mscbench.models.midpg import DWMLinear
from tests.helpers import random_batch, tiny_manifest

VARIANTS = ["non", "rc", "r", "c"]


def built(name: str = "midpg", **values):
    torch.manual_seed(0)
    manifest = tiny_manifest()
    return manifest, build_model(name, manifest, values)


def layer(variant: str, repeat: str = "tile", **values) -> DWMLinear:
    torch.manual_seed(0)
    config = get_card("midpg").make_config({"dwm": variant, "repeat": repeat, "low_rank_rows": 4,
                                            "low_rank_cols": 4, "rank": 2, **values})
    return DWMLinear(10, 6, 3, config)  # 10 and 6 are not multiples of 4: the repeat must crop


def head_size(variant: str, d_in: int, d_out: int, m: int, n: int, k: int) -> int:
    return {"non": d_in * d_out, "rc": m * k + k * n, "r": m * k, "c": k * n}[variant]


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("repeat", ["tile", "interleave"])
def test_layer_is_equation_1_with_the_repeated_block(variant, repeat):
    dwm = layer(variant, repeat)
    h, scenario_input = torch.randn(5, 10), torch.randn(5, 3)
    out, factors, block = dwm(h, scenario_input)
    assert factors.shape == (5, head_size(variant, 10, 6, 4, 4, 2))
    rows, cols = torch.arange(10)[:, None], torch.arange(6)[None, :]
    if variant == "non":
        assert block.shape == (5, 10, 6)  # eq. 2: M itself
        weighting = block
    else:
        assert block.shape == (5, 4, 4)  # σ(U V)
        if repeat == "tile":  # R(X)[i, j] = X[i mod m, j mod n]
            weighting = block[:, rows % 4, cols % 4]
        else:
            weighting = block[:, rows * 4 // 10, cols * 4 // 6]
    assert ((weighting > 0) & (weighting < 1)).all()
    expected = torch.stack([(dwm.weight * weighting[b]).T @ h[b] + dwm.bias for b in range(5)])
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("variant", ["r", "c"])
def test_shared_factor_is_one_parameter_for_all_samples(variant):
    dwm = layer(variant)
    shared = dwm.shared_cols if variant == "r" else dwm.shared_rows
    assert (dwm.shared_rows if variant == "r" else dwm.shared_cols) is None
    h, scenario_input = torch.randn(5, 10), torch.randn(5, 3)
    _, _, block = dwm(h, scenario_input)
    head = dwm.generator(torch.cat([scenario_input, h], 1))
    u, v = (head.view(5, 4, 2), shared) if variant == "r" else (shared, head.view(5, 2, 4))
    torch.testing.assert_close(block, torch.sigmoid(u @ v))  # eq. 4 / eq. 5


def test_one_block_row_is_per_output_neuron_gating():
    """m = 1, n = d_out: every row of M is σ(p), so (W ⊙ M)^T h = diag(σ(p)) W^T h (AdaSparse/PEPNet)."""
    dwm = layer("rc", low_rank_rows=1, low_rank_cols=6)
    h, scenario_input = torch.randn(5, 10), torch.randn(5, 3)
    out, _, block = dwm(h, scenario_input)
    torch.testing.assert_close(out, block[:, 0] * (h @ dwm.weight) + dwm.bias)


def expected_parameters(variant: str, with_mir: bool, m: int = 8, n: int = 8, k: int = 4) -> int:
    """docs/models.md#midpg parameter counts on `tiny_manifest()`, d = 16, backbone 128-64-32, g_l = [64], T = [64, 32]."""
    embeddings = (50 + 40 + 12 + 5 + 4) * 16  # four tables (sequences share them) and the scenario
    scenario_dim, widths = 16, [(4 + 1 + 2) * 16 + 2, 128, 64, 32]  # e_s = the scenario's embedding
    total, mir_width = embeddings + 32 + 1, 0  # the output layer is not re-weighted
    for d_in, d_out in itertools.pairwise(widths):
        head = head_size(variant, d_in, d_out, m, n, k)
        shared = {"non": 0, "rc": 0, "r": k * n, "c": m * k}[variant]
        total += d_in * d_out + d_out + (scenario_dim + d_in) * 64 + 64 + 64 * head + head + shared
        mir_width += min(head, 1024)
    if with_mir:
        total += (scenario_dim + mir_width) * 64 + 64 + 64 * 32 + 32 + 32 + 1
    return total


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("name", ["midpg", "dpg"])
def test_parameter_counts_follow_the_spec_formulas(name, variant):
    _, model = built(name, dwm=variant)
    assert sum(p.numel() for p in model.parameters()) == expected_parameters(variant, name == "midpg")


def test_dpg_has_no_mir_term_and_midpg_only_while_training():
    manifest, dpg = built("dpg")
    assert dpg.regulariser is None and dpg.train()(random_batch(manifest, 8)).aux_loss is None
    _, midpg = built("midpg")
    batch = random_batch(manifest, 8)
    assert midpg.train()(batch).aux_loss > 0
    assert midpg.eval()(batch).aux_loss is None


def test_shuffled_pairs_are_reproducible_by_seed():
    manifest, model = built("midpg")
    batch = random_batch(manifest, 16)
    losses = []
    for seed in (1, 1, 2):
        torch.manual_seed(seed)
        losses.append(model(batch).aux_loss)
    assert torch.equal(losses[0], losses[1]) and not torch.equal(losses[0], losses[2])


@pytest.mark.parametrize("scenarios", [[0, 1, 2, 3], [0]])
def test_mir_estimate_rises_only_where_scenarios_differ(scenarios):
    """Trained on L_MIR alone, Î_JSD rises when the batch mixes scenarios; with one scenario the shuffled
    pairs equal the true ones and the estimate can never exceed 0."""
    manifest, model = built("midpg", beta=1.0, hidden=(16, 8))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = random_batch(manifest, 64, scenarios=scenarios)
    estimates = []
    for _ in range(60):
        loss = model(batch).aux_loss  # β = 1: L_MIR
        estimates.append(2 * math.log(2) - loss.item())  # Î_JSD, eq. 6
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert abs(estimates[0]) < 0.01
    if len(scenarios) > 1:
        assert max(estimates[-10:]) > 0.3
    else:
        assert max(estimates) <= 1e-6


def test_scenario_embedding_rows_learn_only_from_their_scenario():
    manifest, model = built("midpg")
    batch = random_batch(manifest, 16, scenarios=[0, 1])
    output = model(batch)
    (binary_cross_entropy_with_logits(output.logit, batch.label) + output.aux_loss).backward()
    grad = model.embedding.scenario.weight.grad  # [N, d]
    assert grad[:2].abs().sum(1).gt(0).all() and torch.count_nonzero(grad[2:]) == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_extras_hold_the_first_layer_weighting_block(variant):
    manifest, model = built("midpg", dwm=variant)
    weighting = model.eval()(random_batch(manifest, 6)).extras["weighting"]
    assert weighting.shape == (6, 8, 8) and ((weighting > 0) & (weighting < 1)).all()
