"""The tabular baselines on an incomplete cohort (docs/missing-data.md): missing values, rows kept
without an image (``image.missing = "keep"``) and rows without a table, fitted and scored without a
NaN reaching an estimator that cannot take one; ``prepare --like`` keeps such rows as the training
dataset's preparation does."""

from __future__ import annotations

import numpy as np
import pytest

from amfmedit.data import load_prepared
from amfmedit.data.design import table_design
from amfmedit.data.prepare import apply_overrides
from amfmedit.data.spec import load_spec
from amfmedit.stages.baseline import fit_pca, reduce_embedding
from amfmedit.stages.kinds import kind_of
from amfmedit.stages.prepare import prepare, prepare_like

GAPS = dict(patients=240, seed=5, features=40, prevalence=0.25, missing_rate=0.3, no_image_rate=0.15,
            no_table_rate=0.05)


@pytest.fixture(scope="module")
def gappy(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("gaps")
    spec = apply_overrides(load_spec("synthetic-ol3i"), name="gaps", image_size=16, image_missing="keep")
    ds = load_prepared(prepare(spec, data_dir=data_dir, synthetic=GAPS).path)
    assert (~ds.image_present).any() and (~ds.table_present).any() and ds.missing.any()
    return ds, spec, data_dir


@pytest.mark.parametrize("encoding", ["linear", "trees"])
def test_each_estimator_fits_and_scores_rows_with_gaps(gappy, encoding):
    ds, _, _ = gappy
    kind = kind_of(ds.schema)
    estimators = kind.tabular_baselines(ds.schema)
    rows = {s: ds.indices(s) for s in ("train", "val", "test")}
    y = kind.targets(ds)
    designs = {s: table_design(ds, r, encoding) for s, r in rows.items()}
    n_cont = ds.schema.n_cont
    # the cells missing before imputation reach the design as NaN, for both encodings
    assert np.array_equal(np.isnan(designs["train"].X[:, :n_cont]), ds.missing[rows["train"], :n_cont])
    est = estimators.build(encoding, estimators.grid(encoding)[0], 0, designs["train"])
    est = estimators.fit(est, encoding, designs["train"].X, y[rows["train"]], designs["val"].X, y[rows["val"]])
    everything = table_design(ds, np.arange(len(ds)), encoding)
    proba = estimators.outputs(est, everything.X)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0)
    no_table = ~ds.table_present
    assert len(np.unique(proba[no_table, 1].round(12))) == 1  # a row without a table: one prediction for all
    if encoding == "linear":  # an indicator column per continuous feature missing in the training rows
        imputer = est.named_steps["encode"].named_transformers_["impute"]
        gaps = ds.missing[rows["train"], :n_cont].any(axis=0)
        assert np.array_equal(imputer.indicator_.features_, np.flatnonzero(gaps))
        # its medians are the prepared imputation (the z-scored training median)
        imputed = ds.x_cont[rows["train"]][ds.missing[rows["train"], :n_cont]]
        cols = np.nonzero(ds.missing[rows["train"], :n_cont])[1]
        assert np.allclose(imputer.statistics_[cols], imputed, atol=1e-5)


def test_late_fusion_embedding_is_missing_for_rows_without_an_image(gappy):
    ds, _, _ = gappy
    rng = np.random.default_rng(0)
    embedding = rng.normal(size=(len(ds), 12))
    present = np.asarray(ds.image_present)
    pca = fit_pca(embedding[present], 4, 0)
    reduced = reduce_embedding(pca, embedding, present)
    assert reduced.shape == (len(ds), 4)
    assert np.isnan(reduced[~present]).all()
    assert np.allclose(reduced[present], pca.transform(embedding[present]))


def test_prepare_like_keeps_rows_without_an_image(gappy):
    ds, spec, data_dir = gappy
    ext_spec = apply_overrides(load_spec("synthetic-ol3i"), name="gaps-site-b", image_missing="keep")
    res = prepare_like(ext_spec, str(ds.root), data_dir=data_dir, synthetic={**GAPS, "seed": 9})
    ext = load_prepared(res.path)
    assert (~ext.image_present).any() and ext.image_present.any()
    assert not (~ext.image_present & ~ext.table_present).any()  # neither modality: dropped, as prepare does
    assert np.all(ext.images[np.flatnonzero(~ext.image_present)] == 0)
