"""``evaluate --external NAME``: every classifier of a run scored on another site's cohort, the run unchanged.

The external dataset must have been prepared ``--like`` the run's dataset (:mod:`amfmedit.data.like`:
the same schema, never refitted); every row of it is scored, whatever its split. Each classifier is
applied as ``evaluate`` and ``predict`` apply it on the internal data: its checkpoint (neural models)
or its fitted estimator (baselines, :class:`amfmedit.stages.baseline.BaselineScorer`), the operating
point and temperatures chosen on the internal validation split. The kind's statistics object
compares internal test and external side by side (:meth:`~amfmedit.stages.kinds.PredictionKind.
external_statistics`); this module adds the case-mix and shift table (:mod:`amfmedit.stats.shift`)
and writes ``<run>/external-<NAME>/`` (results.md, metrics.json, shift.csv, predictions/): a new
folder; no stage of the run, and not ``evaluate/``, is changed by it.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from amfmedit.data import load_prepared
from amfmedit.data.like import same_pipeline
from amfmedit.data.prepared import kept_columns, list_prepared
from amfmedit.errors import UserError, close_matches
from amfmedit.io import atomic_path, write_json, write_text
from amfmedit.stages import names
from amfmedit.stages.baseline import BaselineScorer
from amfmedit.stages.common import masked_data
from amfmedit.stages.lifecycle import staged
from amfmedit.stats import shift
from amfmedit.train import rundir
from amfmedit.train.inputs import DeviceData
from amfmedit.train.tasks import infer

RESULTS_FILE, SHIFT_FILE = "results.md", "shift.csv"
IMAGE_SAMPLE = 1000  # images per cohort the intensity statistics read (evenly spaced rows)
TOP_FEATURES = 15  # features by |SMD| in results.md (all of them in shift.csv)


@dataclass
class External:
    """An external cohort opened for scoring, and each stage's predictions on it."""

    run: rundir.Run
    dataset: object  # PreparedDataset
    rt: object
    batch_size: int
    images_in: str = "auto"
    recalibrate_on: str | None = None
    outputs: dict[str, np.ndarray] = field(default_factory=dict)  # stage -> (N, K) on every row
    _data: DeviceData | None = None
    _masked: dict = field(default_factory=dict)
    _scorer: BaselineScorer | None = None

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.dataset.labels)

    @property
    def recalibrate_mask(self) -> np.ndarray | None:
        return None if self.recalibrate_on is None else np.asarray(self.dataset.split) == self.recalibrate_on

    def _device_data(self, mask: list[str]) -> DeviceData:
        if self._data is None:
            self._data = DeviceData(self.dataset, device=self.rt.device, residency=self.images_in)
        if not mask:
            return self._data
        if tuple(mask) not in self._masked:
            self._masked[tuple(mask)] = masked_data(self.dataset, self._data, mask)[1]
        return self._masked[tuple(mask)]

    def score(self, stage: str, info: dict, stage_dir: Path, kind, *, stored=None, model=None) -> None:
        """Predictions of one stage on every external row (a stored baseline, or a neural ``model`` in eval mode)."""
        rows = np.arange(len(self.dataset))
        if stored is not None:
            if self._scorer is None:
                self._scorer = BaselineScorer(self.run, self.dataset, device=self.rt.device,
                                              batch_size=max(self.batch_size, 1))
            self.outputs[stage] = self._scorer.score(stored, rows)
            return
        data = self._device_data(names.stage_mask(stage_dir) if info.get("mask") else [])
        use_image = info["modality"] != "tabular"
        chunks = [rows[i:i + self.batch_size] for i in range(0, len(rows), self.batch_size)]
        with torch.no_grad(), self.rt.autocast():
            parts = infer(model, kind, (data.batch(c, images=use_image) for c in chunks),
                          channels_last=self.rt.channels_last, use_image=use_image)
        self.outputs[stage] = np.concatenate(parts) if parts else np.zeros((0, kind.head_size(self.dataset.schema)))


def open_external(run: rundir.Run, internal, name: str, *, data_dir=None, rt, batch_size: int, images_in: str = "auto",
                  recalibrate_on: str | None = None) -> External:
    """The prepared external cohort ``name``, checked against the run's dataset before any work."""
    root = data_dir or run.data_dir
    try:
        ext = load_prepared(name, root)
    except UserError:
        have = [d for d in list_prepared(root) if d != internal.name]
        hint = close_matches(name, have)
        raise UserError(f"--external {name}: no prepared dataset of that name (prepared: {', '.join(have) or 'none'})"
                        + (f"; did you mean {hint}?" if hint else "") + f"; prepare it with `amfmedit prepare --data "
                        f"SPEC --raw FOLDER --like {internal.name} --name {name}`") from None
    if Path(ext.root).resolve() == Path(internal.root).resolve():
        raise UserError(f"--external {name}: that is the run's own dataset; give a cohort prepared --like it")
    if not same_pipeline(internal.schema, ext.schema):
        raise UserError(f"--external {name}: not prepared like the run's dataset {internal.name} (its schema.json "
                        f"differs: statistics, features or coding); prepare it with `amfmedit prepare --data SPEC --raw "
                        f"FOLDER --like {internal.name} --name {name}`")
    if recalibrate_on is not None:
        present = sorted(set(np.asarray(ext.split).tolist()))
        if recalibrate_on not in present:
            raise UserError(f"--recalibrate-on {recalibrate_on}: the external cohort {name} has no such split (it has: "
                            f"{', '.join(present)}); its spec's split column names the subset")
        if len(present) < 2:
            raise UserError(f"--recalibrate-on {recalibrate_on}: every row of {name} is in that split, none would be "
                            "left to score the recalibration on")
    return External(run, ext, rt, batch_size, images_in, recalibrate_on)


