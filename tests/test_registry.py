"""Checks every registered model must pass, whatever it is (parametrised over the whole registry)."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from mscbench.models import REGISTRY, build_model
from mscbench.models.base import ConfigError, CrossScenario, ScenarioOwned, get_card, register
from mscbench.models.blocks.embedding import use_sparse_gradients
from mscbench.models.cel import ClusteredEmbedding
from mscbench.training.trainer import advance_schedules, batch_loss, scheduled_modules
from tests.helpers import owned_gradients, random_batch, tiny_manifest, torch_threads

MODELS = sorted(REGISTRY)
MULTI_SCENARIO = [n for n in MODELS if REGISTRY[n].multi_scenario]
SMALL_CEL = {"embedding": "cel", "cel_compression": 4.0, "cel_split_every": 1, "cel_reassign_every": 2}


def built(name: str, seed: int = 0, **values):
    torch.manual_seed(seed)
    manifest = tiny_manifest()
    return manifest, build_model(name, manifest, values)


def train_steps(model: nn.Module, manifest, steps: int = 3) -> None:
    """A few Adam steps as the trainer takes them: schedules advanced before each step, then once more."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for step in range(steps):
        advance_schedules(model, step)
        batch = random_batch(manifest, 16, seed=step)
        optimizer.zero_grad()
        batch_loss(model, batch).backward()
        optimizer.step()
    advance_schedules(model, steps)


def saved_and_loaded(model: nn.Module, fresh: nn.Module) -> nn.Module:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    return fresh


def is_running_statistic(name: str) -> bool:
    """Buffers a training forward may move, as BatchNorm's: statistics of the data, never schedules."""
    leaf = name.rsplit(".", 1)[-1]
    return leaf.startswith("running_") or leaf == "num_batches_tracked"


@pytest.mark.parametrize("name", MODELS)
def test_forward_gives_one_finite_logit_per_sample(name):
    manifest, model = built(name)
    output = model(random_batch(manifest, 24))
    assert output.logit.shape == (24,)
    assert torch.isfinite(output.logit).all()
    if output.aux_loss is not None:
        assert output.aux_loss.dim() == 0 and torch.isfinite(output.aux_loss)


@pytest.mark.parametrize("name", MODELS)
def test_a_trained_model_saved_and_loaded_predicts_identically(name):
    """Anything that affects predictions (weights, running statistics, schedules, cluster state) is in the
    state dict: a fresh model of another seed, loaded with it, predicts the same to the bit."""
    manifest, model = built(name, seed=1)
    train_steps(model, manifest)
    fresh = saved_and_loaded(model, built(name, seed=2)[1])
    batch = random_batch(manifest, 16, seed=9)
    model.eval(), fresh.eval()
    with torch.no_grad():
        assert torch.equal(model(batch).logit, fresh(batch).logit)


@pytest.mark.parametrize("name", MODELS)
def test_a_training_forward_moves_no_schedule(name):
    """Schedules move only in `advance_schedule` (the trainer's step): a training forward and backward
    leaves every buffer as it was, except running statistics of the data (BatchNorm-style)."""
    manifest, model = built(name)
    model.train()
    before = {k: v.clone() for k, v in model.named_buffers() if not is_running_statistic(k)}
    model(random_batch(manifest, 16)).logit.sum().backward()
    after = dict(model.named_buffers())
    for key, value in before.items():
        assert torch.equal(value, after[key]), f"forward moved {key}"


