"""SAML (docs/models.md#saml): scenario isolation, the mutual unit's equations and stop-gradient, g = 0 reducing to
independent branches, and the three ablations of the paper's Table IV."""

from __future__ import annotations

import functools

import pytest
import torch
from torch.nn.functional import binary_cross_entropy_with_logits, cosine_similarity

from mscbench.models import build_model
from mscbench.models.saml import mutual_unit
from tests.helpers import owned_gradients, random_batch, tiny_manifest

VARIANTS = ["saml", "saml_no_gate", "saml_no_aux", "saml_no_gate_mut"]


def built(name: str, **values):
    torch.manual_seed(0)
    manifest = tiny_manifest()
    return manifest, build_model(name, manifest, values)


@pytest.mark.parametrize("name", VARIANTS)
def test_one_scenario_batch_trains_only_that_scenario(name):
    """docs/models.md#saml, gradient isolation: after one backward pass of the whole loss (data + auxiliary) on scenario-0 rows,
    every scenario-specific parameter and embedding row of scenarios 1.. has exactly zero gradient."""
    manifest, model = built(name)
    batch = random_batch(manifest, 24, scenarios=[0])
    output = model(batch)
    loss = binary_cross_entropy_with_logits(output.logit, batch.label)
    (loss if output.aux_loss is None else loss + output.aux_loss).backward()
    for scenario in range(manifest.num_scenarios):
        grads = owned_gradients(model, scenario)
        if scenario == 0:
            assert all(g is not None for g in grads) and all(g.abs().sum() > 0 for g in grads[-3:])
        else:
            assert all(g is None or torch.count_nonzero(g) == 0 for g in grads), f"scenario {scenario} leaks"
    shared = [model.global_embedding.tables[1].weight, model.block.attention.value.weight]
    assert all(p.grad.abs().sum() > 0 for p in shared)  # the global parts learn from every scenario


def test_mutual_unit_follows_equations_6_to_8():
    torch.manual_seed(0)
    hidden = torch.relu(torch.randn(3, 4, 5))  # [B, N, d]
    hidden[0, 2] = 0.0  # an all-zero ReLU output must not produce NaN
    gates = [torch.nn.Linear(5, 1) for _ in range(4)]
    mixed, alpha, gate = mutual_unit(hidden, gates, "residual")
    for b in range(3):
        for k in range(4):
            others = [j for j in range(4) if j != k]
            cosine = torch.stack([cosine_similarity(hidden[b, k], hidden[b, j], dim=0, eps=1e-8)
                                  for j in others])
            weights = torch.softmax(cosine, 0)  # eq. 6
            g = torch.sigmoid(gates[k](hidden[b, k]))  # eq. 7
            expected = hidden[b, k] + g * (weights[:, None] * hidden[b, others]).sum(0)  # eq. 8
            torch.testing.assert_close(alpha[b, k, others], weights)
            torch.testing.assert_close(mixed[b, k], expected)
            assert alpha[b, k, k] == 0 and gate[b, k] == g
    convex, _, _ = mutual_unit(hidden, gates, "convex")
    torch.testing.assert_close(convex, (1 - gate) * hidden + gate * (mixed - hidden) / gate)


def test_mutual_unit_stops_gradient_into_other_branches():
    torch.manual_seed(0)
    hidden = torch.randn(2, 3, 4, requires_grad=True)
    gates = [torch.nn.Linear(4, 1) for _ in range(3)]
    mixed, _, _ = mutual_unit(hidden, gates, "residual")
    mixed[:, 0].sum().backward()  # only branch 0's output reaches the loss
    assert hidden.grad[:, 0].abs().sum() > 0
    assert torch.count_nonzero(hidden.grad[:, 1:]) == 0
    assert gates[0].weight.grad.abs().sum() > 0 and torch.count_nonzero(gates[1].weight.grad) == 0


@pytest.mark.parametrize("combine", ["residual", "convex"])
def test_gate_zero_reduces_to_independent_branches(combine):
    """With g forced to 0, SAML's predictions equal `saml_no_gate`'s (each branch alone on its own rows)."""
    manifest, model = built("saml", mutual_combine=combine)
    with torch.no_grad():
        for branch in model.branches:
            for layer in branch.layers:
                layer.gate.weight.zero_()
                layer.gate.bias.fill_(float("-inf"))  # σ(-inf) = 0 exactly
    _, independent = built("saml_no_gate", mutual_combine=combine)
    missing, unexpected = independent.load_state_dict(model.state_dict(), strict=False)
    assert not missing and unexpected and all(".gate." in key for key in unexpected)
    batch = random_batch(manifest, 24)
    model.eval(), independent.eval()
    with torch.no_grad():
        gated, alone = model(batch), independent(batch)
    assert torch.equal(gated.extras["gate"], torch.zeros(24, 2))
    torch.testing.assert_close(gated.logit, alone.logit, rtol=0, atol=1e-6)
    torch.testing.assert_close(gated.aux_loss, alone.aux_loss)


