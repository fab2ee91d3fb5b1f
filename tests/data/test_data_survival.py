"""Time-to-event and continuous outcomes in prepare: a user's own table (reader ``table``), the checks
(one line naming the column and the row, exit 2, nothing written), splits stratified by event and the
follow-up record; the synthetic OL3I survival and regression cohorts with their oracles."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from data_raw import leftovers
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.data import load_prepared

runner = CliRunner()
N = 90


def _cohort(folder, **changes) -> pd.DataFrame:
    """A survival table with a random split: times in years, events, two features and 8 x 8 gray images."""
    rng = np.random.default_rng(0)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(N):
        np.save(folder / "img" / f"p{i}.npy", rng.integers(0, 255, (8, 8), dtype=np.uint8))
        names.append(f"img/p{i}.npy")
    age = rng.normal(60, 10, N)
    df = pd.DataFrame({"pid": [f"p{i}" for i in range(N)], "years": np.round(rng.exponential(3, N), 3) + 0.01,
                       "died": (rng.random(N) < 0.4).astype(int), "age": age, "score": age / 10 + rng.normal(size=N),
                       "sex": rng.choice(["F", "M"], N), "image": names})
    for col, (row, value) in changes.items():
        df[col] = df[col].astype(object)
        df.loc[row, col] = value
    df.to_csv(folder / "cohort.csv", index=False)
    return df


def _spec(folder, task="survival", table_extra="", split_extra="") -> str:
    outcome = 'time = "years"\nevent = "died"\ntime_unit = "years"\n' if task == "survival" else 'label = "score"\n'
    text = (f'name = "own-{task}"\nreader = "table"\ntask = "{task}"\n[table]\nfile = "cohort.csv"\nid = "pid"\n'
            f'{outcome}categorical = ["sex"]\n{table_extra}\n[split]\nfractions = [0.6, 0.2, 0.2]\nseed = 1\n'
            f'{split_extra}\n[image]\nsource = "column"\ncolumn = "image"\nmodality = "gray"\nsize = [8, 8]\n')
    path = folder / f"{task}.toml"
    path.write_text(text)
    return str(path)


def _prepare(tmp_path, spec, data_dir):
    return runner.invoke(app, ["prepare", "--data", spec, "--raw", str(tmp_path), "--data-dir", str(data_dir),
                               "--quiet"])


def test_own_survival_table_prepares_with_follow_up_and_event_stratified_splits(tmp_path):
    df = _cohort(tmp_path)
    data = tmp_path / "D"
    res = _prepare(tmp_path, _spec(tmp_path), data)
    assert res.exit_code == 0, res.output
    assert "median follow-up" in res.output and "task: time to event (survival)" in res.output
    ds = load_prepared(data / "own-survival")
    assert ds.schema.task == "survival" and ds.schema.target["time_unit"] == "years"
    assert set(ds.schema.feature_names) == {"age", "score", "sex"}  # time and event are never features
    by_id = df.set_index("pid")
    np.testing.assert_allclose(ds.targets["time"], by_id.loc[ds.ids, "years"].to_numpy())
    np.testing.assert_array_equal(ds.targets["event"], by_id.loc[ds.ids, "died"].to_numpy())
    np.testing.assert_array_equal(ds.labels, ds.targets["event"].astype(int))  # the stratum is the event
    prov = json.loads((data / "own-survival" / "provenance.json").read_text())
    rates = []
    for s in ("train", "val", "test"):
        f = prov["counts"][s]["follow_up"]
        e = ds.targets["event"][ds.split == s]
        assert f["events"] == int(e.sum()) and f["censored"] == int((e == 0).sum())
        assert f["median_follow_up"] is not None and 0 < f["median_follow_up"] <= f["max_time"]
        rates.append(e.mean())
    assert max(rates) - min(rates) < 0.05  # stratified by event (without split.stratify in the spec)


def _median_follow_up_by_hand(time, event):
    """Reverse Kaplan-Meier: censoring is the 'event', events are censored observations."""
    g = 1.0
    for u in np.unique(time[event == 0]):
        at_risk = np.sum(time >= u) - np.sum((time == u) & (event == 1))
        g *= 1 - np.sum((time == u) & (event == 0)) / at_risk
        if g <= 0.5:
            return u
    return None


def test_median_follow_up_is_the_reverse_kaplan_meier_median():
    from amfmedit.data.targets import median_follow_up

    rng = np.random.default_rng(3)
    t, e = np.round(rng.exponential(2, 200), 2), (rng.random(200) < 0.5).astype(int)
    assert median_follow_up(t, e) == pytest.approx(_median_follow_up_by_hand(t, e))
    assert median_follow_up(t, np.ones(200, int)) is None  # nobody censored: no censoring distribution


BAD = {
    "negative time": (dict(years=(4, -1.0)), "",
                      r"column 'years' has the negative time -1.0 at id 'p4' \(1 row\); times to event or censoring "
                      r"must be >= 0"),
    "missing time": (dict(years=(7, None)), "", r"column 'years' has a missing time at id 'p7' \(1 row\)"),
    "text time": (dict(years=(2, "soon")), "", r"column 'years' has the non-numeric time 'soon' at id 'p2'"),
    "event other than 0/1": (dict(died=(5, 2)), "", r"column 'died' has the event value '2' at id 'p5' \(1 row\); "
                             r"events must be 1 \(event observed\) or 0 \(censored\)"),
    "missing event": (dict(died=(3, None)), "", r"column 'died' has a missing event indicator at id 'p3'"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_survival_inputs_give_one_line_and_exit_2(case, tmp_path):
    changes, extra, message = BAD[case]
    _cohort(tmp_path, **changes)
    data = tmp_path / "D"
    res = _prepare(tmp_path, _spec(tmp_path, table_extra=extra), data)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    line = " ".join(res.output.split())  # the terminal wraps long lines
    assert re.search(message, line), line
    assert leftovers(data) == []


def test_all_censored_and_a_split_without_events_are_refused(tmp_path):
    df = _cohort(tmp_path)
    df["died"] = 0
    df.to_csv(tmp_path / "cohort.csv", index=False)
    res = _prepare(tmp_path, _spec(tmp_path), tmp_path / "D")
    assert res.exit_code == 2 and "holds no event (all 90 rows censored)" in " ".join(res.output.split())
    # events only in rows of the train split (a split column): val has none
    df["split"] = ["train"] * 60 + ["val"] * 15 + ["test"] * 15
    df["died"] = [1, 0] * 30 + [0] * 15 + [1, 0, 0] * 5
    df.to_csv(tmp_path / "cohort.csv", index=False)
    res = _prepare(tmp_path, _spec(tmp_path, table_extra='split = "split"'), tmp_path / "D")
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and "split 'val' has no event (15 rows, all censored)" in out, out
    assert leftovers(tmp_path / "D") == []


def test_a_survival_spec_needs_time_and_event(tmp_path):
    _cohort(tmp_path)
    spec = tmp_path / "s.toml"
    spec.write_text(open(_spec(tmp_path)).read().replace('event = "died"\n', ""))
    res = _prepare(tmp_path, str(spec), tmp_path / "D")
    assert res.exit_code == 2 and "required key 'table.event' is missing" in " ".join(res.output.split())


def test_own_regression_table(tmp_path):
    df = _cohort(tmp_path)
    data = tmp_path / "D"
    res = _prepare(tmp_path, _spec(tmp_path, "regression"), data)
    assert res.exit_code == 0, res.output
    ds = load_prepared(data / "own-regression")
    np.testing.assert_allclose(ds.targets["target"], df.set_index("pid").loc[ds.ids, "score"].to_numpy())
    train = ds.targets["target"][ds.split == "train"]
    assert ds.schema.target["mean"] == pytest.approx(train.mean()) and ds.schema.target["std"] == pytest.approx(train.std())
    _cohort(tmp_path, score=(6, "high"))
    res = _prepare(tmp_path, _spec(tmp_path, "regression"), tmp_path / "E")
    assert res.exit_code == 2
    assert "column 'score' has the non-numeric (or infinite) value 'high' at id 'p6'" in " ".join(res.output.split())


def test_an_unknown_task_names_the_kinds(tmp_path):
    _cohort(tmp_path)
    spec = tmp_path / "u.toml"
    spec.write_text(open(_spec(tmp_path)).read().replace('task = "survival"', 'task = "survial"'))
    res = _prepare(tmp_path, str(spec), tmp_path / "D")
    out = " ".join(res.output.split())
    assert res.exit_code == 2 and "did you mean survival" in out, out
    assert "key 'task' must be one of binary, multiclass, survival, regression" in out, out


def test_synthetic_survival_and_regression_cohorts_know_their_oracles(tmp_path):
    data = tmp_path / "D"
    for spec in ("synthetic-ol3i-survival", "synthetic-ol3i-regression"):
        res = runner.invoke(app, ["prepare", "--data", spec, "--patients", "400", "--image-size", "16", "--features",
                                  "30", "--seed", "5", "--prevalence", "0.1", "--data-dir", str(data), "--quiet"])
        assert res.exit_code == 0, res.output
    ds = load_prepared(data / "synthetic-ol3i-survival")
    syn = ds.provenance["synthetic"]
    oracle = syn["oracle"]
    assert oracle["metric"] == "c_index" and 0.7 < oracle["test"] < 0.95
    assert oracle["tabular_only"] < oracle["all"] and oracle["image_only"] < oracle["all"]
    # the oracle is the C-index of the truth written beside the data
    from amfmedit.stats.survival import harrell_c

    truth = pd.read_parquet(data / "synthetic-ol3i-survival" / "truth.parquet").set_index("id").loc[ds.ids, "risk"]
    test = ds.split == "test"
    assert harrell_c(ds.targets["time"][test], ds.targets["event"][test], truth.to_numpy()[test]) == \
        pytest.approx(oracle["test"])
    rec = syn["outcome"]
    assert 0.05 < rec["mean_1y_risk"] < 0.15 and rec["events"] + rec["censored"] == 400
    assert "time_to_ihd_years" not in ds.schema.feature_names and "label_1y" not in ds.schema.feature_names
    reg = load_prepared(data / "synthetic-ol3i-regression")
    o = reg.provenance["synthetic"]["oracle"]
    assert o["metric"] == "rmse" and 0.45 < o["r2"]["test"] < 0.8 and 5 < o["test"] < 8
    # the same seed gives the same images whatever the outcome (the outcome has a random stream of its own)
    rows = {i: k for k, i in enumerate(reg.ids)}
    np.testing.assert_array_equal(reg.images[[rows[i] for i in ds.ids[:20]]], ds.images[:20])
