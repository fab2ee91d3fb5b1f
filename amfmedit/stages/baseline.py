"""``baseline``: the reviewer's first comparison, in the same run and with the same statistics.

For each model of :data:`amfmedit.stages.baseline_models.BASELINES` asked for: the prediction
kind's scikit-learn estimator (:meth:`~amfmedit.stages.kinds.PredictionKind.tabular_baselines`)
on the prepared table (:mod:`amfmedit.data.design`), and for ``late-fusion`` also the run's frozen
pretrained image encoder's embedding reduced by PCA fitted on the training rows. Hyper-parameters
are chosen on the validation split with the first seed (the kind's headline metric, as the neural
models' learning rate), recorded in ``baseline-<model>-search/selection.json`` and reused for the
other seeds. Each seed is a stage folder ``baseline-<model>-seed<N>/`` like the neural models'
(config, environment, ``search.json``, the pickled estimator with its SHA-256 in ``COMPLETE``,
and ``predictions.npz`` with its validation and test predictions), so ``evaluate`` ranks it in the
same tables, operating points, calibration and paired comparisons.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from amfmedit.data.design import Design, table_design
from amfmedit.errors import UserError, close_matches
from amfmedit.io import read_json, write_json
from amfmedit.stages import names
from amfmedit.stages.baseline_models import BASELINES, BaselineModel
from amfmedit.stages.classify import check_selectable
from amfmedit.stages.configs import BaselineConfig
from amfmedit.stages.common import PAPER_SEEDS, RunOptions, load_dataset, runtime_for, write_stage_config
from amfmedit.stages.kinds import kind_of
from amfmedit.stages.lifecycle import staged
from amfmedit.stages.pretrain import load_pretrained
from amfmedit.stages.stored import StoredModel, sha256, write_model, write_predictions
from amfmedit.train import rundir
from amfmedit.train.checkpoint import LAST

STAGE = names.BASELINE
SEARCH_FILE = "selection.json"  # baseline-<model>-search/: every candidate's validation metric and the choice
IMAGE_COLUMN = "image_pc{}"  # names of the embedding's principal components in the design


@dataclass
class BaselineResult:
    run: str
    metric: str
    stages: list[dict] = field(default_factory=list)  # stage, model, seed, val metric, iterations, params, seconds
    searches: dict[str, dict] = field(default_factory=dict)  # model -> selection record


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------


def pretrain_checkpoint(run: rundir.Run) -> Path:
    return run.stage(names.PRETRAIN) / LAST


@torch.no_grad()
def image_embedding(run: rundir.Run, dataset, rows: np.ndarray, *, device, batch_size: int = 256) -> np.ndarray:
    """(len(rows), d) pooled features of the run's frozen pretrained image encoder (eval mode, no augmentation)."""
    model, _ = load_pretrained(run)
    encoder = model.image_encoder.to(device).eval()
    out = []
    for i in range(0, len(rows), batch_size):
        chunk = np.asarray(dataset.images[np.asarray(rows[i:i + batch_size])])
        x = torch.from_numpy(chunk).to(device).float() / 255.0
        out.append(encoder(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0))


def fit_pca(embedding_train: np.ndarray, k: int, seed: int):
    """PCA of the training rows' embeddings (at most ``k`` components)."""
    from sklearn.decomposition import PCA

    k = int(min(k, embedding_train.shape[1], max(len(embedding_train) - 1, 1)))
    return PCA(n_components=k, svd_solver="full", random_state=seed).fit(embedding_train)


def reduce_embedding(pca, embedding: np.ndarray, present: np.ndarray) -> np.ndarray:
    """(N, k) principal components of ``embedding`` (N, d); NaN on the rows without an image (``present`` (N,)
    bool False), which the trees treat as missing values (the encoder's output on a blank slot means nothing)."""
    out = np.full((len(embedding), int(pca.n_components_)), np.nan)
    present = np.asarray(present, bool)
    if present.any():
        out[present] = pca.transform(embedding[present])
    return out


def design_for(model: BaselineModel, dataset, rows: np.ndarray, reduced: np.ndarray | None) -> Design:
    """The baseline's design of ``rows``: the table, and the reduced image embedding for late fusion."""
    design = table_design(dataset, rows, model.encoding)
    if model.uses_image:
        design = design.with_columns(reduced, [IMAGE_COLUMN.format(i + 1) for i in range(reduced.shape[1])])
    return design


# ----------------------------------------------------------------------------------------------
# search and fit
# ----------------------------------------------------------------------------------------------


def _fit_one(estimators, model: BaselineModel, params: dict, seed: int, designs: dict, y: dict):
    est = estimators.build(model.encoding, params, seed, designs["train"])
    return estimators.fit(est, model.encoding, designs["train"].X, y["train"], designs["val"].X, y["val"])


