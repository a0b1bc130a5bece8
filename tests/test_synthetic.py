"""The synthetic dataset: deterministic, skewed traffic, distinct CTRs, known oracle, leak-free sequences."""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from mscbench.data.errors import DataError
from mscbench.data.prepare import list_prepared, prepare_synthetic
from mscbench.data.sources import synthetic
from mscbench.data.sources.synthetic import (
    DAYS,
    SEQUENCE_LENGTH,
    SyntheticParams,
    generate,
    generate_with_parts,
    scenario_groups,
    traffic_shares,
)

PARAMS = SyntheticParams(rows=100_000, seed=0)


@pytest.fixture(scope="module")
def generated() -> tuple[pl.DataFrame, dict[str, np.ndarray]]:
    return generate_with_parts(PARAMS)


@pytest.fixture(scope="module")
def frame(generated) -> pl.DataFrame:
    return generated[0]


def scenario_ids(frame: pl.DataFrame) -> np.ndarray:
    return frame["scenario"].str.slice(1).cast(pl.Int64).to_numpy()


def per_scenario_auc(frame: pl.DataFrame, score: np.ndarray) -> np.ndarray:
    scenario, label = scenario_ids(frame), frame["click"].to_numpy()
    return np.array([roc_auc_score(label[scenario == s], score[scenario == s])
                     for s in range(PARAMS.scenarios)])


def test_same_seed_gives_the_same_frame_and_another_seed_another():
    small = SyntheticParams(rows=5000, seed=3)
    assert generate(small).equals(generate(small))
    assert not generate(small).equals(generate(SyntheticParams(rows=5000, seed=4)))


def test_traffic_is_skewed_as_designed(frame):
    assert traffic_shares(5) == pytest.approx([0.40, 0.26, 0.17, 0.11, 0.07], abs=0.01)
    observed = np.bincount(scenario_ids(frame)) / frame.height
    assert observed == pytest.approx(traffic_shares(5), abs=0.01)
    for count in (2, 3, 8):
        shares = traffic_shares(count)
        assert shares.sum() == pytest.approx(1.0) and np.all(np.diff(shares) < 0)


def test_scenarios_form_groups_of_similar_ones():
    assert scenario_groups(5).tolist() == [0, 0, 1, 1, 1]
    assert scenario_groups(4).tolist() == [0, 0, 1, 1]
    assert scenario_groups(1).tolist() == [0]


def test_scenario_click_rates_differ_between_5_and_20_percent(frame):
    ctr = frame.group_by("scenario").agg(pl.col("click").mean())["click"].to_numpy()
    assert np.all((ctr > 0.04) & (ctr < 0.22))
    assert ctr.max() - ctr.min() > 0.12


def test_oracle_auc_per_scenario_is_high_but_not_trivial(frame):
    oracle = per_scenario_auc(frame, frame["true_prob"].to_numpy())
    assert np.all((oracle > 0.70) & (oracle < 0.86)), oracle


def test_the_specific_part_matters_most_in_the_small_scenarios(frame, generated):
    parts = generated[1]
    oracle = per_scenario_auc(frame, frame["true_prob"].to_numpy())
    without_specific = per_scenario_auc(frame, parts["shared"] + parts["group"] + parts["sequence"])
    loss = oracle - without_specific
    assert loss[0] < 0.015 and loss[4] > 0.04 and loss.argmax() == 4, loss


def test_the_true_probability_is_the_sigmoid_of_the_parts(frame, generated):
    logit = sum(generated[1].values())
    assert frame["true_prob"].to_numpy() == pytest.approx(1 / (1 + np.exp(-logit)))


