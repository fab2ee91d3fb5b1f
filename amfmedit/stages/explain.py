"""``explain``: Integrated Gradients and Grad-CAM reports written into the run directory.

```
<run>/explain/ig-<stage>/        importance.csv, top10.md, summary.json,
                                 importance_distribution.png (Fig. 4), top_features.png,
                                 groups.png (Fig. 5a), COMPLETE
<run>/explain/gradcam-<stage>/   positive.png, negative.png (Fig. 6 grids), cases/*.png,
                                 cams.npz, summary.json, [compare-positive.png, compare-negative.png], COMPLETE
```

The two groups of Grad-CAM cases are the prediction kind's (``kind.cam_cases``): N positive and N
negative cases for classification, the N earliest events and the N longest event-free follow-ups
for survival (``earliest-events.png``, ``longest-event-free.png``), the N highest and lowest
observed values for regression; IG attributes the kind's output (``kind.explain_output``: a
class probability, or the risk score / predicted value itself).

Which model is explained: the run's model (:mod:`amfmedit.stages.selection`, the rule ``predict``
and ``export`` follow: the image-tabular model with the best validation metric), its tabular
branch for Integrated Gradients (each sample's image held fixed) and its image encoder for
Grad-CAM (each sample's tabular row held fixed). ``--stage NAME`` picks another, e.g. the paper's
settings: the supervised tabular model for IG (§4.2.1) and a concatenation model with frozen
encoders for Grad-CAM (Fig. 6).

Each folder is built aside and renamed into place when complete; a finished one is replaced
only with ``force``. A model trained on masked features is explained on the same masked data.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from amfmedit.data import load_prepared
from amfmedit.data.masking import mask_features
from amfmedit.data.synthetic import region_masks
from amfmedit.env import package_version
from amfmedit.errors import UserError, close_matches
from amfmedit.explain import plots
from amfmedit.explain.gradcam import grad_cams, images_of, region_summary
from amfmedit.explain.ig import (
    IMPORTANCE_FILE,
    SUMMARY_FILE,
    TOP_FILE,
    Attributions,
    IGConfig,
    IGTruth,
    group_shares,
    importance_table,
    integrated_gradients,
    steps_for_completeness,
    tabular_baseline,
    top_markdown,
)
from amfmedit.explain.targets import TabularScore, frozen_parameters
from amfmedit.io import atomic_path, write_json, write_text
from amfmedit.stages import names, sanity
from amfmedit.stages.classify import best_model
from amfmedit.stages.common import RunOptions, load_dataset, runtime_for
from amfmedit.stages.configs import METHODS, CamConfig
from amfmedit.stages.kinds import kind_of
from amfmedit.stages.lifecycle import staged
from amfmedit.stages.selection import choose_model
from amfmedit.stages.tables import encoder_title, fusion_title
from amfmedit.train import rundir

IG_COMPLETENESS_TOLERANCE = 0.05  # mean |delta| / mean |f(x) - f(baseline)| above this: too few steps
# what the outline drawn on synthetic OL3I CAMs is (the region the generator puts the risk in)
REGION_LABELS = {"visceral_fat": "visceral fat (the risk region)"}


# ----------------------------------------------------------------------------------------------
# Which model is explained
# ----------------------------------------------------------------------------------------------


def choose_stage(run: rundir.Run, purpose: str, stage: str | None = None, data_dir=None) -> str:
    """The stage to explain: ``stage`` when given (checked), else the run's model
    (:func:`amfmedit.stages.selection.choose_model`, the rule ``predict`` and ``export`` follow)."""
    return choose_model(run, purpose, stage, data_dir=data_dir).stage


def _chosen(run: rundir.Run, purpose: str, stage: str | None, opts: RunOptions):
    return choose_model(run, purpose, stage, data_dir=opts.data_dir)


@dataclass
class Explained:
    """A trained classifier loaded for explanation."""

    run: rundir.Run
    stage: str
    model: nn.Module  # UnimodalClassifier or ImageTabularClassifier, eval mode
    info: dict  # fusion, strategy, modality, seed, mask tag
    mask: list[str]  # features this model was trained with masked

    @property
    def stage_dir(self) -> Path:
        return self.run.stage(self.stage)

    @property
    def tabular_encoder(self) -> nn.Module:
        return self.model.encoder if self.info["modality"] == "tabular" else self.model.tabular_encoder

    @property
    def image_encoder(self) -> nn.Module:
        return self.model.encoder if self.info["modality"] == "image" else self.model.image_encoder

    def describe(self, purpose: str) -> str:
        """One line naming the model, e.g. for the terminal and the report."""
        cfg = self.model.config
        if self.info["modality"] == "tabular":
            enc = encoder_title(cfg["encoder"]["kind"])
            text = f"supervised {enc} tabular model"
        elif self.info["modality"] == "image":
            text = "supervised image model (ResNet)"
        else:
            enc = encoder_title(cfg["tabular_encoder"]["kind"])
            fusion = fusion_title(self.info["fusion"])
            part = f"the {enc} tabular branch of" if purpose == "ig" else "the image encoder of"
            text = f"{part} the fine-tuned {fusion} model ({self.info['strategy']})"
            if purpose == "ig":
                text += ", each sample's image held fixed"
            else:
                text += ", each sample's tabular row held fixed"
        masked = f"; trained with {', '.join(self.mask)} masked" if self.mask else ""
        return f"{text} [{self.stage}/best.pt{masked}]"


def load_explained(run: rundir.Run, stage: str, device: torch.device | str = "cpu") -> Explained:
    """Load ``stage``'s best-validation model (``best.pt``) in eval mode on ``device``."""
    info = names.classifier_stages(run).get(stage)
    if info is None:
        raise UserError(f"--stage {stage}: not a finished classifier of run {run.name}")
    model, _ = best_model(run.stage(stage))
    model = model.to(device).eval()
    return Explained(run, stage, model, info, names.stage_mask(run.stage(stage)))




