"""A real clinical survival table through the tabular path: the Veterans' Administration lung cancer
trial (Kalbfleisch & Prentice 1980; 137 patients, 128 deaths; shipped with scikit-survival).

- the C-index amfmedit computes for a given risk score (the Karnofsky performance score: higher =
  fitter, so its negative is the risk) equals an independent implementation's on the same rows;
- the tabular-only survival model (``finetune --fusion none --modality tabular``, Cox loss) learns:
  its test C-index, computed by amfmedit and again here from its written predictions, is clearly
  above chance and near that of scikit-survival's linear Cox model fitted on the same training rows.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from amfmedit.cli import app


def _veterans() -> pd.DataFrame:
    from sksurv.datasets import load_veterans_lung_cancer

    x, y = load_veterans_lung_cancer()
    df = x.copy()
    df.insert(0, "pid", [f"v{i:03d}" for i in range(len(df))])
    df["days"] = y["Survival_in_days"]
    df["death"] = y["Status"].astype(int)
    return df


def _slow_harrell(time, event, risk) -> float:
    """Harrell's C from its definition, pair by pair (ties in time: an event before a censoring)."""
    num = den = 0.0
    for i in range(len(time)):
        if not event[i]:
            continue
        for j in range(len(time)):
            if time[j] > time[i] or (time[j] == time[i] and not event[j]):
                den += 1
                num += 1.0 if risk[i] > risk[j] else 0.5 if risk[i] == risk[j] else 0.0
    return num / den


def test_c_index_of_a_given_risk_score_equals_an_independent_implementation():
    from amfmedit.stages.kinds import SurvivalKind

    df = _veterans()
    risk = -df["Karnofsky_score"].to_numpy(dtype=float)  # many tied scores and tied times: the hard case
    targets = df[["days", "death"]].to_numpy(dtype=float)
    got = SurvivalKind().validation_metrics(risk[:, None], targets)["c_index"]
    want = _slow_harrell(targets[:, 0], targets[:, 1] == 1, risk)
    assert got == pytest.approx(want, rel=1e-12)
    assert 0.68 < got < 0.72  # Karnofsky's known prognostic value on this trial


def test_tabular_survival_model_on_the_veterans_trial(tmp_path, monkeypatch):
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    monkeypatch.chdir(tmp_path)
    df = _veterans()
    rng = np.random.default_rng(0)
    split = np.array(["train"] * 77 + ["val"] * 20 + ["test"] * 40)
    df["split"] = rng.permutation(split)
    (tmp_path / "img").mkdir()
    np.save(tmp_path / "img" / "blank.npy", np.zeros((8, 8), np.uint8))  # the trial has no images: one blank
    df["image"] = "img/blank.npy"
    df.to_csv(tmp_path / "veterans.csv", index=False)
    (tmp_path / "veterans.toml").write_text(
        'name = "veterans"\nreader = "table"\ntask = "survival"\n'
        '[table]\nfile = "veterans.csv"\nid = "pid"\ntime = "days"\nevent = "death"\ntime_unit = "days"\n'
        'split = "split"\nhorizons = [30.0, 90.0, 180.0]\n'
        'categorical = ["Celltype", "Prior_therapy", "Treatment"]\n'
        '[image]\nsource = "column"\ncolumn = "image"\nmodality = "gray"\nsize = [8, 8]\n')
    runner = CliRunner()
    for args in (["prepare", "--data", "veterans.toml", "--raw", str(tmp_path), "--quiet"],
                 ["finetune", "--fusion", "none", "--modality", "tabular", "--data", "veterans", "--run", "vet",
                  "--tabular-encoder", "mlp", "--tabular-dim", "16", "--seeds", "2022", "--lr", "0.01",
                  "--epochs", "30", "--batch-size", "64", "--quiet"],
                 ["evaluate"]):
        res = runner.invoke(app, args)
        assert res.exit_code == 0, res.output
    ev = tmp_path / "runs" / "vet" / "evaluate"
    (row,) = json.loads((ev / "metrics.json").read_text())["stages"]
    pred = pd.read_csv(ev / "predictions" / f"{row['stage']}.csv")
    assert row["c_index"] == pytest.approx(_slow_harrell(pred["time"].to_numpy(), pred["event"].to_numpy() == 1,
                                                         pred["risk_score"].to_numpy()), rel=1e-12)
    # scikit-survival's linear Cox model on the same training rows, scored on the same test rows
    x = pd.get_dummies(df.drop(columns=["pid", "days", "death", "split", "image"]), drop_first=True).astype(float)
    train = (df["split"] == "train").to_numpy()
    cox = CoxPHSurvivalAnalysis(alpha=1e-3).fit(x[train], Surv.from_arrays(df["death"][train] == 1, df["days"][train]))
    by_id = dict(zip(df["pid"], cox.predict(x)))
    cox_c = _slow_harrell(pred["time"].to_numpy(), pred["event"].to_numpy() == 1, pred["id"].map(by_id).to_numpy())
    assert row["c_index"] > 0.6, (row["c_index"], cox_c)
    assert row["c_index"] > cox_c - 0.1, (row["c_index"], cox_c)