@pytest.mark.parametrize("name", MODELS)
def test_evaluation_is_pure_and_batch_independent(name):
    manifest, model = built(name)
    model.eval()
    batch = random_batch(manifest, 20)
    with torch.no_grad():
        first = model(batch).logit
        again = model(batch).logit
        permutation = torch.randperm(20, generator=torch.Generator().manual_seed(3))
        shuffled = model(batch.select(permutation)).logit
        alone = torch.cat([model(batch.select(torch.tensor([i]))).logit for i in range(20)])
    assert torch.equal(first, again)
    torch.testing.assert_close(shuffled, first[permutation], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(alone, first, rtol=1e-5, atol=1e-6)


def comparable(grad: torch.Tensor) -> list[torch.Tensor]:
    """A gradient as strided tensors to compare: a sparse one (lazy_adam's tables) coalesced, as SparseAdam reads it."""
    if not grad.is_sparse:
        return [grad.clone()]
    grad = grad.coalesce()
    return [grad.indices(), grad.values()]


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam"])
@pytest.mark.parametrize("name", MODELS)
def test_a_training_steps_gradients_are_the_same_on_every_call_with_several_threads(name, optimizer):
    """The same step gives the same gradients to the bit at 2 CPU threads (CI's), on a batch that repeats every
    id and scenario many times: a gather whose backward adds in whatever order the threads reach the rows
    (advanced indexing's index_put_ with accumulate) made STAR, HAMUR and SAR-Net's runs differ from one to
    the next in the 7th digit. lazy_adam: the tables' sparse gradients, coalesced as SparseAdam reads them."""
    manifest, model = built(name)
    if optimizer == "lazy_adam":
        use_sparse_gradients(model)
    advance_schedules(model, 0)
    batch = random_batch(manifest, 1024)  # [1024, d] gathers: large enough for torch to split them over threads
    state = {key: value.clone() for key, value in model.state_dict().items()}

    def gradients() -> list[torch.Tensor]:
        model.load_state_dict(state)  # a training forward moves running statistics (STAR's, AdaptDHM's centres)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same dropout masks
        batch_loss(model, batch).backward()
        return [part for p in model.parameters() if p.grad is not None for part in comparable(p.grad)]

    with torch_threads(2):
        first = gradients()
        for _ in range(10):
            again = gradients()
            assert all(torch.equal(a, b) for a, b in zip(again, first, strict=True))


@pytest.mark.parametrize("name", MULTI_SCENARIO)
def test_scenario_parameters_get_gradient_only_from_their_scenario(name):
    """docs/models.md#conventions: one backward pass (data and auxiliary loss) on scenarios {0, 1}; what scenarios 2.. own,
    whole parameters or rows of a shared table, gets exactly zero gradient."""
    manifest, model = built(name)
    batch = random_batch(manifest, 32, scenarios=[0, 1])
    output = model(batch)
    loss = nn.functional.binary_cross_entropy_with_logits(output.logit, torch.ones_like(output.logit))
    (loss if output.aux_loss is None else loss + output.aux_loss).backward()
    for scenario in range(manifest.num_scenarios):
        grads = owned_gradients(model, scenario)
        assert grads, "scenario_parameters must name the scenario's parameters"
        if scenario < 2:
            assert any(g is not None and g.abs().sum() > 0 for g in grads), f"{scenario} learns nothing"
        else:
            assert all(g is None or torch.count_nonzero(g) == 0 for g in grads), f"scenario {scenario} leaks"


def rows_seen_by_scenario_modules(model: nn.Module, batch) -> dict[int, set[int]]:
    """Run `batch` in evaluation and record, for each scenario, how many rows each call of a module owned
    wholly by that scenario (a tower, an expert, an adapter) received."""
    seen: dict[int, set[int]] = {}
    handles = []
    for scenario in sorted(set(batch.scenario.tolist())):
        owned = {id(p) for p in model.scenario_parameters(scenario) if isinstance(p, nn.Parameter)}
        for module in model.modules():
            parameters = list(module.parameters())
            if parameters and all(id(p) in owned for p in parameters):
                def record(module, args, kwargs, scenario=scenario):
                    first = next(a for a in [*args, *kwargs.values()] if isinstance(a, torch.Tensor))
                    seen.setdefault(scenario, set()).add(len(first))
                handles.append(module.register_forward_pre_hook(record, with_kwargs=True))
    model.eval()
    with torch.no_grad():
        model(batch)
    for handle in handles:
        handle.remove()
    return seen


def check_branch_cost(model: nn.Module, manifest) -> None:
    """Scenario t's own modules see exactly scenario t's rows (1, 2, 3, 4 rows for scenarios 0..3), never
    the whole batch; a model whose design needs every branch on every row says why in
    `cross_scenario_compute`, and then its branches must indeed see more rows."""
    batch = random_batch(manifest, 10, scenarios=[0, 1, 1, 2, 2, 2, 3, 3, 3, 3])
    counts = torch.bincount(batch.scenario).tolist()
    seen = rows_seen_by_scenario_modules(model, batch)
    if isinstance(model, CrossScenario):
        assert any(rows != {counts[t]} for t, rows in seen.items()), "declared cross-scenario, is not"
        return
    for scenario, rows in seen.items():
        assert rows == {counts[scenario]}, f"scenario {scenario}'s branch ran on {rows} rows"


@pytest.mark.parametrize("name", MULTI_SCENARIO)
def test_a_scenarios_branches_run_on_its_own_rows_only(name):
    manifest, model = built(name)
    check_branch_cost(model, manifest)


class MaskedTowers(nn.Module):
    """The public implementations' pattern: every tower on the whole batch, the own one selected after."""

    def __init__(self, scenarios: int):
        super().__init__()
        self.towers = nn.ModuleList(nn.Linear(2, 1) for _ in range(scenarios))

    def forward(self, batch):
        logits = torch.cat([tower(batch.dense) for tower in self.towers], dim=1)  # [B, N]
        return type("Output", (), {"logit": logits.gather(1, batch.scenario[:, None]).squeeze(1)})

    def scenario_parameters(self, scenario: int) -> list[nn.Parameter]:
        return list(self.towers[scenario].parameters())


def test_the_branch_cost_check_catches_towers_run_on_the_whole_batch():
    manifest = tiny_manifest()
    with pytest.raises(AssertionError, match="ran on"):
        check_branch_cost(MaskedTowers(manifest.num_scenarios), manifest)


def owned_rows(model: nn.Module, scenario: int) -> set[tuple[int, int]]:
    """(parameter id, row) for every row `scenario` owns; a whole parameter owns all its rows."""
    rows = set()
    for owned in model.scenario_parameters(scenario):
        parameter, index = owned if isinstance(owned, tuple) else (owned, slice(None))
        indices = range(len(parameter))[index]
        rows |= {(id(parameter), row) for row in (indices if isinstance(indices, range) else [indices])}
    return rows


@pytest.mark.parametrize("name", MODELS)
def test_a_models_declared_contract_matches_what_it_has(name):
    """`multi_scenario` at registration <=> `ScenarioOwned`; a `CrossScenario` model is multi-scenario and
    says why; what each scenario owns is the model's own parameters (rows in range), owned by it alone."""
    card = REGISTRY[name]
    manifest, model = built(name)
    assert card.multi_scenario == isinstance(model, ScenarioOwned)
    if isinstance(model, CrossScenario):
        assert card.multi_scenario and model.cross_scenario_compute.strip()
    if not card.multi_scenario:
        return
    parameters = {id(p) for p in model.parameters()}
    owners: dict[tuple[int, int], int] = {}
    for scenario in range(manifest.num_scenarios):
        rows = owned_rows(model, scenario)
        assert rows and {parameter for parameter, _ in rows} <= parameters
        shared = {owners[row] for row in rows if row in owners}
        assert not shared, f"scenario {scenario} owns what scenarios {shared} own"
        owners |= dict.fromkeys(rows, scenario)


def test_registration_refuses_a_multi_scenario_flag_that_contradicts_the_model():
    class Plain(nn.Module):
        pass

    class Owning(nn.Module):
        def scenario_parameters(self, scenario: int) -> list[nn.Parameter]:
            return []

    card = REGISTRY["dnn"]
    facts = {"config": card.config, "description": "-", "paper": "-", "year": 2000}
    with pytest.raises(TypeError, match="multi_scenario=True but lacks scenario_parameters"):
        register("contradiction", multi_scenario=True, **facts)(Plain)
    with pytest.raises(TypeError, match="multi_scenario=False but has scenario_parameters"):
        register("contradiction", **facts)(Owning)
    assert "contradiction" not in REGISTRY


def test_the_trainer_advances_every_scheduled_module():
    """AdaSparse's sharpness and CEL's cluster tables are `Scheduled`; nothing else is."""
    _, model = built("adasparse", **SMALL_CEL)
    clustered = [m for m in model.modules() if isinstance(m, ClusteredEmbedding)]
    assert clustered and scheduled_modules(model) == [model, *clustered]
    assert scheduled_modules(built("dnn")[1]) == []


def test_unknown_model_and_setting_are_clear_errors():
    with pytest.raises(ConfigError, match="did you mean 'dnn'"):
        get_card("dnm")
    with pytest.raises(ConfigError, match="has no setting 'hiden'.*'hidden'"):
        get_card("dnn").make_config({"hiden": [8]})
    with pytest.raises(ConfigError, match="must be a list"):
        get_card("dnn").make_config({"hidden": 8})


def test_sequence_models_refuse_datasets_without_sequences():
    manifest = tiny_manifest(with_sequence=False)
    for name, card in REGISTRY.items():
        if card.needs_sequence:
            with pytest.raises(ConfigError, match="needs a behaviour sequence"):
                build_model(name, manifest)


@pytest.mark.parametrize("name", MODELS)
def test_cel_embeddings_plug_into_every_model_and_their_cluster_state_is_saved(name):
    """`embedding=cel` on any model: smaller id tables, clusters split and reassigned on the trainer's step,
    predictions still batch-independent, the cluster state saved with the weights."""
    manifest, model = built(name, seed=1, **SMALL_CEL)
    clustered = [m for m in model.modules() if type(m).__name__ == "ClusteredEmbedding"]
    assert clustered and all(len(table.weight) < len(table.assignment) for table in clustered)
    train_steps(model, manifest)
    assert any(int(table.active) > 1 for table in clustered)  # a split happened
    fresh = saved_and_loaded(model, built(name, seed=2, **SMALL_CEL)[1])
    model.eval(), fresh.eval()
    batch = random_batch(manifest, 8, seed=5)
    with torch.no_grad():
        first = model(batch).logit
        assert torch.equal(first, fresh(batch).logit)
        alone = torch.cat([model(batch.select(torch.tensor([i]))).logit for i in range(8)])
    torch.testing.assert_close(alone, first, rtol=1e-5, atol=1e-6)