def check_method(method: str) -> str:
    if method not in METHODS:
        hint = close_matches(method, METHODS)
        raise UserError(f"--method {method}: unknown explanation method; use ig (Integrated Gradients) or gradcam"
                        + (f" (did you mean {hint}?)" if hint else ""))
    return method


def _output_dir(final: Path, force: bool) -> Path:
    if final.exists() and not force:
        raise UserError(f"{final} exists; pass --force to compute it again")
    return final


def _dataset_for(explained: Explained, opts: RunOptions):
    ds = load_dataset(explained.run, opts)
    return mask_features(ds, explained.mask) if explained.mask else ds


def synthetic_truth(dataset) -> dict:
    """The generator's record of a synthetic cohort ({} for real data)."""
    try:
        return dataset.provenance.get("synthetic") or {}
    except (OSError, ValueError):
        return {}


# ----------------------------------------------------------------------------------------------
# Integrated Gradients
# ----------------------------------------------------------------------------------------------


@dataclass
class IGReport:
    run: str
    stage: str
    folder: Path
    model: str  # which model was explained, in words
    table: object  # pandas DataFrame, most important first
    summary: dict
    top_markdown: str

    @property
    def warnings(self) -> list[str]:
        return list(self.summary.get("warnings", []))


def explain_ig(cfg: IGConfig, opts: RunOptions, *, stage: str | None = None, progress=None) -> IGReport:
    """IG of the run's tabular model over ``cfg.split`` (all training samples by default)."""
    cfg.validate()
    rt = runtime_for(opts)
    run = rundir.open_run(opts.runs_dir, opts.run)
    choice = _chosen(run, "ig", stage, opts)
    name = choice.stage
    final = _output_dir(names.ig_folder(run, name), opts.force)
    ex = load_explained(run, name, rt.device)
    ds = _dataset_for(ex, opts)
    schema = ds.schema
    kind = kind_of(schema)
    kind.explain_target(schema, cfg.target)  # a bad --target fails before any work
    cfg = replace(cfg, output=kind.explain_output(cfg.output))  # a one-output head: its raw output

    rows = ds.indices(cfg.split)
    if len(rows) == 0:
        raise UserError(f"--split {cfg.split}: dataset {ds.name} has no rows in that split")
    modality = ex.info["modality"]
    # attributions to the table need a table; a fusion's also an image of the patient (complete rows)
    has = ds.table_present[rows] & (ds.image_present[rows] if modality is None else True)
    if not has.any():
        raise UserError(f"--split {cfg.split}: none of its {len(rows)} rows has "
                        + ("a table" if modality is not None else "both an image and a table")
                        + " to attribute; choose another split")
    rows = rows[has]
    if cfg.max_samples is not None and cfg.max_samples < len(rows):
        rows = np.sort(np.random.default_rng(cfg.seed).choice(rows, cfg.max_samples, replace=False))
    train = ds.indices("train")
    dev = rt.device
    x_cont = torch.from_numpy(ds.x_cont[rows]).to(dev)
    x_cat = torch.from_numpy(ds.x_cat[rows]).to(dev)
    missing = torch.from_numpy(np.asarray(ds.missing[rows])).to(dev)
    targets = torch.from_numpy(kind.explain_targets(schema, cfg.target, kind.targets(ds)[rows])).to(dev)
    scorer = TabularScore(ex.model, modality=modality, output=cfg.output).to(dev).eval()
    baseline = tabular_baseline(scorer.encoder, torch.from_numpy(ds.x_cont[train]).to(dev),
                                torch.from_numpy(ds.x_cat[train]).to(dev))
    def image_rows(pos: np.ndarray) -> torch.Tensor:
        return images_of(ds, rows[pos], dev)

    images = image_rows if modality is None else None

    t0 = time.perf_counter()
    steps, pilot_error = cfg.steps, None
    with frozen_parameters(ex.model):
        if cfg.completeness is not None:  # the fewest steps that meet the asked completeness error
            steps, pilot_error = steps_for_completeness(
                scorer, x_cont=x_cont, x_cat=x_cat, baseline=baseline, targets=targets, tolerance=cfg.completeness,
                batch_size=cfg.batch_size, images=images, missing=missing)
        values, delta, change = integrated_gradients(
            scorer, x_cont=x_cont, x_cat=x_cat, baseline=baseline, targets=targets, steps=steps,
            batch_size=cfg.batch_size, images=images, progress=progress, missing=missing)
    elapsed = time.perf_counter() - t0
    cfg = replace(cfg, steps=steps)
    attr = Attributions(schema.feature_names, rows, values, delta, change, steps, targets.cpu().numpy())

    truth = synthetic_truth(ds)
    informative = list(truth.get("informative_features") or []) or None
    table = importance_table(schema, attr, informative)
    md_top = top_markdown(table, cfg.top_k)
    completeness = attr.completeness()
    top_names = [str(n) for n in table["name"].head(cfg.top_k)]
    summary = {
        "run": run.name, "stage": name, "model": ex.describe("ig"), "model_choice": choice.rule,
        "method": "integrated_gradients",
        "captum": package_version("captum"), "split": cfg.split, "n_samples": int(len(rows)), "steps": cfg.steps,
        **kind.explain_description(schema, cfg.target),
        "output": cfg.output,
        "baseline": "training-set mean: x_cont mean and mean categorical embedding over the train rows",
        "masked_features": ex.mask, "completeness": completeness, "top": top_names,
        "elapsed_s": round(elapsed, 3), "settings": asdict(cfg),
        "steps_rule": ("given (--steps)" if pilot_error is None else
                       f"fewest Gauss-Legendre steps within --completeness {cfg.completeness:g} on a pilot "
                       f"(pilot error {pilot_error:.3g})"),
    }
    if informative:
        # Features the risk model does not use but that track its image term (bmi and weight
        # follow visceral fat): a tabular-only model rightly leans on them, so they are counted
        # apart, never added to the informative count.
        ranked = [str(n) for n in table["name"]]
        summary["synthetic"] = IGTruth.of(ranked, informative, sorted(truth.get("proxy_features") or {}),
                                          cfg.top_k).to_dict()
    shares = group_shares(table)
    truth_shares = None
    if informative:
        low = table["importance_pct"] < 1.0
        inf = table["informative"].to_numpy(bool)
        truth_shares = {"low importance (<1%)": float(table.loc[low, "importance_pct"].sum()),
                        "high & informative": float(table.loc[~low & inf, "importance_pct"].sum()),
                        "high & not informative": float(table.loc[~low & ~inf, "importance_pct"].sum())}
    summary["group_shares"] = shares
    summary["warnings"] = _ig_warnings(completeness, cfg.steps)

    title = f"IG: {ex.describe('ig').split(' [')[0]} ({len(rows)} {cfg.split} samples)"
    with staged(run, final, force=opts.force) as stage_out:
        tmp = stage_out.folder
        with atomic_path(tmp / IMPORTANCE_FILE) as p:
            table.to_csv(p, index=False)
        write_text(tmp / TOP_FILE, _top_page(summary, md_top, cfg.top_k))
        write_json(tmp / SUMMARY_FILE, summary)
        plots.importance_distribution(table, schema.feature_names, tmp / "importance_distribution.png", title)
        plots.top_features(table, cfg.top_k, tmp / "top_features.png", f"Top {cfg.top_k} features — {name}")
        plots.group_breakdown(shares, tmp / "groups.png", f"Importance by category — {name}", truth_shares)
        stage_out.summary = {"stage": name, "n_samples": int(len(rows)), "warnings": summary["warnings"]}
        run.record_command(f"explain {final.name}", opts.argv)
    return IGReport(run.name, name, final, ex.describe("ig"), table, summary, md_top)