@functools.cache
def parameter_names(name: str) -> set[str]:
    return {key for key, _ in built(name)[1].named_parameters()}


def test_ablations_remove_exactly_what_table_iv_says():
    full = parameter_names("saml")
    representation = {k for k in full if k.split(".")[0] in
                      {"global_embedding", "scenario_embedding", "global_position", "scenario_position",
                       "block", "scenario_query_key"}}
    # w/o gate: only the gate networks go
    assert parameter_names("saml_no_gate") == {k for k in full if ".gate." not in k}
    # w/o aux: the auxiliary network and every branch input from it go; gates stay
    no_aux = parameter_names("saml_no_aux")
    assert not any(k.startswith("auxiliary") or ".auxiliary." in k or "aux_output" in k for k in no_aux)
    assert {k for k in full if ".gate." in k} <= no_aux
    # w/o gate&mut: one unified MLP on x_ind ⊕ x_dep, no branches, no auxiliary network
    no_mutual = parameter_names("saml_no_gate_mut")
    assert {k.split(".")[0] for k in no_mutual - representation} == {"unified"}
    # every ablation keeps the scenario-aware representation unchanged
    for name in ["saml_no_gate", "saml_no_aux", "saml_no_gate_mut"]:
        assert representation <= parameter_names(name)


def test_ablation_inputs_losses_and_extras():
    manifest, model = built("saml")
    _, no_aux = built("saml_no_aux")
    _, no_mutual = built("saml_no_gate_mut")
    x_ind, x_dep = model.auxiliary[0].in_features, model.branches[0].layers[0].main.in_features
    assert no_aux.branches[0].layers[0].main.in_features == x_ind + x_dep
    assert no_mutual.unified.layers[0].in_features == x_ind + x_dep
    batch = random_batch(manifest, 12)
    full = model(batch)
    assert full.aux_loss is not None and no_aux(batch).aux_loss is None and no_mutual(batch).aux_loss is None
    alpha, gate = full.extras["alpha"], full.extras["gate"]  # [B, layers, N], [B, layers]
    assert alpha.shape == (12, 2, 4) and gate.shape == (12, 2)
    own = batch.scenario.view(-1, 1, 1).expand(-1, 2, 1)
    assert torch.equal(alpha.gather(2, own), torch.zeros(12, 2, 1))
    torch.testing.assert_close(alpha.sum(2), torch.ones(12, 2))
    assert ((gate > 0) & (gate < 1)).all()
    assert built("saml", mutual_layers="last")[1](batch).extras["gate"].shape == (12, 1)


def test_auxiliary_loss_is_the_weighted_nll_of_the_auxiliary_head():
    manifest, model = built("saml", lambda_aux=0.5)
    model.eval()
    batch = random_batch(manifest, 12)
    captured = {}
    model.auxiliary_output.register_forward_hook(lambda module, inputs, out: captured.update(logit=out))
    aux_loss = model(batch).aux_loss
    expected = 0.5 * binary_cross_entropy_with_logits(captured["logit"].squeeze(1), batch.label)
    torch.testing.assert_close(aux_loss, expected)


ALTERNATIVES = [{"mutual_combine": "convex"}, {"mutual_layers": "last"}, {"gate_dim": "vector"},
                {"scenario_attention_params": "shared"}, {"tie_values": False},
                {"aux_detach_into_branches": True}, {"output_reads_aux": False}, {"predict_with_aux": True},
                {"seq_pooling": "target"}, {"seq_pooling": "mean"}]


@pytest.mark.parametrize("option", ALTERNATIVES)
def test_reconstruction_alternatives_keep_scenarios_isolated(option):
    """Every alternative reading docs/models.md#saml names trains scenario 0 without touching scenarios 1.."""
    manifest, model = built("saml", **option)
    batch = random_batch(manifest, 12, scenarios=[0])
    output = model(batch)
    assert torch.isfinite(output.logit).all()
    (binary_cross_entropy_with_logits(output.logit, batch.label) + output.aux_loss).backward()
    for scenario in range(1, manifest.num_scenarios):
        grads = owned_gradients(model, scenario)
        assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
