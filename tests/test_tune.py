"""Tuning: search spaces checked before any trial, trials as stored runs scored on validation only, studies
that resume and that several processes share."""

import json
import re

import optuna
import pytest
from rich.console import Console

from mscbench import api
from mscbench import cli as cli_module
from mscbench.cli import main
from mscbench.data.prepare import prepare_synthetic
from mscbench.errors import UserError
from mscbench.experiment import execution, tune
from mscbench.experiment.tune import load_study, model_space, open_storage, plan_study, run_study
from mscbench.results.report import to_markdown
from mscbench.results.store import RunStore
from mscbench.space import Choice, IntRange, LogUniform, SpaceError, Uniform, parse_space

FAST = {"epochs": 1, "threads": 1, "batch_size": 512}  # fixed: each trial is one short epoch
SPACE = {"lr": {"log": [1e-3, 3e-2]}, "hidden": {"choice": [[16], [32, 16]]}}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tune-data")
    prepare_synthetic(directory, rows=4000, seed=0)
    return directory


def study(data_dir, runs_dir, trials=2, **options):
    return plan_study("dnn", "synthetic", data_dir, runs_dir, {**FAST, **SPACE}, trials=trials,
                      replace_space=True, **options)


def test_spaces_are_declared_with_the_settings():
    dnn = model_space("dnn")
    assert dnn["lr"] == LogUniform(1e-4, 3e-2)  # the shared training space
    assert dnn["embedding_dim"] == Choice(8, 16, 32) and dnn["dropout"] == Uniform(0.0, 0.5)  # where it exists
    assert dnn["hidden"] == Choice((64, 32), (128, 64, 32), (256, 128, 64))  # DNNConfig's own field
    assert model_space("mmoe")["num_experts"] == IntRange(2, 8)
    assert set(model_space("lr")) == {"batch_size", "lr", "weight_decay"}  # LR has no hyperparameter of its own


@pytest.mark.parametrize("entries, message", [
    ({"lrr": {"log": [1e-4, 1e-2]}}, "no setting 'lrr' (did you mean 'lr'?)"),
    ({"lr": {"log": [0, 1e-2]}}, "log range needs 0 < low < high"),
    ({"dropout": {"uniform": [0.5, 0.1]}}, "uniform range needs low < high"),
    ({"hidden": {"choice": [[16], ["wide"]]}}, "hidden must be an integer"),
    ({"embedding_dim": {"uniform": [4, 32]}}, "embedding_dim must be an integer"),
    ({"lr": {"normal": [0, 1]}}, "the kinds are log, uniform, int and choice"),
    ({"lr": {"log": [1e-3]}}, "takes two numbers"),
])
def test_a_bad_space_is_one_error_before_any_trial(entries, message, tiny_data, tmp_path):
    with pytest.raises(UserError, match=re.escape(message)):
        plan_study("dnn", "synthetic", tiny_data, tmp_path / "runs", entries, trials=2)
    assert not (tmp_path / "runs").exists()


def test_recipe_syntax_gives_ranges_and_fixed_values():
    assert parse_space("lr", {"log": [1e-4, 1e-2]}, "x") == LogUniform(1e-4, 1e-2)
    assert parse_space("hidden", {"choice": [[64], [128, 64]]}, "x") == Choice((64,), (128, 64))
    assert parse_space("num_experts", {"int": [2, 6]}, "x") == IntRange(2, 6)
    assert parse_space("lr", 0.01, "x") == 0.01
    with pytest.raises(SpaceError, match="takes two integers"):
        parse_space("num_experts", {"int": [2, 6.5]}, "x")