def _ig_warnings(completeness: dict, steps: int) -> list[str]:
    """Attributions that do not add up to f(x) - f(baseline) (completeness) say too few steps."""
    rel = completeness.get("relative")
    if isinstance(rel, float) and math.isfinite(rel) and rel > IG_COMPLETENESS_TOLERANCE:
        return [f"the attributions miss f(x) - f(baseline) by {100 * rel:.1f}% on average (completeness): "
                f"{steps} steps are too few for this model; raise --steps"]
    return []


def _top_page(summary: dict, md_top: str, k: int) -> str:
    c = summary["completeness"]
    lines = [
        f"# Integrated Gradients: top {k} features\n",
        f"Model: {summary['model']}. Samples: {summary['n_samples']} ({summary['split']} split), "
        f"{summary['steps']} steps, target: "
        + (f"class {summary['target']['name']}" if summary["target"] else "each sample's label")
        + f" ({summary['output']}). Baseline: {summary['baseline']}.\n",
        md_top,
        f"\nCompleteness (sum of attributions vs f(x) − f(baseline)): mean |delta| {c['mean_abs_delta']:.3g}, "
        f"max |delta| {c['max_abs_delta']:.3g}, mean |f(x) − f(baseline)| {c['mean_abs_output_change']:.3g}, "
        f"relative {c['relative']:.3g}.\n",
    ]
    syn = summary.get("synthetic")
    if syn:
        lines.append(f"\nSynthetic cohort: {IGTruth.from_dict(syn).sentence()}.\n")
    return "".join(lines)