def search(estimators, kind, model: BaselineModel, seed: int, designs: dict, y: dict) -> tuple[dict, object]:
    """Every candidate of the kind's grid fitted with ``seed`` and scored on validation; the best by the
    kind's headline metric (ties to the earlier candidate). Returns the record and the best candidate's fitted
    estimator (the first seed's model: the same parameters, seed and rows would fit it again)."""
    metric = kind.headline
    key = f"val_{metric.key}"
    tried, best, best_fit = [], None, None
    for i, params in enumerate(estimators.grid(model.encoding)):
        est = _fit_one(estimators, model, params, seed, designs, y)
        value = float(kind.validation_metrics(estimators.outputs(est, designs["val"].X), y["val"])[metric.key])
        tried.append({"params": params, key: value, "iterations": estimators.iterations(est)})
        # strictly better only: ties go to the earlier candidate; only the leader's fit is kept in memory
        if math.isfinite(value) and (best is None or metric.rank(value) > metric.rank(tried[best][key])):
            best, best_fit = i, est
    if best is None:
        raise UserError(f"{model.name}: no candidate gave a finite validation {metric.title}; check that the validation "
                        "split has every class")
    record = {"model": model.name, "metric": metric.key, "seed": seed, "chosen": tried[best]["params"],
              "estimator": estimators.describe(model.encoding), "candidates": tried}
    return record, best_fit


def _check_free(run: rundir.Run, cfg: BaselineConfig, force: bool) -> None:
    for m in cfg.models:
        for seed in cfg.seeds:
            path = run.stage(names.baseline_stage(m, seed))
            if path.exists() and not force:
                state = "finished" if (path / rundir.MARKER).is_file() else "unfinished"
                raise UserError(f"{path} is {state}; pass --force to replace it")


def baseline(cfg: BaselineConfig, opts: RunOptions, *, progress: Callable[[str], None] | None = None) -> BaselineResult:
    """Fit ``cfg.models`` x ``cfg.seeds`` on the run's prepared dataset (see the module docstring)."""
    cfg.validate()
    say = progress or (lambda text: None)
    rt = runtime_for(opts)
    run = rundir.open_run(opts.runs_dir, opts.run)
    ds = load_dataset(run, opts)
    kind = kind_of(ds.schema)
    estimators = kind.tabular_baselines(ds.schema)
    if estimators is None:
        raise UserError(f"dataset {ds.name}: {kind.title} has no tabular baselines yet; `amfmedit baseline` fits them "
                        "for the kinds that declare them")
    for m in cfg.models:
        if BASELINES[m].encoding not in estimators.encodings:
            raise UserError(f"--model {m}: {kind.title} has no {BASELINES[m].encoding} estimator")
    models = [BASELINES[m] for m in cfg.models]
    if any(m.uses_image for m in models):
        rundir.require_stage(run, names.PRETRAIN, f"amfmedit pretrain --data {run.data}` (late fusion reads its "
                             "frozen image encoder) or leave out `--model late-fusion")
    check_selectable(ds)
    _check_free(run, cfg, opts.force)
    run.record_command(STAGE, opts.argv)
    rows = {s: ds.indices(s) for s in ("train", "val", "test")}
    y = {s: kind.targets(ds)[r] for s, r in rows.items()}
    result = BaselineResult(run.name, kind.headline.key)
    embedding = None
    for model in models:
        reduced, pca, pre_sha = {}, None, None
        if model.uses_image:
            if embedding is None:
                say("image embedding of every row by the frozen pretrained encoder")
                embedding = image_embedding(run, ds, np.arange(len(ds)), device=rt.device, batch_size=cfg.batch_size)
            present = np.asarray(ds.image_present, bool)
            with_image = rows["train"][present[rows["train"]]]
            if len(with_image) < 2:
                raise UserError(f"dataset {ds.name}: {len(with_image)} training row(s) with an image; late fusion "
                                "needs images to reduce, leave out `--model late-fusion`")
            pca = fit_pca(embedding[with_image], cfg.pca_components, cfg.seeds[0])
            reduced = {s: reduce_embedding(pca, embedding[r], present[r]) for s, r in rows.items()}
            pre_sha = sha256(pretrain_checkpoint(run))
        designs = {s: design_for(model, ds, r, reduced.get(s)) for s, r in rows.items()}
        record, first = _search_record(run, cfg, opts, estimators, kind, model, designs, y, say)
        result.searches[model.name] = record
        for seed in cfg.seeds:
            start = time.perf_counter()
            # the search's fit is the first seed's model, and an unseeded estimator fits the same model for every seed
            reused = first is not None and (seed == record["seed"] or not estimators.seeded(model.encoding))
            est = first if reused else _fit_one(estimators, model, record["chosen"], seed, designs, y)
            if first is None and not estimators.seeded(model.encoding):
                first = est
            preds = {s: estimators.outputs(est, designs[s].X) for s in ("val", "test")}
            val = float(kind.validation_metrics(preds["val"], y["val"])[kind.headline.key])
            stage = names.baseline_stage(model.name, seed)
            extra = {"title": model.title, "baseline": model.name, "data": run.data, "encoding": model.encoding,
                     "inputs": model.inputs, "estimator": estimators.describe(model.encoding),
                     "params": record["chosen"], "seed": seed, "features": designs["train"].names,
                     "pca": None if pca is None else {"components": int(pca.n_components_),
                                                      "explained_variance": float(pca.explained_variance_ratio_.sum()),
                                                      "pretrain_sha256": pre_sha}}
            with staged(run, run.stage(stage), force=opts.force) as out:
                write_stage_config(out.folder, {"models": [model.name], "seeds": [seed],
                                                "pca_components": cfg.pca_components}, rt, extra)
                digest = write_model(out.folder, {"model": model.name, "encoding": model.encoding, "estimator": est,
                                                  "pca": pca, "features": designs["train"].names})
                write_predictions(out.folder, ds, {s: (rows[s], preds[s]) for s in ("val", "test")})
                write_json(out.folder / "search.json", record)
                out.summary = {"seed": seed, "best_val": val, "best_epoch": estimators.iterations(est),
                               "model_sha256": digest, "params": record["chosen"]}
            seconds = time.perf_counter() - start
            result.stages.append({"stage": stage, "model": model.name, "seed": seed, f"val_{kind.headline.key}": val,
                                  "iterations": estimators.iterations(est), "params": record["chosen"],
                                  "seconds": seconds})
            say(f"{stage}: validation {kind.headline.label} {val:.4f} ({seconds:.1f} s"
                + (", the search's fit)" if reused and seed == record["seed"] else
                   ", the same model as every seed: the fit does not depend on it)" if reused else ")"))
    return result