# ---------------------------------------------------------------------------------------------- case-mix


def _sample(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, IMAGE_SAMPLE)).astype(np.int64)) if n else np.zeros(0, np.int64)


def case_mix(internal, external, reference: np.ndarray) -> dict:
    """The shift from the internal ``reference`` rows (the training split) to every external row."""
    schema = internal.schema
    ext_rows = np.arange(len(external))
    out = {"reference": "internal training split", "n": {"internal": int(len(reference)), "external": len(ext_rows)}}
    out["outcome"] = {str(c): {"internal": float(np.mean(internal.labels[reference] == i)),
                               "external": float(np.mean(external.labels == i))}
                      for i, c in enumerate(schema.class_names)}
    cont = []
    for j, f in enumerate(schema.continuous):
        a = np.where(internal.missing[reference, j], np.nan, internal.x_cont[reference, j] * f.std + f.mean)
        b = np.where(external.missing[:, j], np.nan, external.x_cont[:, j] * f.std + f.mean)
        cont.append({"feature": f.name, "smd": shift.smd(a, b), "mean_internal": float(np.nanmean(a)) if
                     np.isfinite(a).any() else math.nan, "mean_external": float(np.nanmean(b)) if np.isfinite(b).any()
                     else math.nan, "missing_internal": float(np.isnan(a).mean()),
                     "missing_external": float(np.isnan(b).mean())})
    cont.sort(key=lambda r: -abs(r["smd"]) if math.isfinite(r["smd"]) else 0.0)
    out["continuous"] = cont
    cats = []
    for j, f in enumerate(schema.categorical):
        names_ = ["missing or unseen"] + list(f.categories or [])
        a = shift.shares(names_[c] for c in internal.x_cat[reference, j])
        b = shift.shares(names_[c] for c in external.x_cat[:, j])
        for level in dict.fromkeys(list(a) + list(b)):
            cats.append({"feature": f.name, "level": level, "internal": a.get(level, 0.0), "external": b.get(level, 0.0)})
    out["categorical"] = cats
    kept_a, kept_b = kept_columns(internal), kept_columns(external)
    kept = []
    for col in [c for c in kept_a if c in kept_b]:
        va, vb = kept_a[col][reference], kept_b[col]
        if va.dtype.kind == "f" and vb.dtype.kind == "f":
            kept.append({"column": col, "smd": shift.smd(va, vb)})
        else:
            a, b = shift.shares(va.tolist()), shift.shares(vb.tolist())
            kept += [{"column": col, "level": lv, "internal": a.get(lv, 0.0), "external": b.get(lv, 0.0)}
                     for lv in dict.fromkeys(list(a) + list(b))]
    out["kept_columns"] = kept
    ia = np.asarray(internal.images[reference[_sample(len(reference))]])
    ib = np.asarray(external.images[_sample(len(external))])
    out["images"] = {"internal": shift.intensity_summary(ia), "external": shift.intensity_summary(ib),
                     "smd_image_mean": shift.smd(shift.per_image_means(ia), shift.per_image_means(ib)),
                     "sampled": {"internal": int(len(ia)), "external": int(len(ib))}}
    return out


