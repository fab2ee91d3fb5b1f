"""Incomplete tabular data: masked features are training constants at train AND test time."""

from __future__ import annotations

import json

import numpy as np
import pytest

from explain_cli import QUICK, invoke, ok  # noqa: E402  (tests/explain/explain_cli.py)


def test_mask_features_replaces_columns_with_training_constants(ol3i64):
    from amfmedit.data import load_prepared
    from amfmedit.data.masking import fill_values, mask_features

    ds = load_prepared(ol3i64)
    before_cont, before_cat = ds.x_cont.copy(), ds.x_cat.copy()
    names = ["age_at_scan", "gender"]  # one continuous, one categorical
    masked = mask_features(ds, names)
    j = [f.name for f in ds.schema.continuous].index("age_at_scan")
    k = [f.name for f in ds.schema.categorical].index("gender")
    train = ds.indices("train")
    mean = ds.x_cont[train, j].astype(np.float64).mean()
    mode = np.bincount(ds.x_cat[train, k]).argmax()
    assert np.all(masked.x_cont[:, j] == np.float32(mean))  # every split, not only train
    assert np.all(masked.x_cat[:, k] == mode)
    assert fill_values(ds, names) == {"age_at_scan": pytest.approx(mean), "gender": int(mode)}
    others = [i for i in range(ds.x_cont.shape[1]) if i != j]
    np.testing.assert_array_equal(masked.x_cont[:, others], ds.x_cont[:, others])
    order = ds.schema.feature_names
    assert masked.missing[:, order.index("age_at_scan")].all() and masked.missing[:, order.index("gender")].all()
    # the loaded arrays (and so the prepared files) are untouched
    np.testing.assert_array_equal(ds.x_cont, before_cont)
    np.testing.assert_array_equal(ds.x_cat, before_cat)
    assert len(np.unique(ds.x_cont[:, j])) > 10


def test_unknown_feature_lists_close_matches(ol3i64):
    from amfmedit.data import load_prepared
    from amfmedit.errors import UserError
    from amfmedit.data.masking import check_feature_names

    schema = load_prepared(ol3i64).schema
    with pytest.raises(UserError, match=r"--mask-features age_at_sacn: no such feature .*did you mean age_at_scan\?"):
        check_feature_names(schema, ["age_at_sacn"])
    assert check_feature_names(schema, ["CCI", "CCI", "bmi"]) == ["CCI", "bmi"]


def test_stage_names_carry_the_mask():
    from amfmedit.stages.names import mask_tag, masked_stage_name, split_mask_suffix

    assert masked_stage_name("finetune-amf-frozen-seed2022", ["age_at_scan"]) == \
        "finetune-amf-frozen-seed2022-mask-age_at_scan"
    assert masked_stage_name("rconf", []) == "rconf"
    many = [f"feature_{i}" for i in range(12)]
    assert mask_tag(many).startswith("mask12-") and mask_tag(many) == mask_tag(list(reversed(many)))
    for names in (["age_at_scan"], ["age_at_scan", "CCI"], many, ["odd name/x"]):
        stage = masked_stage_name("supervised-tabular-seed7", names)
        assert split_mask_suffix(stage) == ("supervised-tabular-seed7", mask_tag(names))
    assert split_mask_suffix("finetune-concat-trainable-seed2022") == ("finetune-concat-trainable-seed2022", None)


def test_masked_finetune_and_evaluate_see_only_constants(trained_run, ol3i64, monkeypatch):
    from amfmedit.data import load_prepared
    from amfmedit.train.inputs import DeviceData

    ds = load_prepared(ol3i64)
    j = [f.name for f in ds.schema.continuous].index("age_at_scan")
    k = [f.name for f in ds.schema.categorical].index("gender")
    train = ds.indices("train")
    mean = np.float32(ds.x_cont[train, j].astype(np.float64).mean())
    mode = int(np.bincount(ds.x_cat[train, k]).argmax())

    seen = []  # every batch the engine and evaluate gather: (rows, x_cont, x_cat)
    original = DeviceData.batch

    def spy(self, rows, **kw):
        batch = original(self, rows, **kw)
        seen.append((np.asarray(rows), batch.x_cont.numpy().copy(), batch.x_cat.numpy().copy()))
        return batch

    monkeypatch.setattr(DeviceData, "batch", spy)
    ok("finetune", "--fusion", "none", "--modality", "tabular", "--mask-features", "age_at_scan,gender", *QUICK)
    stage = trained_run.root / "supervised-tabular-seed2022-mask-age_at_scan+gender"
    assert (stage / "COMPLETE").is_file()
    cfg = json.loads((stage / "config.json").read_text())
    assert cfg["mask"]["features"] == ["age_at_scan", "gender"]
    assert cfg["mask"]["fill"] == {"age_at_scan": pytest.approx(float(mean)), "gender": mode}
    trained_rows = np.concatenate([r for r, _, _ in seen])
    # training batches (class-balanced sampling draws a subset of the rows) and validation batches
    assert len(set(trained_rows.tolist()) & set(train.tolist())) > len(train) // 3
    assert set(ds.indices("val").tolist()) <= set(trained_rows.tolist())
    for rows, x_cont, x_cat in seen:
        assert np.all(x_cont[:, j] == mean) and np.all(x_cat[:, k] == mode)

    seen.clear()
    res = ok("evaluate")
    masked_batches = [(r, c, z) for r, c, z in seen if np.all(c[:, j] == mean)]
    complete_batches = [(r, c, z) for r, c, z in seen if not np.all(c[:, j] == mean)]
    test = set(ds.indices("test").tolist())
    val = set(ds.indices("val").tolist())  # evaluate chooses each model's threshold on validation
    # the masked model is scored on masked test (and validation) rows, the complete models on the real values
    assert masked_batches and complete_batches
    assert set(np.concatenate([r for r, _, _ in masked_batches]).tolist()) == test | val
    for _, _, x_cat in masked_batches:
        assert np.all(x_cat[:, k] == mode)
    metrics = json.loads((trained_run.root / "evaluate" / "metrics.json").read_text())
    groups = {(g["fusion"], g["modality"], g["mask"]): g for g in metrics["groups"]}
    masked = groups[("none", "tabular", "mask-age_at_scan+gender")]
    complete = groups[("none", "tabular", None)]
    assert masked["mask_features"] == ["age_at_scan", "gender"]
    results = (trained_run.root / "evaluate" / "results.md").read_text()
    drop = f"{(complete['mean'] - masked['mean']) * 100:.2f}"
    line = next(x for x in results.splitlines() if "age_at_scan, gender" in x)
    assert f"| {drop} |" in line
    assert (trained_run.root / "evaluate" / "roc" / "supervised-tabular-mask-age_at_scan+gender.png").is_file()
    assert "Incomplete tabular data" in res.output


def test_finetune_rejects_unknown_mask_feature_and_top_k_without_ig(trained_run):
    res = invoke("finetune", "--fusion", "none", "--modality", "tabular", "--mask-features", "age_at_sacn", *QUICK)
    assert res.exit_code == 2
    assert "--mask-features age_at_sacn: no such feature" in res.output and "did you mean age_at_scan" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = invoke("finetune", "--fusion", "none", "--modality", "tabular", "--mask-top-k", "2", *QUICK)
    assert res.exit_code == 2 and "has no IG report" in res.output and "amfmedit explain --method ig" in res.output
    assert not any("mask" in p.name for p in trained_run.root.iterdir())
