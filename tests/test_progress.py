"""What a person watching a run sees: a line per finished epoch in a log, a line when a run resumes, a
notice when a busy machine makes training take one thread."""

import io
import os

import pytest
import torch
from rich.console import Console
from rich.progress import Progress

from mscbench.config import TrainConfig
from mscbench.data.loader import load_split
from mscbench.experiment import recipes
from mscbench.experiment.planning import plan_run
from mscbench.models import build_model
from mscbench.training.trainer import busy_at_start, fit, resolved_threads


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


@pytest.fixture
def four_cores(monkeypatch):
    """A 4-core machine whose load average the test sets; the once-per-process reading is forgotten."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    busy_at_start.cache_clear()
    yield lambda load: monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    busy_at_start.cache_clear()


def test_a_busy_machine_gets_one_thread_and_a_notice(four_cores, capsys):
    four_cores(6.5)
    assert resolved_threads(TrainConfig()) == 1
    assert resolved_threads(TrainConfig()) == 1  # decided once: one notice
    notice = capsys.readouterr().err
    assert notice == "notice: the load average (6.5) is above the 4 cores, so training uses 1 thread " \
                     "(--set threads=N to choose)\n"
    assert resolved_threads(TrainConfig(threads=3)) == 3  # a count asked for is kept


def test_an_idle_machine_gets_one_thread_per_core_silently(four_cores, capsys):
    four_cores(3.9)
    assert resolved_threads(TrainConfig()) == 4 and capsys.readouterr().err == ""


def headings(monkeypatch, clock: list[float]) -> list[str]:
    """What `run_plans` says before each of three runs, the clock reading `clock` at the start and after each."""
    monkeypatch.setattr(recipes.time, "perf_counter", iter(clock).__next__)
    said = []
    monkeypatch.setattr(recipes, "get_or_run", lambda plan, *args, heading, **kwargs: said.append(heading))
    recipes.run_plans(["dnn", "mmoe", "star"], store=None, progress=None)
    return said


def test_each_run_of_an_experiment_says_which_of_how_many_and_about_how_long_is_left(monkeypatch):
    assert headings(monkeypatch, [0.0, 100.0, 160.0]) == [  # runs 1 and 2 take 100 s, then 60 s
        "run 1 of 3: ", "run 2 of 3, about 3 min left: ", "run 3 of 3, about 80 s left: "]
    assert [recipes.duration(s) for s in (40, 720, 9000)] == ["40 s", "12 min", "2.5 h"]


def test_runs_that_are_only_reused_say_no_time_left(monkeypatch):
    assert headings(monkeypatch, [0.0, 0.1, 0.2]) == ["run 1 of 3: ", "run 2 of 3: ", "run 3 of 3: "]
