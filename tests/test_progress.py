"""What a person watching a run sees: a line per finished epoch in a log, a line when a run resumes."""

import io

import torch
from rich.console import Console
from rich.progress import Progress

from mscbench.data.loader import load_split
from mscbench.experiment.planning import plan_run
from mscbench.models import build_model
from mscbench.train.trainer import fit


def fit_dnn(data_dir, checkpoint, epochs: int, terminal: bool) -> str:
    """Train dnn for `epochs` with a progress display on a console that is (or is not) a terminal."""
    plan = plan_run("synthetic", "dnn", data_dir, train_values={"epochs": epochs, "batch_size": 1024,
                                                                 "patience": 2})
    splits = {s: load_split(plan.dataset_path, plan.manifest, s) for s in ("train", "valid")}
    shown = io.StringIO()
    progress = Progress(console=Console(file=shown, force_terminal=terminal, width=120))
    fit(build_model("dnn", plan.manifest), splits["train"], splits["valid"], plan.train, torch.device("cpu"),
        plan.manifest.num_scenarios, checkpoint, progress)
    return shown.getvalue()


def test_a_log_gets_one_line_per_epoch_and_a_resume_says_where_it_continues(data_dir, tmp_path):
    checkpoint = tmp_path / "synthetic-run-1" / "checkpoint.pt"
    checkpoint.parent.mkdir()
    first = fit_dnn(data_dir, checkpoint, epochs=1, terminal=False)
    assert first.count("epoch 1 of 1: train loss 0.") == 1 and "valid AUC 0." in first
    resumed = fit_dnn(data_dir, checkpoint, epochs=2, terminal=False).splitlines()
    assert resumed[0] == "resuming run synthetic-run-1 after epoch 1 of 2"
    assert resumed[1].startswith("epoch 2 of 2: train loss 0.") and len(resumed) == 2


def test_a_terminal_gets_the_bar_not_the_epoch_lines(data_dir):
    assert "train loss" not in fit_dnn(data_dir, None, epochs=1, terminal=True)
