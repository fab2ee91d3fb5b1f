"""Files the tool wrote, read back: a damaged prepared dataset, run-folder JSON or checkpoint is
one line naming the file, what is wrong and what to do; never a decoder traceback."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
from data_raw import ol3i_spec, write_ol3i

from amfmedit.stages.prepare import prepare
from amfmedit.data.prepared import load_prepared
from amfmedit.errors import UserError
from amfmedit.io import read_json, torch_save, write_json

REDO = r"the prepared dataset is damaged; prepare it again \(`amfmedit prepare --data ol3i --force`\)$"


@pytest.fixture(scope="module")
def prepared_template(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("integrity")
    write_ol3i(tmp / "raw")
    return prepare(ol3i_spec(), raw=tmp / "raw", data_dir=tmp / "data").path


@pytest.fixture
def ds(prepared_template, tmp_path):
    """A private copy of a small prepared dataset (30 rows, 1 x 16 x 16, named ol3i)."""
    return shutil.copytree(prepared_template, tmp_path / "ol3i")


def _truncate_half(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _garbage(path):
    path.write_bytes(b"\x00\xffgarbage\x13" * 7)


def _drop_column(column):
    def edit(path):
        t = pq.read_table(path)
        pq.write_table(t.drop_columns([column]), path)
    return edit


def _retype_column(column):
    def edit(path):
        import pyarrow as pa

        t = pq.read_table(path)
        i = t.schema.get_field_index(column)
        pq.write_table(t.set_column(i, column, pa.array([str(v) for v in t[column].to_pylist()])), path)
    return edit


def _drop_rows(path):
    t = pq.read_table(path)
    pq.write_table(t.slice(0, len(t) - 3), path)


def _edit_json(fn):
    def edit(path):
        d = json.loads(path.read_text())
        fn(d)
        path.write_text(json.dumps(d))
    return edit


def _save_npy(make):
    def edit(path):
        old = np.load(path)
        np.save(path, make(old))
    return edit


CASES = {
    "schema.json truncated": ("schema.json", _truncate_half,
                              r"schema\.json: damaged file, not valid JSON \(.* at line \d+ column \d+\); "),
    "schema.json garbage": ("schema.json", _garbage, r"schema\.json: damaged file \(not UTF-8 text at byte \d+\); "),
    "schema.json empty": ("schema.json", lambda p: p.write_text(""), r"schema\.json: damaged file, empty file; "),
    "schema.json without features": ("schema.json", _edit_json(lambda d: d.pop("features")),
                                     r"schema\.json: missing key 'features'; "),
    "schema.json a list": ("schema.json", lambda p: p.write_text("[1, 2]"),
                           r"schema\.json: expected a JSON object, found list; "),
    "tabular.parquet truncated": ("tabular.parquet", _truncate_half,
                                  r"tabular\.parquet: not a readable Parquet file \(.+\); "),
    "tabular.parquet garbage": ("tabular.parquet", _garbage, r"tabular\.parquet: not a readable Parquet file \(.+\); "),
    "tabular.parquet without a feature column": ("tabular.parquet", _drop_column("bmi"),
                                                 r"tabular\.parquet: column 'bmi' of schema\.json is missing; "),
    "tabular.parquet without labels": ("tabular.parquet", _drop_column("label"),
                                       r"tabular\.parquet: column 'label' of schema\.json is missing; "),
    "tabular.parquet feature as text": ("tabular.parquet", _retype_column("bmi"),
                                        r"tabular\.parquet: column 'bmi' has type string, schema\.json needs float "),
    "tabular.parquet rows lost": ("tabular.parquet", _drop_rows,
                                  r"tabular\.parquet: has 27 rows, provenance\.json records 30; "),
    "images.npy truncated": ("images.npy", _truncate_half,
                             r"images\.npy: file is 3,\d\d\d bytes but its shape \(30, 1, 16, 16\) of uint8 needs "
                             r"7,808 \(truncated or damaged copy\); "),
    "images.npy garbage": ("images.npy", _garbage, r"images\.npy: not a readable \.npy file \(.+\); "),
    "images.npy wrong size": ("images.npy", _save_npy(lambda a: a[:, :, :8]),
                              r"images\.npy: holds uint8 \(30, 1, 8, 16\), schema\.json and tabular\.parquet need "
                              r"uint8 \(30, 1, 16, 16\); "),
    "images.npy wrong dtype": ("images.npy", _save_npy(lambda a: a.astype(np.float32)),
                               r"images\.npy: holds float32 \(30, 1, 16, 16\), .* need uint8"),
    "missing.npy truncated": ("missing.npy", _truncate_half, r"missing\.npy: file is \d+ bytes but its shape "),
    "missing.npy wrong shape": ("missing.npy", _save_npy(lambda a: a[:, :-1]),
                                r"missing\.npy: holds bool \(30, \d+\), schema\.json and tabular\.parquet need bool"),
    "images.npy deleted": ("images.npy", lambda p: p.unlink(), r"images\.npy: file not found; "),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_prepared_dataset_is_one_line_naming_the_file(case, ds):
    file, damage, message = CASES[case]
    damage(ds / file)
    with pytest.raises(UserError) as err:
        load_prepared(ds)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(str(ds / file) + ": "), text
    import re

    assert re.search(message, text), text
    assert re.search(REDO, text), text


def test_the_intact_copy_loads_and_provenance_is_checked_too(ds):
    d = load_prepared(ds)
    assert len(d) == 30 and d.images.shape == (30, 1, 16, 16)
    _truncate_half(ds / "provenance.json")
    with pytest.raises(UserError, match=r"provenance\.json: damaged file, not valid JSON .*" + REDO):
        d.provenance
    with pytest.raises(UserError, match=r"provenance\.json: damaged file, not valid JSON .*" + REDO):
        load_prepared(ds)


def test_read_json_names_the_file_and_says_to_rerun_the_stage(tmp_path):
    path = tmp_path / "rconf" / "rconf.json"
    write_json(path, {"r_conf": 0.95, "probes": list(range(50))})
    assert read_json(path)["r_conf"] == 0.95
    _truncate_half(path)
    with pytest.raises(UserError, match=rf"^{path}: damaged file, not valid JSON \(.*\); re-run the stage that "
                                        rf"wrote it with --force$"):
        read_json(path)
    with pytest.raises(UserError, match=rf"^{tmp_path / 'nope.json'}: file not found; "):
        read_json(tmp_path / "nope.json")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_damaged_checkpoint_is_one_whole_line(damage, tmp_path):
    import torch

    from amfmedit.train.checkpoint import load_checkpoint, save_checkpoint

    path = tmp_path / "finetune-amf-frozen-seed2022" / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.randn(64, 64)}, "epoch": 3})
    assert load_checkpoint(path)["epoch"] == 3
    {"truncate": _truncate_half, "garbage": _garbage, "empty": lambda p: p.write_bytes(b"")}[damage](path)
    hint = "run `amfmedit finetune --fusion amf --strategy frozen --force` to redo this stage and everything after it"
    with pytest.raises(UserError) as err:
        load_checkpoint(path, hint=hint)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: not a readable checkpoint (")
    assert text.endswith("; " + hint)  # the whole hint, however long the reason: nothing cut at 120 characters
    if damage == "empty":
        assert "empty file" in text
    else:
        assert "damaged or truncated" in text


def test_a_checkpoint_holding_code_is_refused_as_data_only(tmp_path):
    import torch

    from amfmedit.io import torch_load

    path = tmp_path / "evil.pt"
    torch.save({"x": np.float64}, path)  # a class reference: weights_only refuses it
    with pytest.raises(UserError, match=rf"^{path}: refused as unsafe: it holds pickled objects other than tensors and "
                                        rf"plain data, which could run code when loaded \(a checkpoint is read as data "
                                        rf"only\); re-run"):
        torch_load(path)
    torch_save({"x": torch.ones(2)}, path)
    assert torch_load(path)["x"].sum() == 2
