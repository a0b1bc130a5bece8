"""CEL: entities share cluster embeddings; GPCA splits and first-order reassignment on the trainer's step."""

import math

import pytest
import torch

from mscbench.models import build_model
from mscbench.models.base import ConfigError
from mscbench.models.cel import ClusteredEmbedding
from tests.helpers import random_batch, tiny_manifest


def table(rows=9, dim=2, clusters=4, split_every=2, reassign_every=3):
    torch.manual_seed(0)
    return ClusteredEmbedding(rows, dim, clusters, split_every, reassign_every)


def test_the_table_is_smaller_by_the_compression_factor_and_clusters_the_id_fields_only():
    manifest = tiny_manifest()
    model = build_model("dnn", manifest, {"embedding": "cel", "cel_compression": 10.0})
    tables = dict(zip(model.embedding.table_names, model.embedding.tables))
    assert all(isinstance(tables[name], ClusteredEmbedding) for name in ("user_id", "item_id"))
    assert not isinstance(tables["category"], ClusteredEmbedding)
    assert len(tables["user_id"].weight) == math.ceil(49 / 10) + 1  # clusters + the padding row
    assert len(build_model("dnn", manifest, {"embedding": "cel"}).embedding.tables[0].weight) == 2  # 2650x
    with pytest.raises(ConfigError, match="not sparse fields"):
        build_model("dnn", manifest, {"embedding": "cel", "cel_fields": ["nope"]})


def test_entities_of_a_cluster_share_one_vector_and_padding_is_zero():
    embedding = table()
    embedding.assignment[3] = 2
    out = embedding(torch.tensor([0, 1, 2, 3]))
    assert torch.equal(out[0], torch.zeros(2))
    assert torch.equal(out[1], out[2]) and torch.equal(out[1], embedding.weight[1])
    assert torch.equal(out[3], embedding.weight[2])


def test_backward_gathers_each_entitys_own_gradient_and_forward_changes_nothing():
    embedding = table()
    ids = torch.tensor([[1, 2], [1, 3]])
    weights = torch.randn(2, 2, 2)
    (embedding(ids) * weights).sum().backward()
    assert torch.equal(embedding.running_gradient[1], weights[0, 0] + weights[1, 0])
    assert torch.equal(embedding.running_gradient[2], weights[0, 1])
    assert embedding.running_count.tolist() == [0, 2, 1, 1, 0, 0, 0, 0, 0]
    embedding.eval()
    embedding(ids)
    assert embedding.running_count.sum() == 4


def test_split_follows_the_first_principal_component_of_member_gradients():
    embedding = table()
    with torch.no_grad():
        embedding.running_gradient[1:5] = torch.tensor([[1.0, 0.1], [1.2, -0.1], [-1.0, 0.0], [-0.9, 0.1]])
        embedding.running_count[1:5] = 1
    parent = embedding.weight[1].clone()
    embedding.advance_schedule(1)  # not a split step
    assert int(embedding.active) == 1
    embedding.advance_schedule(2)
    assert int(embedding.active) == 2
    groups = embedding.assignment[1:5].tolist()
    assert groups[0] == groups[1] != groups[2] == groups[3]
    assert torch.equal(embedding.weight[2], parent)  # a split changes no prediction by itself
    assert embedding.assignment[5:].eq(1).all()  # unobserved members stay
    assert embedding.running_count.sum() == 0  # a new window of statistics


def test_reassignment_moves_an_entity_to_the_cluster_that_most_lowers_its_loss_to_first_order():
    embedding = table()
    with torch.no_grad():
        embedding.active.fill_(3)
        embedding.weight[1:4] = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        embedding.running_gradient[1] = torch.tensor([-1.0, -0.5])  # loss falls along +x most
        embedding.running_gradient[2] = torch.tensor([1.0, 1.0])  # every move raises the loss
        embedding.running_count[1:3] = 1
    embedding.advance_schedule(3)
    assert embedding.assignment[1] == 2 and embedding.assignment[2] == 1


def test_cluster_state_is_saved_and_the_trainer_step_drives_it():
    manifest = tiny_manifest()
    values = {"embedding": "cel", "cel_compression": 4.0, "cel_split_every": 1, "cel_reassign_every": 100}
    torch.manual_seed(0)
    model = build_model("dnn", manifest, values)
    model(random_batch(manifest, 32)).logit.sum().backward()
    model.embedding.tables[0].advance_schedule(1)
    state = model.state_dict()
    assert {"embedding.tables.0.assignment", "embedding.tables.0.active"} <= set(state)
    assert int(state["embedding.tables.0.active"]) == 2


@pytest.mark.parametrize("setting", [{"cel_compression": 0.0}, {"cel_compression": 0.5}, {"cel_split_every": 0},
                                     {"cel_reassign_every": -1}])
def test_a_compression_or_schedule_below_one_is_a_clear_error(setting):
    with pytest.raises(ConfigError, match=f"{next(iter(setting))} .* at least 1"):
        build_model("dnn", tiny_manifest(), {"embedding": "cel", **setting})


@pytest.mark.parametrize("model, setting", [("dnn", "cel_fields"), ("pepnet", "prior_fields"),
                                            ("midpg", "scenario_aware_fields")])
def test_a_field_setting_names_sparse_fields_each_once(model, setting):
    manifest = tiny_manifest()
    extra = {"embedding": "cel"} if setting == "cel_fields" else {}
    with pytest.raises(ConfigError, match=f"{setting} \\['nope'\\] are not sparse fields of 'tiny'"):
        build_model(model, manifest, {**extra, setting: ["nope"]})
    with pytest.raises(ConfigError, match=f"{setting} names user_id more than once"):
        build_model(model, manifest, {**extra, setting: ["user_id", "item_id", "user_id"]})
    build_model(model, manifest, {**extra, setting: ["user_id", "item_id"]})