# ----------------------------------------------------------------------------------------------
# Grad-CAM
# ----------------------------------------------------------------------------------------------


@dataclass
class CamReport:
    run: str
    stage: str
    folder: Path
    model: str
    summary: dict


def _region_masks(ds, rows: np.ndarray) -> tuple[np.ndarray | None, str | None]:
    truth = synthetic_truth(ds)
    signal = truth.get("image_signal") or {}
    if truth.get("generator") != "synthetic-ol3i" or not signal.get("region"):
        return None, None
    return region_masks(ds, rows, signal["region"]), signal["region"]


def _compare_targets(spec: str, opts: RunOptions) -> tuple[rundir.Run, str]:
    run_name, _, stage = spec.partition(":")
    other = rundir.open_run(opts.runs_dir, run_name)
    return other, choose_stage(other, "gradcam", stage or None, opts.data_dir)


def explain_gradcam(cfg: CamConfig, opts: RunOptions, *, stage: str | None = None) -> CamReport:
    """Grad-CAM overlays of N positive and N negative test cases (and other runs' maps beside them)."""
    cfg.validate()
    rt = runtime_for(opts)
    run = rundir.open_run(opts.runs_dir, opts.run)
    choice = _chosen(run, "gradcam", stage, opts)
    name = choice.stage
    final = _output_dir(names.cam_folder(run, name), opts.force)
    others = [_compare_targets(s, opts) for s in cfg.compare]  # bad names fail before any work
    ex = load_explained(run, name, rt.device)
    ds = _dataset_for(ex, opts)
    kind = kind_of(ds.schema)
    target = kind.cam_target(ds.schema, cfg.target)
    cases = kind.cam_cases(ds, cfg.cases, target, split=cfg.split, seed=cfg.seed)
    rows = cases.rows
    common = cfg.scale == "common"  # maps in the model's units, so one scale compares cases
    cams, probs = grad_cams(ex.model, ds, rows, target=target, device=rt.device, batch_size=cfg.batch_size, raw=common,
                            output=kind.cam_output)
    masks, region = _region_masks(ds, rows)
    n = cfg.cases
    cls = kind.cam_target_name(ds.schema, target)
    toward = f"class {cls}" if kind.target_names(ds.schema) else cls
    first, second = cases.names  # positive / negative, or the kind's two groups (earliest events / event-free)
    summary: dict = {
        "run": run.name, "stage": name, "model": ex.describe("gradcam"), "model_choice": choice.rule,
        "method": "gradcam",
        "grad_cam": package_version("grad-cam"), "target_layer": "image_encoder.layer4 (last ResNet stage)",
        "target": {"index": target, "name": cls}, "split": cfg.split, "masked_features": ex.mask,
        "cases": {first: [str(i) for i in ds.ids[cases.positive]],
                  second: [str(i) for i in ds.ids[cases.negative]]},
        "probability" if kind.cam_output == "prob" else "output": {first: [float(p) for p in probs[:n]],
                                                                    second: [float(p) for p in probs[n:]]},
    }
    if masks is not None:
        summary["region"] = {first: region_summary(cams[:n], masks[:n], region),
                             second: region_summary(cams[n:], masks[n:], region)}

    def titles(part: slice) -> list[str]:
        return [kind.case_title(ds, r, p) for r, p in zip(rows[part], probs[part])]

    images = [ds.images[r] for r in rows]
    compare_maps, compare_titles = [], []
    if others:
        summary["compare"] = []
        cases_job = CamCases(ds, rows, target, cfg, opts, rt.device, masks, region, n, cases.names)
        for other, other_stage in others:
            o_cams, o_summary = _cams_of_other(other, other_stage, cases_job)
            compare_maps.append(o_cams)
            compare_titles.append(f"{other.name}\n{other_stage}")
            summary["compare"].append(o_summary)
    summary["scale"] = cfg.scale
    summary["warnings"] = (sanity.cam_warnings(cams[:n], f"{first} {cfg.split} cases")
                           + sanity.cam_warnings(cams[n:], f"{second} {cfg.split} cases"))
    outline_label = REGION_LABELS.get(region or "", f"{region} (the signal region)")

    with staged(run, final, force=opts.force) as stage_out:
        tmp = stage_out.folder
        for label, part in ((first, slice(0, n)), (second, slice(n, 2 * n))):
            plots.cam_maps_grid(images[part], cams[part], titles(part), tmp / f"{label}.png",
                                f"Grad-CAM toward {toward}: {label} {cfg.split} cases — {name}", scale=cfg.scale,
                                outlines=None if masks is None else masks[part], outline_label=outline_label)
            vmax = float(cams[part].max()) if common and len(cams[part]) else None
            for i, (r, t) in enumerate(zip(rows[part], titles(part))):
                plots.cam_map_single(images[part][i], cams[part][i], tmp / "cases" / f"{label}-{_safe(ds.ids[r])}.png",
                                     t, vmax=vmax, outline=None if masks is None else masks[part][i],
                                     outline_label=outline_label)
            if compare_maps:
                plots.cam_maps_compare(images[part], [cams[part]] + [m[part] for m in compare_maps],
                                       [str(ds.ids[r]) for r in rows[part]],
                                       [f"{run.name}\n{name}"] + compare_titles,
                                       tmp / f"compare-{label}.png", f"Grad-CAM, {label} cases, side by side",
                                       scale=cfg.scale)
        with atomic_path(tmp / "cams.npz") as p:
            with open(p, "wb") as fh:
                np.savez_compressed(fh, ids=ds.ids[rows].astype(str), labels=ds.labels[rows], cams=cams.astype(np.float16),
                                    probs=probs)
        write_json(tmp / SUMMARY_FILE, summary)
        stage_out.summary = {"stage": name, "cases": int(len(rows)), "warnings": summary["warnings"]}
        run.record_command(f"explain {final.name}", opts.argv)
    return CamReport(run.name, name, final, ex.describe("gradcam"), summary)


