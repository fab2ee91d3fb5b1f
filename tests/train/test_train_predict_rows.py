"""predict checks every row first: all bad rows named at once, none scored unless --skip-bad-rows
(then the skipped rows are listed beside the output), unseen categories counted per column."""

from __future__ import annotations

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from amfmedit.cli import app
from test_train_pipeline import _raw_test_table  # noqa: E402 (tests/train: the pipeline test's inverse of prepare)

FINETUNE = ["--epochs", "1", "--lr", "0.001", "--seeds", "2022", "--quiet"]


def _cli(*args, code: int = 0):
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == code, res.output
    return res


def test_bad_rows_are_all_named_then_skipped_on_request(pretrained_run, tiny_ol3i, tmp_path):
    _cli("finetune", "--fusion", "concat", "--strategy", "frozen", *FINETUNE)
    table = _raw_test_table(tiny_ol3i, tmp_path / "new")
    df = pd.read_csv(table)
    num = next(c for c in df.columns if c not in ("image", "anon_id", "id") and np.issubdtype(df[c].dtype, np.floating))
    cat = "gender"
    ids = df.iloc[:, 0].astype(str)
    df[num] = df[num].astype(object)
    df[cat] = df[cat].astype(object)
    df.loc[2, num] = "high"  # text in a numeric column
    df.loc[5, "image"] = "gone.npy"  # a missing image file
    df.loc[[0, 1, 7], cat] = "X"  # a category the training rows never had
    df.to_csv(tmp_path / "new" / "bad.csv", index=False)
    out = tmp_path / "scored.csv"

    res = _cli("predict", "--table", tmp_path / "new" / "bad.csv", "--image-column", "image", "--out", out, code=2)
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and f"2 of {len(df)} rows cannot be scored" in line
    assert f"{ids[2]}: " in line and num in line and f"{ids[5]}: " in line and "gone.npy" in line
    assert "--skip-bad-rows" in line and not out.exists()

    res = _cli("predict", "--table", tmp_path / "new" / "bad.csv", "--image-column", "image", "--out", out,
               "--skip-bad-rows")
    got = pd.read_csv(out, dtype={"id": str})
    assert len(got) == len(df) - 2 and not {ids[2], ids[5]} & set(got["id"])
    skipped = pd.read_csv(tmp_path / "scored.skipped.csv", dtype={"id": str})
    assert list(skipped["id"]) == [ids[2], ids[5]] and "gone.npy" in skipped["problem"].iloc[1]
    assert f"column {cat}: 3 rows hold values unseen in training ('X' (3))" in " ".join(res.output.split())

    res = _cli("predict", "--table", tmp_path / "new" / "none.csv", code=2)
    assert "pass the table's path with --table" in res.output or "--table" in res.output