def _search_record(run, cfg, opts, estimators, kind, model, designs, y, say) -> tuple[dict, object]:
    """The search of ``model`` with the first seed: reused when finished (unless ``--force``; no fitted model then),
    else run and written (with the chosen candidate's fitted estimator)."""
    folder = run.stage(names.baseline_search_stage(model.name))
    done = folder / SEARCH_FILE
    if (folder / rundir.MARKER).is_file() and done.is_file() and not opts.force:
        rec = read_json(done)
        if rec.get("seed") == cfg.seeds[0] and rec.get("features") == designs["train"].names:
            say(f"{folder.name}: reusing the hyper-parameters chosen on validation ({rec['chosen']})")
            return rec, None
    say(f"{folder.name}: {len(estimators.grid(model.encoding))} candidates on the validation split")
    rec, best = search(estimators, kind, model, cfg.seeds[0], designs, y)
    rec["features"] = designs["train"].names
    with staged(run, folder, force=True) as out:
        write_json(out.folder / SEARCH_FILE, rec)
        out.summary = {"chosen": rec["chosen"], "seed": rec["seed"]}
    return rec, best


# ----------------------------------------------------------------------------------------------
# scoring another prepared dataset (external validation)
# ----------------------------------------------------------------------------------------------


class BaselineScorer:
    """Scores rows of a prepared dataset (prepared like the run's) with stored baselines; the late-fusion
    embedding is computed once per dataset and row set."""

    def __init__(self, run: rundir.Run, dataset, *, device, batch_size: int = 256) -> None:
        self.run, self.dataset, self.device, self.batch_size = run, dataset, device, batch_size
        self._embedding: dict[bytes, np.ndarray] = {}

    def _embed(self, rows: np.ndarray) -> np.ndarray:
        key = np.asarray(rows, np.int64).tobytes()
        if key not in self._embedding:
            self._embedding[key] = image_embedding(self.run, self.dataset, rows, device=self.device,
                                                   batch_size=self.batch_size)
        return self._embedding[key]

    def reduced(self, stored: StoredModel, payload: dict, rows: np.ndarray) -> np.ndarray:
        """The late-fusion model's PCA of the frozen encoder's embedding of ``rows``; the pretrained checkpoint
        must be the one it was fitted on."""
        want = (read_json(stored.folder / rundir.CONFIG_FILE).get("pca") or {}).get("pretrain_sha256")
        if want is not None and sha256(pretrain_checkpoint(self.run)) != want:
            raise UserError(f"{pretrain_checkpoint(self.run)}: changed since {stored.folder.name} was fitted on its "
                            f"embedding; fit it again with `amfmedit baseline --model {payload['model']} --force`")
        return reduce_embedding(payload["pca"], self._embed(rows), np.asarray(self.dataset.image_present)[rows])

    def score(self, stored: StoredModel, rows: np.ndarray) -> np.ndarray:
        """(len(rows), K) predictions of the stored baseline."""
        payload = stored.load()
        model = BASELINES[payload["model"]]
        reduced = self.reduced(stored, payload, rows) if model.uses_image else None
        design = design_for(model, self.dataset, rows, reduced)
        estimators = kind_of(self.dataset.schema).tabular_baselines(self.dataset.schema)
        return estimators.outputs(payload["estimator"], design.X)
