"""M3oE: STAR bottom, stop-gradient gate input, two-level fusion, the per-domain balanced loss."""

import torch
from torch.nn.functional import binary_cross_entropy_with_logits

from mscbench.models import build_model
from tests.helpers import random_batch, tiny_manifest

SMALL = {"embedding_dim": 4, "star_dims": [8, 6], "expert_dims": [5], "num_shared_experts": 3}


def built(**values):
    torch.manual_seed(0)
    manifest = tiny_manifest()
    return manifest, build_model("m3oe", manifest, {**SMALL, **values})


def test_trainer_loss_plus_aux_is_the_sum_of_per_domain_mean_losses():
    manifest, model = built()
    batch = random_batch(manifest, 10, scenarios=[0, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    output = model(batch)
    per_domain = sum(binary_cross_entropy_with_logits(output.logit[batch.scenario == d],
                                                      batch.label[batch.scenario == d]) for d in range(4))
    total = binary_cross_entropy_with_logits(output.logit, batch.label) + output.aux_loss
    torch.testing.assert_close(total, per_domain)
    assert built(loss_balance="batch")[1](batch).aux_loss is None


def test_gate_input_is_stop_gradient_so_gates_do_not_train_the_bottom():
    manifest, model = built()
    gate = model(random_batch(manifest, 8)).extras["gate"]
    assert not gate.requires_grad
    h = torch.randn(8, 6, requires_grad=True)
    model.gates[0](h.detach()).sum().backward()  # what forward feeds the gate
    assert h.grad is None
    assert torch.allclose(gate.sum(1), torch.ones(8))


def test_full_balance_makes_domain_experts_private():
    """θ_bal -> ∞ gives β = 1: D̃_d = D_d, so domain-0 rows give other domains' experts zero gradient."""
    manifest, model = built()
    with torch.no_grad():
        model.architecture["balance"].fill_(100.0)
    batch = random_batch(manifest, 8, scenarios=[0])
    model(batch).logit.sum().backward()
    assert model.domain_experts[0][0].weight.grad.abs().sum() > 0
    for expert in model.domain_experts[1:]:
        assert torch.count_nonzero(expert[0].weight.grad) == 0


def test_partial_balance_shares_domain_experts_across_domains():
    manifest, model = built()
    model(random_batch(manifest, 8, scenarios=[0])).logit.sum().backward()
    assert all(expert[0].weight.grad.abs().sum() > 0 for expert in model.domain_experts)