@dataclass
class CamCases:
    """The cases of one Grad-CAM report, for drawing another run's maps of the same patients."""

    dataset: object  # the explained PreparedDataset
    rows: np.ndarray  # its rows: n cases of the kind's first group, then n of its second
    target: int
    cfg: CamConfig
    opts: RunOptions
    device: torch.device
    masks: np.ndarray | None  # the synthetic signal region per case (None for real data)
    region: str | None
    n: int
    names: tuple[str, str] = ("positive", "negative")  # the kind's two case groups (kind.cam_cases)


def _cams_of_other(other: rundir.Run, stage: str, job: CamCases):
    """CAMs of another run's model for the same patients (matched by id)."""
    ds, rows, n, masks, region = job.dataset, job.rows, job.n, job.masks, job.region
    ex = load_explained(other, stage, job.device)
    ods = load_prepared(other.data, other.data_dir if job.opts.data_dir is None else job.opts.data_dir)
    if ex.mask:
        ods = mask_features(ods, ex.mask)
    where = {str(i): k for k, i in enumerate(ods.ids)}
    missing = [str(i) for i in ds.ids[rows] if str(i) not in where]
    if missing:
        raise UserError(f"--compare {other.name}: its dataset {other.data!r} lacks patient {missing[0]} "
                        f"(and {len(missing) - 1} more); compare runs prepared from the same cohort")
    o_rows = np.array([where[str(i)] for i in ds.ids[rows]])
    if ods.images.shape[1:] != ds.images.shape[1:]:
        raise UserError(f"--compare {other.name}: its images are {ods.images.shape[1:]}, not {ds.images.shape[1:]}")
    kind = kind_of(ods.schema)
    first, second = job.names
    cams, probs = grad_cams(ex.model, ods, o_rows, target=job.target, device=job.device, batch_size=job.cfg.batch_size,
                            raw=job.cfg.scale == "common", output=kind.cam_output)
    out = {"run": other.name, "stage": stage, "model": ex.describe("gradcam"),
           "probability" if kind.cam_output == "prob" else "output": {first: [float(p) for p in probs[:n]],
                                                                       second: [float(p) for p in probs[n:]]}}
    if masks is not None:
        out["region"] = {first: region_summary(cams[:n], masks[:n], region),
                         second: region_summary(cams[n:], masks[n:], region)}
    return cams, out


def _safe(text) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))[:80]