def test_a_study_trains_each_trial_once_and_a_rerun_trains_nothing(tiny_data, tmp_path):
    runs = tmp_path / "runs"
    result = run_study(study(tiny_data, runs))
    assert [t.state for t in result.trials] == ["complete", "complete"]
    assert result.best.value == max(t.value for t in result.trials) > 0.5
    store = RunStore(runs)
    for trial in result.trials:
        assert store.is_trained(trial.run_id) and not store.is_complete(trial.run_id)  # no test metrics
        assert trial.value == store.load_trained(trial.run_id)["training"]["best_valid_auc"]["all"]
        assert set(trial.settings) == {"lr", "hidden"}
    stamps = {t.run_id: (runs / t.run_id / "model.pt").stat().st_mtime_ns for t in result.trials}
    again = run_study(study(tiny_data, runs))
    assert again.trials == result.trials  # the study was complete: nothing asked, nothing trained
    longer = run_study(study(tiny_data, runs, trials=3))
    assert longer.trials[:2] == result.trials and len(longer.trials) == 3
    assert {t.run_id: (runs / t.run_id / "model.pt").stat().st_mtime_ns for t in result.trials} == stamps


def test_the_test_split_is_never_read(tiny_data, tmp_path, monkeypatch):
    """With the test split unreadable, every trial value and the choice are the same as with it."""
    intact = run_study(study(tiny_data, tmp_path / "intact"))
    read = execution.load_split

    def no_test_split(path, manifest, split):
        assert split != "test", "tuning read the test split"
        return read(path, manifest, split)

    monkeypatch.setattr(execution, "load_split", no_test_split)
    without_test = run_study(study(tiny_data, tmp_path / "poisoned"))
    assert [(t.value, t.settings) for t in without_test.trials] == [(t.value, t.settings) for t in intact.trials]
    assert without_test.best.settings == intact.best.settings


def test_an_interrupted_trial_is_run_again_and_the_study_completes(tiny_data, tmp_path):
    plan = study(tiny_data, tmp_path / "runs", trials=2)
    left = load_study(plan, open_storage(plan.storage))
    killed = left.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 3e-2, log=True)})
    killed.set_user_attr("worker", f"{__import__('socket').gethostname()}:{2**22 + 7}")  # no such process
    result = run_study(plan)
    assert len(result.trials) == 2 and all(t.state == "complete" for t in result.trials)
    assert optuna.trial.TrialState.FAIL in {t.state for t in left.get_trials()}  # the killed one, not counted
    assert result.trials[0].settings["lr"] == killed.params["lr"]  # queued again with its setting


def test_two_workers_share_the_budget(tiny_data, tmp_path):
    plan = study(tiny_data, tmp_path / "runs", trials=3, storage=f"journal:{tmp_path / 'study.log'}")
    result = run_study(plan, jobs=2)
    assert sorted(t.number for t in result.trials) == [0, 1, 2]
    assert len({t.run_id for t in result.trials}) == 3  # no setting trained twice
    assert len(load_study(plan, open_storage(plan.storage)).get_trials()) == 3  # none asked beyond the budget


def test_a_trial_over_several_seeds_is_scored_on_their_mean(tiny_data, tmp_path):
    runs = tmp_path / "runs"
    result = run_study(study(tiny_data, runs, seeds=[0, 1]))
    store, single = RunStore(runs), study(tiny_data, runs)
    assert result.objective.endswith("mean over seeds 0, 1") and result.study != single.name  # its own study
    trials = optuna.load_study(study_name=result.study, storage=result.storage).get_trials()
    for trial, frozen in zip(result.trials, trials, strict=True):
        first, second = frozen.user_attrs["run_ids"]
        assert trial.run_id == first and "-seed0-" in first and "-seed1-" in second
        values = [store.load_trained(run)["training"]["best_valid_auc"]["all"] for run in (first, second)]
        assert trial.value == pytest.approx(sum(values) / 2) and values[0] != values[1]
    again = run_study(study(tiny_data, runs, seeds=[0, 1]))
    assert again.trials == result.trials  # complete: nothing trained


