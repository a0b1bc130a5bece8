"""The fast paths compute what the plain ones do: the fused lookup, sparse gradients, lazy Adam, batch
gathering, thread and AMP settings, and exact resume with lazy Adam."""

import copy
import dataclasses

import pytest
import torch
from torch import nn

from mscbench.config import ConfigError, TrainConfig, build_config
from mscbench.data.loader import load_split
from mscbench.experiment.planning import plan_run
from mscbench.models import REGISTRY, build_model
from mscbench.models.blocks.embedding import FeatureEmbedding, use_sparse_gradients
from mscbench.models.blocks.routing import route_by_scenario
from mscbench.training.trainer import LazyAdam, batch_loss, build_optimizer, check_amp, configure_threads, fit
from tests.helpers import random_batch, tiny_manifest


def embedding_pair() -> tuple[FeatureEmbedding, FeatureEmbedding]:
    """A FeatureEmbedding and a copy that looks each field up in its own table (the plain path)."""
    torch.manual_seed(0)
    fused = FeatureEmbedding(tiny_manifest(), 4, with_scenario=True)
    plain = copy.deepcopy(fused)
    plain.fused_weight = lambda: None
    with torch.no_grad():
        for table in fused.tables:  # padding rows that are not zero must still be read and get no gradient
            table.weight[0].normal_()
        for table, twin in zip(fused.tables, plain.tables):
            twin.weight.copy_(table.weight)
    return fused, plain


def lookups_and_gradients(embedding: FeatureEmbedding, batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    out = torch.cat([embedding.pooled_fields(batch).flatten(1), embedding.sequence(batch).flatten(1)], 1)
    out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    return out, [weight.grad.to_dense() for weight in [*[t.weight for t in embedding.tables], embedding.scenario.weight]]


@pytest.mark.parametrize("sparse", [False, True])
def test_the_fused_lookup_equals_one_lookup_per_field(sparse):
    fused, plain = embedding_pair()
    if sparse:
        use_sparse_gradients(fused), use_sparse_gradients(plain)
    batch = random_batch(tiny_manifest(), 32)
    batch.sparse[:3] = 0  # padding ids in the fields too
    out, grads = lookups_and_gradients(fused, batch)
    expected, expected_grads = lookups_and_gradients(plain, batch)
    assert torch.equal(out, expected)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-6, atol=1e-6)
    for grad in grads[:-1]:
        assert torch.count_nonzero(grad[0]) == 0  # padding (the scenario table has none)
    assert all(weight.grad.is_sparse == sparse for weight in fused.weights())


def test_tables_keep_their_own_keys_and_a_moved_table_is_fused_again():
    fused, _ = embedding_pair()
    assert [k for k in fused.state_dict() if k.startswith("tables")] == \
        [f"tables.{i}.weight" for i in range(len(fused.tables))]
    batch = random_batch(tiny_manifest(), 8)
    before = fused.fields(batch)
    fused.tables[1].weight.data = fused.tables[1].weight.data.clone()  # what `.to(device)` does
    assert torch.equal(fused.fields(batch), before)
    storage = fused.fused.untyped_storage().data_ptr()
    assert all(t.weight.untyped_storage().data_ptr() == storage for t in fused.tables)


