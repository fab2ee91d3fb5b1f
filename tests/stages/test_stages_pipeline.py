"""The CLI pipeline end to end on the tiny cohort, with no path typed:
pretrain -> rconf -> finetune --fusion amf -> evaluate -> predict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from amfmedit.cli import app


def _cli(*args):
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res


def _lines(path):
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_pipeline_defaults_to_the_latest_run(pretrained_run, tiny_ol3i, tmp_path):
    """After `amfmedit pretrain --data NAME` (the session fixture, typed without any path):
    rconf -> finetune --fusion amf -> evaluate -> predict, again without a path."""
    import torch
    from sklearn.metrics import roc_auc_score

    from amfmedit.train.checkpoint import load_checkpoint

    run = pretrained_run.root
    assert {"run.json", "environment.json", "pretrain"} <= {p.name for p in run.iterdir()}
    assert (run / "pretrain" / "COMPLETE").is_file()
    (line,) = _lines(run / "pretrain" / "metrics.jsonl")
    assert line["epoch"] == 1 and np.isfinite(line["val_loss"]) and np.isfinite(line["train_loss"])
    assert 0 <= line["probe_auc"] <= 1 and 0 <= line["probe_acc"] <= 1  # the online linear probe

    _cli("rconf", "--lr", "0.01", "--epochs", "1", "--quiet")
    rec = json.loads((run / "rconf" / "rconf.json").read_text())
    assert rec["split"] == "val" and rec["metric"] == "auc"
    assert rec["r_conf"] == pytest.approx(rec["image"]["metric"] / rec["tabular"]["metric"])
    assert rec["L_img"] + rec["L_tab"] == rec["d_out"] == 2048
    assert rec["L_tab"] == int(2048 // (1 + rec["r_conf"]))

    _cli("finetune", "--fusion", "amf", "--strategy", "frozen", "--seeds", "2022,2023", "--lr", "0.001",
         "--epochs", "1", "--quiet")
    pre = load_checkpoint(run / "pretrain" / "last.pt")["model"]["state_dict"]
    for seed in (2022, 2023):
        stage = run / f"finetune-amf-frozen-seed{seed}"
        assert (stage / "COMPLETE").is_file() and (stage / "best.pt").is_file()
        cfg = json.loads((stage / "config.json").read_text())
        assert cfg["r_conf"] == pytest.approx(rec["r_conf"]) and cfg["lr"] == 0.001
        # frozen means frozen: encoder weights AND BatchNorm statistics as pretrained
        fin = load_checkpoint(stage / "best.pt")["model"]["state_dict"]
        enc = [k for k in fin if k.startswith(("image_encoder.", "tabular_encoder."))]
        assert any(k.endswith("running_var") for k in enc)
        assert all(torch.equal(fin[k], pre[k]) for k in enc)

    res = _cli("evaluate")
    ev = run / "evaluate"
    metrics = json.loads((ev / "metrics.json").read_text())
    oracle = json.loads((tiny_ol3i.path / "provenance.json").read_text())["synthetic"]["oracle"]["test"]
    assert metrics["oracle_auc"] == pytest.approx(oracle)
    (group,) = metrics["groups"]
    assert group["fusion"] == "amf" and group["strategy"] == "frozen" and group["seeds"] == [2022, 2023]
    for row in metrics["stages"]:  # the reported AUC is the AUC of the written predictions
        pred = pd.read_csv(ev / "predictions" / f"{row['stage']}.csv")
        assert len(pred) == 48
        assert row["auc"] == pytest.approx(roc_auc_score(pred["label"], pred["prob_1"]))
    table = (ev / "results.md").read_text()
    assert "| AMF module | FT-Mamba |" in table and f"{oracle * 100:.2f}" in table
    assert f"{np.mean(group['values']) * 100:.2f} ± {np.std(group['values'], ddof=1) * 100:.2f}" in table
    assert (ev / "roc" / "finetune-amf-frozen.png").stat().st_size > 1000
    assert "AMF module" in res.output

    # New patients through the saved schema give the same probabilities as the test rows had.
    table_csv = _raw_test_table(tiny_ol3i, tmp_path / "new")
    _cli("predict", "--table", str(table_csv), "--stage", "finetune-amf-frozen-seed2022", "--image-column", "image",
         "--calibration", "none")  # the probabilities as trained (the default applies evaluate's temperature)
    got = pd.read_csv(run / "predict" / "new_patients.csv")
    want = pd.read_csv(ev / "predictions" / "finetune-amf-frozen-seed2022.csv")
    assert list(got["id"].astype(str)) == list(want["id"].astype(str))
    np.testing.assert_allclose(got["prob_1"], want["prob_1"], atol=1e-5)


def _raw_test_table(fx, folder):
    """The test rows of ``fx`` (a prepared fixture or a loaded dataset) written back as raw values
    (inverse of prepare; blank where they were missing) with HU images as .npy files."""
    from amfmedit.data import load_prepared

    ds = fx if hasattr(fx, "indices") else load_prepared(fx)
    folder.mkdir()
    rows = ds.indices("test")
    out = {ds.schema.id_column: ds.ids[rows]}
    for j, f in enumerate(ds.schema.continuous):
        values = ds.x_cont[rows, j].astype(np.float64) * f.std + f.mean
        values[ds.missing[rows, j]] = np.nan
        out[f.column] = values
    for j, f in enumerate(ds.schema.categorical):
        codes = ds.x_cat[rows, j]
        out[f.column] = [f.categories[c - 1] if c > 0 else None for c in codes]
    low, high = ds.schema.image.window
    names = []
    for i in rows:
        hu = ds.images[i, 0].astype(np.float32) / 255.0 * (high - low) + low
        name = f"{ds.ids[i]}.npy"
        np.save(folder / name, hu)
        names.append(name)
    out["image"] = names
    path = folder / "new_patients.csv"
    pd.DataFrame(out).to_csv(path, index=False)
    return path