def shift_markdown(mix: dict) -> str:
    n = mix["n"]
    lines = [f"Reference: the {mix['reference']} ({n['internal']} rows) against all {n['external']} external rows. "
             f"|SMD| > {shift.SMD_MARK:g} marks a meaningful imbalance.\n",
             "| Outcome class | Internal share | External share |", "|---|--:|--:|"]
    lines += [f"| {c} | {v['internal']:.3f} | {v['external']:.3f} |" for c, v in mix["outcome"].items()]
    im = mix["images"]
    lines += ["", "| Image intensity (stored 0-255) | Internal | External |", "|---|--:|--:|"]
    for key, word in (("mean", "mean"), ("sd", "standard deviation"), ("at_floor", "share at 0 (below window)"),
                      ("at_ceiling", "share at 255 (above window)")):
        lines.append(f"| {word} | {im['internal'][key]:.3f} | {im['external'][key]:.3f} |")
    lines.append(f"| SMD of the per-image mean | | {im['smd_image_mean']:+.2f} |")
    lines += ["", f"| Feature (top {TOP_FEATURES} by \\|SMD\\|) | Internal mean | External mean | SMD | Missing "
              "internal | Missing external |", "|---|--:|--:|--:|--:|--:|"]
    for r in mix["continuous"][:TOP_FEATURES]:
        mark = " \u26a0" if math.isfinite(r["smd"]) and abs(r["smd"]) > shift.SMD_MARK else ""
        lines.append(f"| {r['feature']} | {r['mean_internal']:.4g} | {r['mean_external']:.4g} | {r['smd']:+.2f}{mark} | "
                     f"{r['missing_internal']:.1%} | {r['missing_external']:.1%} |")
    shown = [r for r in mix["categorical"] + [k for k in mix["kept_columns"] if "level" in k]]
    if shown:
        lines += ["", "| Categorical column | Category | Internal share | External share |", "|---|---|--:|--:|"]
        lines += [f"| {r.get('feature', r.get('column'))} | {r['level']} | {r['internal']:.3f} | {r['external']:.3f} |"
                  for r in shown]
    return "\n".join(lines) + f"\n\nEvery feature: [{SHIFT_FILE}]({SHIFT_FILE}).\n"


def _shift_csv(mix: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["kind", "name", "level", "internal", "external", "smd", "missing_internal", "missing_external"])
    for c, v in mix["outcome"].items():
        w.writerow(["outcome", "label", c, v["internal"], v["external"], "", "", ""])
    for r in mix["continuous"]:
        w.writerow(["feature", r["feature"], "", r["mean_internal"], r["mean_external"], r["smd"],
                    r["missing_internal"], r["missing_external"]])
    for r in mix["categorical"]:
        w.writerow(["category", r["feature"], r["level"], r["internal"], r["external"], "", "", ""])
    for r in mix["kept_columns"]:
        w.writerow(["kept", r["column"], r.get("level", ""), r.get("internal", ""), r.get("external", ""),
                    r.get("smd", ""), "", ""])
    im = mix["images"]
    for key in ("mean", "sd", "at_floor", "at_ceiling"):
        w.writerow(["image", key, "", im["internal"][key], im["external"][key], "", "", ""])
    w.writerow(["image", "per-image mean", "", "", "", im["smd_image_mean"], "", ""])
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- output


def write_external(run: rundir.Run, ext: External, report, mix: dict, *, internal_name: str, split: str,
                   titled: dict[str, str], subgroups=None, class_names=()) -> Path:
    """``<run>/external-<NAME>/``, built aside and renamed into place (recomputed each time)."""
    import pandas as pd

    folder = run.stage(names.external_stage(ext.name))
    md = [f"# External validation of run {run.name} on {ext.name}\n",
          f"Every classifier of the run scored, unchanged, on the {report.n} rows of `{ext.name}` (prepared like "
          f"`{internal_name}`: its imputation, scaling, category codes, HU window and image size). Operating points and "
          f"temperatures are those chosen on the internal validation split; \"internal\" is the internal {split} "
          "split. 95% intervals: DeLong for AUC, Clopper-Pearson for proportions, stratified bootstrap otherwise.\n",
          "Outcome classes: " + ", ".join(f"{c} {n}" for c, n in report.class_counts.items()) + ".\n",
          "\n## Internal vs external\n\n", report.markdown()]
    if report.warnings:
        md.append("\n" + "".join(f"- Warning: {w}\n" for w in report.warnings))
    md.append("\n## Case-mix and shift\n\n" + shift_markdown(mix))
    if subgroups is not None:
        md.append("\n## Subgroups of the external cohort\n\n" + subgroups.markdown())
    with staged(run, folder, force=True, refresh=False) as out:  # evaluate/, written next, refreshes the report
        write_text(out.folder / RESULTS_FILE, "".join(md))
        write_text(out.folder / SHIFT_FILE, _shift_csv(mix))
        write_json(out.folder / names.EVAL_METRICS_FILE, {
            "external": ext.name, "prepared_like": internal_name, "internal_split": split, **report.to_dict(),
            "recalibrate_on": ext.recalibrate_on, "shift": mix,
            "subgroups": subgroups.to_dict() if subgroups is not None else None, "stages": sorted(ext.outputs)})
        (out.folder / "predictions").mkdir()
        for stage, preds in ext.outputs.items():
            df = pd.DataFrame({"id": np.asarray(ext.dataset.ids), "split": np.asarray(ext.dataset.split),
                               "label": ext.labels})
            for k, c in enumerate(class_names):
                df[f"prob_{c}"] = preds[:, k]
            df["model"] = titled.get(stage, stage)
            with atomic_path(out.folder / "predictions" / f"{stage}.csv") as tmp:
                df.to_csv(tmp, index=False)
        out.summary = {"external": ext.name, "rows": report.n, "stages": len(ext.outputs)}
    return folder