def test_a_trial_asked_beyond_the_budget_is_given_back(tiny_data, tmp_path, monkeypatch):
    """Two machines each counted 1 of 2 trials, then both asked: the one numbered third gives its trial back."""
    plan = study(tiny_data, tmp_path / "runs", trials=2)
    first = run_study(plan)
    answers = iter([False])  # this worker counted before the other machine's trial was asked
    monkeypatch.setattr(tune, "spent", lambda plan, study: next(answers, True))
    tune.work(plan, 0, None)
    surplus = load_study(plan, open_storage(plan.storage)).get_trials()[-1]
    assert surplus.number == 2 and surplus.state == optuna.trial.TrialState.FAIL and surplus.user_attrs["surplus"]
    assert not RunStore(tmp_path / "runs").is_trained(surplus.user_attrs.get("run_id", "none"))  # nothing ran
    monkeypatch.undo()
    assert run_study(plan).trials == first.trials  # not counted, not listed


@pytest.fixture
def wide_console(monkeypatch):
    monkeypatch.setattr(cli_module, "console", Console(width=250))


def test_tune_command_prints_trials_and_the_best_setting(tiny_data, tmp_path, capsys, wide_console):
    args = ["tune", "dnn", "--trials", "2", "--data-dir", str(tiny_data), "--runs-dir", str(tmp_path / "runs"),
            "--set", "epochs=1", "--set", "threads=1", "--set", "lr={log = [1e-3, 1e-2]}", "--sampler", "random"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("complete") == 2 and "best validation AUC" in out and "log-uniform [0.001, 0.01]" in out


@pytest.mark.parametrize("args, message", [
    (["tune", "dnm", "--trials", "2"], "unknown model 'dnm' (did you mean 'dnn'?)"),
    (["tune", "dnn", "--trials", "0"], "--trials must be 1 or more"),
    (["tune", "dnn", "--trials", "2", "--set", "lrr={log = [1e-4, 1e-2]}"], "no setting 'lrr'"),
    (["tune", "dnn", "--trials", "2", "--sampler", "grid"], "--sampler grid needs a choice for lr"),
    (["tune", "dnn", "--trials", "2", "--storage", "journal:/no/such/dir/study.log"], "cannot open the study"),
    (["tune", "dnn", "--trials", "2", "--storage", "postgresql://nobody@127.0.0.1:9/none"], "cannot open the study"),
    (["tune", "dnn", "--trials", "2", "--seeds", "0,0"], "--seeds names a seed twice"),
    (["tune", "dnn", "--trials", "2", "--seeds", "0,x"], "--seeds takes integers, not 'x'"),
    (["tune", "dnn", "--trials", "2", "--seeds", "1", "--set", "seed=2"], "give the trials' seeds once"),
])
def test_bad_tune_input_is_one_line_and_nothing_is_written(args, message, tiny_data, tmp_path, capsys):
    runs = tmp_path / "runs"
    code = main([*args, "--data-dir", str(tiny_data), "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert not list(runs.glob("*/config.toml"))  # no run begun


def test_a_tuned_recipe_compares_each_models_best_setting(tmp_path, capsys, wide_console):
    recipe = tuned_recipe(tmp_path, models=["dnn", "lr"], model_table='[model.dnn]\nhidden = {choice = [[16], [32]]}')
    runs, exported = tmp_path / "runs", tmp_path / "fair.json"
    args = ["compare", "--recipe", str(recipe), "--data-dir", str(tmp_path / "data"), "--runs-dir", str(runs)]
    assert main([*args, "--format", "json", "--output", str(exported)]) == 0
    assert capsys.readouterr().out.count(" trial ") == 4  # 2 models x 2 trials, one line each
    tuning = json.loads(exported.read_text())["tuning"]
    assert tuning["budget"] == "2 trials" and tuning["sampler"] == "random"
    assert set(tuning["settings"]["dnn"]) == {"lr", "hidden"} and set(tuning["settings"]["lr"]) == {"lr"}
    assert tuning["spaces"]["dnn"] == {"lr": "log-uniform [0.001, 0.03]", "hidden": "one of [16], [32]"}
    for model in ("dnn", "lr"):  # the best trial's run is the comparison's seed-0 run, evaluated, not retrained
        best = best_run(runs, tuning["studies"][model])
        assert RunStore(runs).is_complete(best) and f"-{model}-seed0-" in best
    assert main([*args, "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert " trial " not in out and "training" not in out  # studies complete, runs stored: nothing trained
    assert "Each model tuned with the same budget (2 trials per model, random sampler" in out
    assert "the test split untouched while tuning" in out
    with_reference = api.compare(recipe=recipe, transfer_base="dnn:individual", data_dir=tmp_path / "data",
                                 runs_dir=runs)  # the reference at dnn's tuned setting, not a range
    store = RunStore(runs)
    references = [store.load(path.name) for path in runs.iterdir() if store.is_complete(path.name)
                  and store.load(path.name).protocol == "individual"]
    assert {run.config["train"]["lr"] for run in references} == {tuning["settings"]["dnn"]["lr"]}
    assert with_reference.comparison.transfer.reference == "dnn:individual" and len(references) == 2
    assert "The reference trains at dnn's tuned setting" in to_markdown(with_reference.comparison)
    untuned = api.compare(recipe=recipe, tune=False, data_dir=tmp_path / "data", runs_dir=runs)
    assert untuned.comparison.tuning == {} and len(untuned.runs) == 4  # no study: defaults at the same budget
    assert {(run.config["train"]["lr"], run.config["train"]["epochs"]) for run in untuned.runs} == {(1e-3, 1)}
    assert not {run.run_id for run in untuned.runs} & {best_run(runs, study) for study in tuning["studies"].values()}


def best_run(runs, study_name):
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{runs / 'tuning.db'}")
    return study.best_trial.user_attrs["run_id"]


@pytest.mark.parametrize("tune, message", [
    ("sampler = 'tpe'", "[tune] needs a budget: trials = N or seconds = S"),
    ("trials = 0", "[tune] trials must be 1 or more, not 0"),
    ("seconds = -5", "[tune] seconds must be more than 0"),
    ("trials = 2\nseeds = 0", "[tune] seeds must be 1 or more, not 0"),
    ("trials = 2\nsampler = 'annealing'", "sampler must be one of"),
    ("trials = 2\nbudget = 3", "budget"),
])
def test_a_bad_tune_table_is_one_line_before_anything_is_written(tune, message, tmp_path, capsys):
    recipe = tuned_recipe(tmp_path, models=["dnn"], tune=tune)
    runs = tmp_path / "runs"
    assert main(["compare", "--recipe", str(recipe), "--data-dir", str(tmp_path / "data"), "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not runs.exists()


def test_a_recipe_can_tune_on_several_of_its_seeds(tmp_path, capsys):
    recipe = tuned_recipe(tmp_path, models=["dnn"], tune=SMALL_TUNE + "\nseeds = 2")
    runs = tmp_path / "runs"
    result = api.compare(recipe=recipe, data_dir=tmp_path / "data", runs_dir=runs)
    assert result.comparison.tuning["objective"].endswith("mean over seeds 0, 1")
    best = optuna.load_study(study_name=result.comparison.tuning["studies"]["dnn"],
                             storage=f"sqlite:///{runs / 'tuning.db'}").best_trial
    assert [run.run_id for run in result.runs] == best.user_attrs["run_ids"]  # both seeds' runs: the trial's
    recipe = tuned_recipe(tmp_path, models=["dnn"], tune=SMALL_TUNE + "\nseeds = 3")
    assert main(["compare", "--recipe", str(recipe), "--data-dir", str(tmp_path / "data"),
                 "--runs-dir", str(runs)]) == 2
    assert "[tune] seeds = 3, but the recipe has 2 seeds" in capsys.readouterr().err


SMALL_TUNE = 'trials = 2\nsampler = "random"\nspace = "recipe"'


def tuned_recipe(directory, models, model_table="", tune=SMALL_TUNE):
    """A small tuned recipe: 2 seeds, 1 epoch, lr the one range of the training settings, 2 random trials."""
    recipe = directory / "fair.toml"
    recipe.write_text(f"""
dataset = "synthetic"
models = {json.dumps(models)}
base = "dnn"
seeds = [0, 1]
[prepare]
rows = 4000
[train]
epochs = 1
threads = 1
lr = {{log = [1e-3, 3e-2]}}
{model_table}
[tune]
{tune}
""")
    return recipe
