"""Data specs: the shipped ones load, `--data NAME` resolves, and a bad spec names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from amfmedit.data.spec import load_spec, resolve_spec_path
from amfmedit.errors import UserError
from amfmedit.paths import repo_root

SHIPPED = sorted(p.stem for p in (repo_root() / "data_specs").glob("*.toml"))


def test_the_five_specs_are_shipped():
    assert {"ol3i", "dvm", "synthetic-ol3i", "synthetic-dvm", "example-own-cohort"} <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_spec_loads(name):
    spec = load_spec(name)
    assert spec.name == name and spec.path.endswith(f"{name}.toml")
    assert len(spec.image.size) == 2


def test_window_and_dvm_protocol_defaults():
    ol3i, dvm = load_spec("ol3i"), load_spec("dvm")
    assert ol3i.image.window == [-125.0, 275.0] and ol3i.table.label == "label_1y"
    assert dvm.split.fractions == [0.72, 0.18, 0.10] and dvm.split.seed == 2022
    assert dvm.table.min_class_count == 100 and dvm.image.size == [128, 128]
    assert len(dvm.table.features) == 13 and len(dvm.table.categorical) == 4


def _bad(tmp_path: Path, old: str, new: str) -> Path:
    text = (repo_root() / "data_specs" / "ol3i.toml").read_text()
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    return path


@pytest.mark.parametrize("old,new,message", [
    ('window = [', 'windw = [', r"bad\.toml: unknown key 'image\.windw'; did you mean image\.window\?"),
    ('reader = "ol3i"', 'reader = "ol3i"\nzzz = 1', r"bad\.toml: unknown key 'zzz'; known keys: name, reader"),
    ('size = [512, 512]', 'size = "big"', r"bad\.toml: key 'image\.size' must be a list of integers, got 'big'"),
    ('categorical = ["gender", "smoker"]', 'categorical = "gender"',
     r"key 'table\.categorical' must be a list of strings, got 'gender'"),
    ('task = "binary"', 'task = 7', r"key 'task' must be a string, got 7"),  # which kinds exist: the prepare stage's
    ('task = "binary"\n', '', r"bad\.toml: required key 'task' is missing"),
    ('window = [-125.0, 275.0]', 'window = [275.0, -125.0]', r"key 'image\.window' must be \[low, high\]"),
    ('name = "ol3i"', 'name = "ol3i', r"bad\.toml: not valid TOML"),
])
def test_bad_spec_names_the_key(tmp_path, old, new, message):
    with pytest.raises(UserError, match=message) as err:
        load_spec(_bad(tmp_path, old, new))
    assert "\n" not in str(err.value)


def test_an_unknown_task_names_the_key_and_the_kinds(tmp_path):
    from amfmedit.stages.prepare import prepare

    with pytest.raises(UserError, match=r"bad\.toml: key 'task' must be one of binary, multiclass.*got 'binry'; "
                                        r"did you mean binary\?") as err:
        prepare(load_spec(_bad(tmp_path, 'task = "binary"', 'task = "binry"')), data_dir=tmp_path / "data")
    assert "\n" not in str(err.value) and not (tmp_path / "data").exists()


def test_local_data_specs_come_first(tmp_path, monkeypatch):
    (tmp_path / "data_specs").mkdir()
    text = (repo_root() / "data_specs" / "ol3i.toml").read_text().replace('raw = "raw/ol3i"', 'raw = "/elsewhere"')
    (tmp_path / "data_specs" / "ol3i.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    assert resolve_spec_path("ol3i") == tmp_path / "data_specs" / "ol3i.toml"
    assert load_spec("ol3i").raw == "/elsewhere"
    assert load_spec("dvm").raw == "raw/dvm"  # still found in the source checkout
    assert load_spec("data_specs/ol3i.toml").raw == "/elsewhere"


def test_unknown_spec_name_suggests_one():
    with pytest.raises(UserError, match=r"--data ol3j: no data spec named 'ol3j' \(known: .*\); did you mean ol3i"):
        load_spec("ol3j")
    with pytest.raises(UserError, match=r"--data missing\.toml: no such spec file"):
        load_spec("missing.toml")