def test_sequences_hold_only_earlier_item_ids_with_their_categories(frame):
    lengths = frame["hist_item"].list.len().to_numpy()
    assert lengths.max() == SEQUENCE_LENGTH and lengths.min() == 0 and len(np.unique(lengths)) > 5
    assert (frame["hist_category"].list.len().to_numpy() == lengths).all()
    behaviours = frame.select(pl.col("hist_item", "hist_category", "hist_gap").explode()).drop_nulls()
    catalogue = frame.select("item_id", "category").unique()
    assert catalogue["item_id"].is_unique().all()  # one category per item
    joined = behaviours.join(catalogue, left_on="hist_item", right_on="item_id", how="left")
    assert joined["category"].null_count() < 0.01 * joined.height  # ids of catalogue items, nothing else
    matched = joined.drop_nulls("category")
    assert (matched["hist_category"] == matched["category"]).all()
    assert (behaviours["hist_gap"] > 0).all()  # strictly before the impression: no leak of the target


def test_sequences_are_in_time_order_most_recent_last(frame):
    gaps = frame.filter(pl.col("hist_gap").list.len() > 1)["hist_gap"]
    assert gaps.list.eval(pl.element().diff().drop_nulls() <= 0).list.all().all()


def test_days_and_columns(frame):
    assert frame["day"].min() == 1 and frame["day"].max() == DAYS
    assert frame["timestamp"].is_sorted()
    assert frame["price"].null_count() > 0  # some prices are missing, as in real logs
    assert set(frame["gender"].unique()) == {"f", "m", "unknown"}


def test_variant_names_encode_non_default_arguments():
    assert SyntheticParams().variant == "default"
    assert SyntheticParams(rows=2000, scenarios=3, seed=7).variant == "rows2000-sc3-seed7"
    assert SyntheticParams(seed=1).fingerprint()["seed"] == "1"


def test_too_few_rows_is_a_data_error():
    with pytest.raises(DataError, match="--rows"):
        SyntheticParams(rows=10)


# sha256 of every prepared column of `prepare synthetic --rows 20000` as the in-memory generator wrote it
# (main at 8152bd1, before generation ran in chunks): the chunked generator must write the very same bits
PREPARED_20K = "fca2b885d611d2e332eee6775ea46a201f7ff2bd181766555bd83a83b9c0bdc0"


def content_digest(path) -> str:
    digest = hashlib.sha256()
    for split in ("train", "valid", "test"):
        frame = pl.read_parquet(path / f"{split}.parquet")
        for name in frame.columns:
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(frame[name].to_numpy()).tobytes())
    return digest.hexdigest()


def test_generation_in_chunks_prepares_the_same_bits_as_before(tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "CHUNK_ROWS", 6007)  # 4 chunks, the last one short
    result = prepare_synthetic(tmp_path, rows=20_000, seed=0)
    assert content_digest(result.path) == PREPARED_20K
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # the chunks' scratch is gone


def test_the_chunk_size_changes_no_value(monkeypatch, generated):
    monkeypatch.setattr(synthetic, "CHUNK_ROWS", 7777)
    frame, parts = generate_with_parts(PARAMS)
    assert frame.equals(generated[0])
    assert all(np.array_equal(parts[name], generated[1][name]) for name in parts)


def test_a_killed_synthetic_prepare_leaves_scratch_that_the_next_one_removes(tmp_path):
    """kill -9 while the log is generated: its scratch folder stays (nothing runs at a SIGKILL), is hidden
    from the prepared datasets, and the next prepare of the same dataset removes it."""
    rows = 400_000
    code = f"from mscbench.data.prepare import prepare_synthetic; prepare_synthetic({str(tmp_path)!r}, rows={rows})"
    process = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 120
    while not list((tmp_path / "synthetic").glob(".*scratch*/*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    left = list((tmp_path / "synthetic").glob(".*scratch*"))
    assert left and list_prepared(tmp_path) == []
    result = prepare_synthetic(tmp_path, rows=rows)
    folders = [path.name for path in (tmp_path / "synthetic").iterdir() if path.is_dir()]
    assert not result.reused and folders == [result.path.name]  # no scratch, no staging left
