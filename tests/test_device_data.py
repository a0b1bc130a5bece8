"""Where batches are gathered (TrainConfig.data_on_device): resident splits and the host path with one batch
of lookahead give the same batches in the same order, so the same weights; which path "auto" picks."""

from __future__ import annotations

import pytest
import torch

from mscbench.config import ConfigError, TrainConfig, build_config
from mscbench.data import loader
from mscbench.data.loader import device_batches, load_split, place, resident
from mscbench.data.manifest import read_manifest
from mscbench.data.prepare import find_prepared
from mscbench.models import build_model
from mscbench.training.trainer import build_optimizer, fit, predict, seed_everything
from tests.test_loader import numbered

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def splits(data_dir):
    path = find_prepared(data_dir, "synthetic")
    manifest = read_manifest(path)
    return manifest, {split: load_split(path, manifest, split) for split in ("train", "valid", "test")}


def trained(name, manifest, splits, **settings):
    config = build_config(TrainConfig, {"epochs": 1, "batch_size": 1000, "threads": 1, **settings}, owner="training")
    seed_everything(0)
    model = build_model(name, manifest)
    result = fit(model, splits["train"], splits["valid"], config, CPU, manifest.num_scenarios)
    return model, result


@pytest.mark.parametrize("name", ["dnn", "star"])
def test_resident_and_host_paths_give_identical_weights_after_an_epoch(name, splits):
    manifest, data = splits
    on_device, on_device_result = trained(name, manifest, data, data_on_device="always")
    on_host, on_host_result = trained(name, manifest, data, data_on_device="never")
    for key, value in on_device.state_dict().items():
        assert torch.equal(value, on_host.state_dict()[key]), key
    assert on_device_result.history[0]["valid_auc"] == on_host_result.history[0]["valid_auc"]
    assert on_device_result.history[0]["train_loss"] == on_host_result.history[0]["train_loss"]


def test_the_epoch_trains_as_a_plain_loop_over_the_shuffled_batches(splits):
    """Today's loop (gather, copy, step, in the order of `batches(shuffle=True, seed)`) gives the same weights:
    the lookahead and the placement change when batches are made, never which or in what order."""
    manifest, data = splits
    config = build_config(TrainConfig, {"epochs": 1, "batch_size": 1000, "threads": 1}, owner="training")
    seed_everything(0)
    reference = build_model("dnn", manifest)
    optimizer = build_optimizer(reference, config)
    for batch in data["train"].batches(config.batch_size, shuffle=True, seed=config.seed * 1_000_003 + 1):
        output = reference(batch.to(CPU))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(output.logit, batch.label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model, _ = trained("dnn", manifest, data, data_on_device="always")
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]), key


def test_predictions_are_the_same_on_either_path(splits):
    manifest, data = splits
    model, _ = trained("dnn", manifest, data)
    probs = [predict(model, data["test"], 700, CPU, manifest.num_scenarios, data_on_device=setting).prob
             for setting in ("always", "never", "auto")]
    assert (probs[0] == probs[1]).all() and (probs[0] == probs[2]).all()
    assert len(probs[0]) == len(data["test"])


def test_a_placed_split_shuffles_in_the_same_order_and_keeps_evaluation_fields():
    data = numbered(1000)
    placed = place(data, CPU, "always")
    assert placed.user is data.user and len(placed) == 1000
    assert [batch.sparse[:, 0].tolist() for batch in placed.batches(64, shuffle=True, seed=4)] == \
        [batch.sparse[:, 0].tolist() for batch in data.batches(64, shuffle=True, seed=4)]


def test_lookahead_makes_the_next_batch_before_handing_out_the_current_one():
    made = []

    def batches():
        for batch in numbered(10).batches(4, shuffle=False):
            made.append(int(batch.sparse[0, 0]))
            yield batch

    handed = []
    for batch in device_batches(batches(), CPU):
        handed.append(int(batch.sparse[0, 0]))
        assert made[:len(handed) + 1] == [0, 4, 8][:len(handed) + 1]  # one batch ahead (until the last)
    assert handed == [0, 4, 8]
    assert list(device_batches(iter(()), CPU)) == []


def test_auto_keeps_the_host_path_on_cpu_and_fits_a_gpu_by_its_free_memory(monkeypatch):
    data = numbered(1000)  # 1000 rows x (2 + 1 + 4 + 4 + 1 + 1) fields x 8 or 4 bytes
    assert data.batch_bytes() == 1000 * (16 + 4 + 32 + 32 + 8 + 4)
    assert not resident(data, CPU, "auto") and resident(data, CPU, "always") and not resident(data, CPU, "never")
    gpu = torch.device("cuda", 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (2 * data.batch_bytes(), 10**12))
    assert resident(data, gpu, "auto")  # exactly DEVICE_SHARE of the free memory
    monkeypatch.setattr(loader, "DEVICE_SHARE", 0.49)
    assert not resident(data, gpu, "auto")


def test_an_unknown_placement_is_a_clear_error():
    with pytest.raises(ConfigError, match="data_on_device must be one of 'auto', 'always', 'never'"):
        build_config(TrainConfig, {"data_on_device": "gpu"}, owner="training")
