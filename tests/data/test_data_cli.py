"""`amfmedit prepare` end to end through the command line (Typer's CliRunner)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from data_raw import leftovers
from typer.testing import CliRunner

from amfmedit.cli import app
from amfmedit.data import load_prepared
from amfmedit.paths import repo_root

runner = CliRunner()


def test_prepare_synthetic_ol3i_writes_the_dataset_and_prints_a_summary(tmp_path):
    data = tmp_path / "D"
    args = ["prepare", "--data", "synthetic-ol3i", "--patients", "400", "--image-size", "64", "--features", "60",
            "--data-dir", str(data)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    ds = load_prepared("synthetic-ol3i", data)
    assert len(ds) == 400 and ds.images.shape == (400, 1, 64, 64) and len(ds.schema.features) == 60
    train = ds.split == "train"
    std = ds.x_cont[train].std(axis=0)
    varying = std > 0  # rare codes can be all zero in the train rows: left at 0, not scaled
    np.testing.assert_allclose(ds.x_cont[train].mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(std[varying], 1, atol=1e-4)
    assert varying.mean() > 0.8
    out = result.output
    for split in ("train", "val", "test"):
        n = int((ds.split == split).sum())
        pos = int(ds.labels[ds.split == split].sum())
        row = re.search(rf"│ {split}\s+│\s+(\d+)\s+│\s+(\d+)\s+│\s+(\d+)\s+│\s+([\d.]+)%\s+│\s+([\d.]+)", out)
        assert row and [int(x) for x in row.groups()[:3]] == [n, n - pos, pos], out
        assert float(row.group(4)) == round(100 * pos / n, 1)
    assert "oracle auc" in out and "features: 60 (58 continuous, 2 categorical)" in out
    assert "images: 1 x 64 x 64 uint8 (ct, window [-125.0, 275.0] HU)" in out

    again = runner.invoke(app, args)
    assert again.exit_code == 2
    assert "already exists; pass --force" in again.output and "Traceback" not in again.output
    forced = runner.invoke(app, args[:4] + ["100", "--image-size", "16", "--features", "30", "--data-dir", str(data),
                                            "--force", "--quiet"])
    assert forced.exit_code == 0, forced.output
    assert "prepared into" in forced.output  # --quiet drops the progress bar, not the summary
    assert len(load_prepared("synthetic-ol3i", data)) == 100
    assert leftovers(data) == sorted(["synthetic-ol3i", *(f"synthetic-ol3i/{p.name}" for p in
                                                          (data / "synthetic-ol3i").iterdir())])


def test_bad_spec_and_bad_options_fail_in_one_line(tmp_path):
    data = tmp_path / "D"
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\nreader = "table"\ntask = "binary"\ncolour = 1\n')
    result = runner.invoke(app, ["prepare", "--data", str(bad), "--data-dir", str(data)])
    assert result.exit_code == 2
    assert "unknown key 'colour'" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["prepare", "--data", "synthetic-dvm", "--features", "30", "--data-dir", str(data)])
    assert result.exit_code == 2
    assert "--features: not an option of the synthetic dvm generator" in result.output
    result = runner.invoke(app, ["prepare", "--data", "ol3i", "--patients", "30", "--data-dir", str(data)])
    assert result.exit_code == 2 and "only synthetic data specs take generator options" in result.output
    assert leftovers(data) == []


def test_own_cohort_via_raw_option(tmp_path):
    (tmp_path / "img").mkdir()
    for i in range(6):
        np.save(tmp_path / f"img/{i}.npy", np.full((10, 10), 40 * i, np.uint8))
    pd.DataFrame({"patient_id": list("abcdef"), "outcome": [0, 1, 0, 1, 0, 1],
                  "split": ["train", "train", "val", "val", "test", "test"],
                  "image_path": [f"img/{i}.npy" for i in range(6)], "age": [30, 40, 50, 60, 70, 80],
                  "sex": list("FMFMFM")}).to_csv(tmp_path / "cohort.csv", index=False)
    spec = tmp_path / "mine.toml"
    text = (repo_root() / "data_specs" / "example-own-cohort.toml").read_text()
    spec.write_text(text.replace('modality = "ct"', 'modality = "gray"').replace("size = [256, 256]", "size = [10, 10]")
                    .replace('name = "example-own-cohort"', 'name = "mine"'))
    result = runner.invoke(app, ["prepare", "--data", str(spec), "--raw", str(tmp_path / "cohort.csv"),
                                 "--data-dir", str(tmp_path / "D")])
    assert result.exit_code == 0, result.output
    ds = load_prepared("mine", tmp_path / "D")
    assert ds.images[:, 0, 0, 0].tolist() == [0, 40, 80, 120, 160, 200]
    assert ds.schema.feature_names == ["age", "sex"]