def test_lazy_adam_moves_only_the_rows_a_batch_uses_and_matches_adam_on_them():
    torch.manual_seed(0)
    table = nn.Embedding(6, 3, padding_idx=0)
    twin = copy.deepcopy(table)
    twin.sparse = True
    steps = [(table, torch.optim.Adam(table.parameters(), lr=0.1)),
             (twin, torch.optim.SparseAdam(twin.parameters(), lr=0.1))]
    for embedding, optimizer in steps:
        embedding(torch.tensor([1, 2, 2])).sum().backward()
        optimizer.step()
        optimizer.zero_grad()
    torch.testing.assert_close(table.weight, twin.weight)  # first step: the same update of the used rows
    start, twin_start = table.weight.detach().clone(), twin.weight.detach().clone()
    for embedding, optimizer in steps:
        embedding(torch.tensor([3])).sum().backward()
        optimizer.step()
    assert not torch.equal(table.weight[1:3], start[1:3])  # Adam keeps moving rows 1, 2 by their momentum
    assert torch.equal(twin.weight[1:3], twin_start[1:3])  # lazy Adam leaves them alone
    assert torch.equal(twin.weight[4:], twin_start[4:]) and torch.equal(twin.weight[0], twin_start[0])


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_model_takes_lazy_adam_steps(name):
    torch.manual_seed(0)
    manifest = tiny_manifest()
    model = build_model(name, manifest)
    optimizer = build_optimizer(model, TrainConfig(optimizer="lazy_adam", lr=1e-2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for step in range(2):
        batch = random_batch(manifest, 16, seed=step)
        optimizer.zero_grad()
        batch_loss(model, batch).backward()
        optimizer.step()
    assert isinstance(optimizer, LazyAdam) and optimizer.sparse is not None
    moved = [k for k, v in model.state_dict().items() if k.endswith("weight") and not torch.equal(v, before[k])]
    assert any(".tables." in k for k in moved) and any(".tables." not in k for k in moved)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point())


def test_lazy_adam_refuses_weight_decay_it_cannot_apply():
    with pytest.raises(ConfigError, match="weight_decay"):
        build_config(TrainConfig, {"optimizer": "lazy_adam", "weight_decay": 1e-4}, owner="training")


def test_an_interrupted_lazy_adam_run_resumes_to_the_same_weights(data_dir, tmp_path):
    plan = plan_run("synthetic", "shared_bottom", data_dir,
                    train_values={"epochs": 2, "batch_size": 1024, "patience": 2, "optimizer": "lazy_adam"})
    splits = {s: load_split(plan.dataset_path, plan.manifest, s) for s in ("train", "valid")}

    def trained(epochs: int, checkpoint):
        torch.manual_seed(0)
        model = build_model("shared_bottom", plan.manifest)
        config = dataclasses.replace(plan.train, epochs=epochs)
        fit(model, splits["train"], splits["valid"], config, torch.device("cpu"), plan.manifest.num_scenarios,
            checkpoint)
        return model

    straight = trained(2, tmp_path / "straight.pt")
    trained(1, tmp_path / "resumed.pt")
    resumed = trained(2, tmp_path / "resumed.pt")
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_batches_gathered_by_index_equal_advanced_indexing(data_dir):
    plan = plan_run("synthetic", "dnn", data_dir)
    data = load_split(plan.dataset_path, plan.manifest, "valid")
    rows = torch.randperm(len(data))[:100]
    batch = data.batch(rows)
    for field in dataclasses.fields(batch):
        assert torch.equal(getattr(batch, field.name), getattr(data, field.name)[rows])


def test_threads_and_amp_settings():
    threads = torch.get_num_threads()
    try:
        configure_threads(TrainConfig(threads=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ConfigError, match="CUDA"):
        check_amp(TrainConfig(amp=True), torch.device("cpu"))
    check_amp(TrainConfig(amp=False), torch.device("cpu"))


@pytest.mark.parametrize("scenarios", [[2, 0, 2, 1, 0, 2], [1, 1, 1, 1], []])
def test_routing_applies_each_scenarios_branch_to_its_rows_in_row_order(scenarios):
    """Mixed batches are sorted and put back; a one-scenario batch goes to its branch as it is."""
    torch.manual_seed(0)
    branches = [nn.Linear(3, 2) for _ in range(3)]
    x, scenario = torch.randn(len(scenarios), 3), torch.tensor(scenarios, dtype=torch.long)
    expected = torch.stack([branches[t](row) for row, t in zip(x, scenarios)]) if scenarios else torch.zeros(0, 2)
    torch.testing.assert_close(route_by_scenario(branches, x, scenario), expected)
