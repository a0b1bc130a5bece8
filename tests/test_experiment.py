"""The experiment layer: a run's identity (configuration, data, thread count), its code fingerprint (a run made
by other code is stale: retrained, or reused and marked with --allow-stale), one process training a run at a
time, and the one recipe planner behind `compare` and `regress`."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mscbench
from mscbench.config import Recipe, TrainConfig
from mscbench.errors import UserError
from mscbench.experiment import execution
from mscbench.experiment.execution import execute
from mscbench.experiment.planning import PACKAGE, plan_run, shared_model_code, training_code
from mscbench.experiment.recipes import plan_recipe, with_options
from mscbench.results.store import BEGUN_FILE, RunStore
from mscbench.training import trainer
from mscbench.training.trainer import resolved_threads

FAST = {"epochs": 1, "batch_size": 1024, "threads": 1}
CLI_FAST = ["--epochs", "1", "--batch-size", "1024", "--set", "threads=1"]


def mscbench_process(package_parent: Path, *args: str, **options) -> subprocess.Popen:
    """`python -m mscbench ARGS` importing the package found in `package_parent`."""
    environment = {**os.environ, "PYTHONPATH": str(package_parent), "PYTHONUNBUFFERED": "1", "COLUMNS": "250"}
    return subprocess.Popen([sys.executable, "-m", "mscbench", *args], env=environment, cwd=package_parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **options)


def finished(process: subprocess.Popen) -> str:
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out
    return " ".join(out.split())


def test_a_run_made_by_other_code_is_not_reused(data_dir, tmp_path):
    """A copy of the package, one model file edited: its old run is stale (retrained, or kept on request)."""
    copy = tmp_path / "copy"
    shutil.copytree(PACKAGE, copy / "mscbench", ignore=shutil.ignore_patterns("__pycache__"))
    train = ["train", "dnn", *CLI_FAST, "--data-dir", str(data_dir), "--runs-dir", str(tmp_path / "runs")]
    out = finished(mscbench_process(copy, *train))
    assert "training dnn (seed 0)" in out and "‡" not in out
    model_file = copy / "mscbench" / "models" / "dnn.py"
    model_file.write_text(model_file.read_text() + "\n# an edit: the code that made the stored run changed\n")

    out = finished(mscbench_process(copy, *train, "--allow-stale"))
    assert "reusing dnn (seed 0), a stale run made by other code (--allow-stale)" in out
    assert "dnn‡" in out and "‡ Reused runs made by other code than the current one" in out
    out = finished(mscbench_process(copy, *train))
    assert "retraining dnn (seed 0): its stored run synthetic-" in out and "was made by other code" in out
    assert "‡" not in out
    out = finished(mscbench_process(copy, *train))
    assert "reusing dnn (seed 0)" in out and "stale" not in out


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("begun_by", ["same", "other", None])  # None: a run begun before the code was recorded
def test_an_interrupted_run_resumes_only_under_the_code_that_began_it(begun_by, data_dir, tmp_path, monkeypatch):
    plan = plan_run("synthetic", "dnn", data_dir, {}, {**FAST, "epochs": 2})
    store = RunStore(tmp_path / "runs")

    def stop(epoch, valid_auc):
        raise Interrupted

    with pytest.raises(Interrupted):  # killed after its first epoch: a checkpoint is left
        execution.get_or_train(plan, store, on_epoch=stop)
    begun = store.path(plan.run_id) / BEGUN_FILE
    assert store.begun_by(plan.run_id) == plan.code
    if begun_by is None:
        begun.unlink()
    elif begun_by == "other":
        begun.write_text("0123456789abcdef")
    restored = []
    monkeypatch.setattr(trainer, "restore", lambda *args, restore=trainer.restore: restored.append(1) or restore(*args))
    record = execution.get_or_run(plan, store)
    assert restored == ([1] if begun_by == "same" else [])  # another code's checkpoint is not resumed
    assert record.training.epochs_run == 2 and record.code == plan.code
    assert store.begun_by(plan.run_id) is None and not begun.exists()  # complete: nothing left to resume


def test_the_code_fingerprint_covers_the_shared_model_code_and_the_trainer_not_other_models():
    shared = {path.relative_to(PACKAGE).as_posix() for path in shared_model_code()}
    assert {"models/base.py", "models/__init__.py"} <= shared and "models/dnn.py" not in shared
    assert not shared & {"models/star.py", "models/saml.py"}
    trained = {path.relative_to(PACKAGE).as_posix() for path in training_code()}
    assert {"training/trainer.py", "data/loader.py", "eval/metrics.py", "eval/evaluation.py",
            "experiment/execution.py"} <= trained
    assert PACKAGE == Path(mscbench.__file__).resolve().parent


def test_the_thread_count_is_part_of_a_runs_identity(data_dir):
    one, two = (plan_run("synthetic", "dnn", data_dir, train_values={**FAST, "threads": n}) for n in (1, 2))
    assert one.run_id != two.run_id and one.code == two.code
    count = resolved_threads(TrainConfig())  # one per core, or one on a machine busy at start
    every_core = plan_run("synthetic", "dnn", data_dir, train_values={**FAST, "threads": 0})
    assert every_core.train.threads == count  # resolved, so 0 and the count it stands for are one run
    assert every_core.run_id == plan_run("synthetic", "dnn", data_dir, train_values={**FAST, "threads": count}).run_id
    faster = plan_run("synthetic", "dnn", data_dir, train_values={**FAST, "eval_batch_size": 100})
    assert faster.run_id == one.run_id  # how fast a run goes is not what it computes


def test_a_second_process_waits_for_the_run_being_trained_and_reuses_it(data_dir, tmp_path):
    """This process holds the run's lock and trains it while a real `mscbench train` of the same run waits."""
    store = RunStore(tmp_path / "runs")
    plan = plan_run("synthetic", "dnn", data_dir, train_values=FAST)
    with store.lock(plan.run_id, print):
        other = mscbench_process(PACKAGE.parent, "train", "dnn", *CLI_FAST, "--data-dir", str(data_dir),
                                 "--runs-dir", str(store.root))
        first = other.stdout.readline()
        assert first.strip() == f"waiting for run {plan.run_id} (being trained by process {os.getpid()})"
        execute(plan, store)
        created = store.load(plan.run_id).created
    out = finished(other)
    assert "reusing dnn (seed 0)" in out and "training" not in out
    assert store.load(plan.run_id).created == created


def test_command_line_choices_go_over_the_recipe(data_dir):
    recipe = Recipe(dataset="elsewhere", models=("dnn", "star"), base="dnn", seeds=(0, 1), train={"lr": 0.1},
                    prepare={"rows": 10})
    chosen = with_options(recipe, dataset="synthetic", models=["star"], base="lr", settings=FAST)
    assert (chosen.dataset, chosen.models, chosen.base, chosen.seeds) == ("synthetic", ("lr", "star"), "lr", (0, 1))
    assert chosen.train == {"lr": 0.1, **FAST} and chosen.prepare == {}  # a dataset given: nothing to make
    plans = plan_recipe(chosen, data_dir)
    assert [(p.model, p.train.seed, p.train.lr) for p in plans] == [("lr", 0, 0.1), ("lr", 1, 0.1),
                                                                     ("star", 0, 0.1), ("star", 1, 0.1)]
    alone = with_options(None, models=["dnn"])
    assert (alone.dataset, alone.base, alone.seeds) == ("synthetic", "dnn", (0,))
    with pytest.raises(UserError, match="name the models to compare"):
        with_options(None)
