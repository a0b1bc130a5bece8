"""DDP on CPU (gloo): two processes that each take half of every batch end with the same weights, which are
those of one process taking whole batches, and learn."""

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from mscbench.data.loader import load_split
from mscbench.models import build_model
from mscbench.train.distributed import train_shard
from mscbench.train.runner import plan_run
from mscbench.train.trainer import fit

SETTINGS = {"epochs": 1, "batch_size": 1024, "lr": 3e-3, "threads": 1, "device": "cpu"}


def train_rank(rank: int, world: int, data_dir, out_dir) -> None:
    dist.init_process_group("gloo", init_method=f"file://{out_dir}/rendezvous", rank=rank, world_size=world)
    try:
        model, result = train_shard(plan_run("synthetic", "dnn", data_dir, train_values=SETTINGS))
        torch.save({"state": model.state_dict(), "history": result.history}, out_dir / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_end_with_the_weights_of_one(data_dir, tmp_path):
    mp.spawn(train_rank, args=(2, data_dir, tmp_path), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
    learned = [[(row["train_loss"], row["valid_auc"]) for row in rank["history"]] for rank in ranks]
    assert learned[0] == learned[1]  # the loss is summed over both processes' rows
    epoch = ranks[0]["history"][0]
    assert 0 < epoch["train_loss"] < 0.69 and epoch["valid_auc"] > 0.55  # finite, and below chance loss

    plan = plan_run("synthetic", "dnn", data_dir, train_values=SETTINGS)
    splits = {s: load_split(plan.dataset_path, plan.manifest, s) for s in ("train", "valid")}
    torch.manual_seed(plan.train.seed)
    single = build_model("dnn", plan.manifest)
    fit(single, splits["train"], splits["valid"], plan.train, torch.device("cpu"), plan.manifest.num_scenarios)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(ranks[0]["state"][key], value, rtol=1e-3, atol=1e-4)
