"""``explain``: Integrated Gradients and Grad-CAM reports written into the run directory.

```
<run>/explain/ig-<stage>/        importance.csv, top10.md, summary.json,
                                 importance_distribution.png (Fig. 4), top_features.png,
                                 groups.png (Fig. 5a), COMPLETE
<run>/explain/gradcam-<stage>/   positive.png, negative.png (Fig. 6 grids), cases/*.png,
                                 cams.npz, summary.json, [compare-positive.png, compare-negative.png], COMPLETE
```

Each folder is built aside and renamed into place when complete; a finished one is replaced
only with ``force``. A model trained on masked features is explained on the same masked data.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from amfmedit.env import package_version
from amfmedit.errors import UserError
from amfmedit.explain import plots
from amfmedit.explain.gradcam import grad_cams, overlay, region_summary, select_cases
from amfmedit.explain.ig import (
    IMPORTANCE_FILE,
    SUMMARY_FILE,
    TOP_FILE,
    Attributions,
    IGConfig,
    group_shares,
    importance_table,
    integrated_gradients,
    resolve_target,
    tabular_baseline,
    top_markdown,
)
from amfmedit.explain.masking import mask_features
from amfmedit.explain.report import truth_sentence
from amfmedit.explain.targets import Explained, TabularScore, choose_stage, frozen_parameters, load_explained
from amfmedit.io import atomic_path, staging_dir, write_json, write_text
from amfmedit.stages.common import RunOptions, load_dataset, runtime_for
from amfmedit.train import rundir

EXPLAIN_DIR = "explain"
METHODS = ("ig", "gradcam")


def check_method(method: str) -> str:
    if method not in METHODS:
        from amfmedit.errors import close_matches

        hint = close_matches(method, METHODS)
        raise UserError(f"--method {method}: unknown explanation method; use ig (Integrated Gradients) or gradcam"
                        + (f" (did you mean {hint}?)" if hint else ""))
    return method


def _output_dir(run: rundir.Run, folder: str, force: bool) -> Path:
    final = run.root / EXPLAIN_DIR / folder
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


def explain_ig(cfg: IGConfig, opts: RunOptions, *, stage: str | None = None, progress=None) -> IGReport:
    """IG of the run's tabular model over ``cfg.split`` (all training samples by default)."""
    cfg.validate()
    rt = runtime_for(opts)
    run = rundir.open_run(opts.runs_dir, opts.run)
    name = choose_stage(run, "ig", stage)
    final = _output_dir(run, f"ig-{name}", opts.force)
    ex = load_explained(run, name, rt.device)
    ds = _dataset_for(ex, opts)
    schema = ds.schema
    target = resolve_target(schema, cfg.target)

    rows = ds.indices(cfg.split)
    if len(rows) == 0:
        raise UserError(f"--split {cfg.split}: dataset {ds.name} has no rows in that split")
    if cfg.max_samples is not None and cfg.max_samples < len(rows):
        rows = np.sort(np.random.default_rng(cfg.seed).choice(rows, cfg.max_samples, replace=False))
    train = ds.indices("train")
    dev = rt.device
    x_cont = torch.from_numpy(ds.x_cont[rows]).to(dev)
    x_cat = torch.from_numpy(ds.x_cat[rows]).to(dev)
    targets = torch.full((len(rows),), target, dtype=torch.long, device=dev) if target is not None else \
        torch.from_numpy(ds.labels[rows]).to(dev)
    modality = ex.info["modality"]
    scorer = TabularScore(ex.model, modality=modality, output=cfg.output).to(dev).eval()
    baseline = tabular_baseline(scorer.encoder, torch.from_numpy(ds.x_cont[train]).to(dev),
                                torch.from_numpy(ds.x_cat[train]).to(dev))
    images = None
    if modality is None:
        from amfmedit.explain.gradcam import images_of

        def images(pos: np.ndarray) -> torch.Tensor:
            return images_of(ds, rows[pos], dev)

    t0 = time.perf_counter()
    with frozen_parameters(ex.model):
        values, delta, change = integrated_gradients(
            scorer, x_cont=x_cont, x_cat=x_cat, baseline=baseline, targets=targets, steps=cfg.steps,
            batch_size=cfg.batch_size, images=images, progress=progress)
    elapsed = time.perf_counter() - t0
    attr = Attributions(schema.feature_names, rows, values, delta, change, cfg.steps, targets.cpu().numpy())

    truth = synthetic_truth(ds)
    informative = list(truth.get("informative_features") or []) or None
    table = importance_table(schema, attr, informative)
    md_top = top_markdown(table, cfg.top_k)
    completeness = attr.completeness()
    top_names = [str(n) for n in table["name"].head(cfg.top_k)]
    summary = {
        "run": run.name, "stage": name, "model": ex.describe("ig"), "method": "integrated_gradients",
        "captum": package_version("captum"), "split": cfg.split, "n_samples": int(len(rows)), "steps": cfg.steps,
        "target": None if target is None else {"index": target, "name": str(schema.class_names[target])},
        "target_rule": "fixed class" if target is not None else "each sample's own label",
        "output": cfg.output,
        "baseline": "training-set mean: x_cont mean and mean categorical embedding over the train rows",
        "masked_features": ex.mask, "completeness": completeness, "top": top_names,
        "elapsed_s": round(elapsed, 3), "settings": asdict(cfg),
    }
    if informative:
        k = len(informative)
        summary["synthetic"] = {
            "informative": informative,
            f"informative_in_top{cfg.top_k}": sum(n in informative for n in top_names),
            "top_k": cfg.top_k,
            f"informative_in_top{k}": sum(n in informative for n in table["name"].head(k)),
            "n_informative": k,
        }
        # Features the risk model does not use but that track its image term (bmi and weight
        # follow visceral fat): a tabular-only model rightly leans on them, so they are counted
        # apart, never added to the informative count.
        proxies = sorted(truth.get("proxy_features") or {})
        if proxies:
            summary["synthetic"]["proxies"] = proxies
            summary["synthetic"][f"proxies_in_top{cfg.top_k}"] = sum(n in proxies for n in top_names)
    shares = group_shares(table)
    truth_shares = None
    if informative:
        low = table["importance_pct"] < 1.0
        inf = table["informative"].to_numpy(bool)
        truth_shares = {"low importance (<1%)": float(table.loc[low, "importance_pct"].sum()),
                        "high & informative": float(table.loc[~low & inf, "importance_pct"].sum()),
                        "high & not informative": float(table.loc[~low & ~inf, "importance_pct"].sum())}
    summary["group_shares"] = shares

    title = f"IG: {ex.describe('ig').split(' [')[0]} ({len(rows)} {cfg.split} samples)"
    with staging_dir(final, force=opts.force) as tmp:
        with atomic_path(tmp / IMPORTANCE_FILE) as p:
            table.to_csv(p, index=False)
        write_text(tmp / TOP_FILE, _top_page(summary, md_top, cfg.top_k))
        write_json(tmp / SUMMARY_FILE, summary)
        plots.importance_distribution(table, schema.feature_names, tmp / "importance_distribution.png", title)
        plots.top_features(table, cfg.top_k, tmp / "top_features.png", f"Top {cfg.top_k} features — {name}")
        plots.group_breakdown(shares, tmp / "groups.png", f"Importance by category — {name}", truth_shares)
        rundir.mark_complete(tmp, {"stage": name, "n_samples": int(len(rows))})
    run.record_command(f"explain ig-{name}", opts.argv)
    return IGReport(run.name, name, final, ex.describe("ig"), table, summary, md_top)


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
        lines.append(f"\nSynthetic cohort: {truth_sentence(syn, k)}.\n")
    return "".join(lines)


# ----------------------------------------------------------------------------------------------
# Grad-CAM
# ----------------------------------------------------------------------------------------------


@dataclass
class CamConfig:
    """What ``explain --method gradcam`` draws."""

    cases: int = 4  # positive and negative cases each
    split: str = "test"
    target: str | None = None  # None: the positive class (binary); required for multiclass
    seed: int = 0
    batch_size: int = 16
    compare: list[str] = field(default_factory=list)  # other runs: "RUN" or "RUN:STAGE"

    def validate(self) -> None:
        if self.cases < 1:
            raise UserError(f"--cases {self.cases}: must be at least 1")
        if self.split not in ("train", "val", "test"):
            raise UserError(f"--split {self.split}: use train, val or test")
        if self.batch_size < 1:
            raise UserError(f"--batch-size {self.batch_size}: must be positive")


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
    from amfmedit.data.synthetic import region_masks

    return region_masks(ds, rows, signal["region"]), signal["region"]


def _class_target(schema, target: str | None) -> int:
    idx = resolve_target(schema, target)
    if idx is None:
        raise UserError(f"dataset {schema.name} has {schema.n_classes} classes: pass --target CLASS "
                        f"(e.g. --target {schema.class_names[0]}) to choose the class whose evidence is drawn")
    return idx


def _compare_targets(spec: str, opts: RunOptions) -> tuple[rundir.Run, str]:
    run_name, _, stage = spec.partition(":")
    other = rundir.open_run(opts.runs_dir, run_name)
    return other, choose_stage(other, "gradcam", stage or None)


def explain_gradcam(cfg: CamConfig, opts: RunOptions, *, stage: str | None = None) -> CamReport:
    """Grad-CAM overlays of N positive and N negative test cases (and other runs' maps beside them)."""
    cfg.validate()
    rt = runtime_for(opts)
    run = rundir.open_run(opts.runs_dir, opts.run)
    name = choose_stage(run, "gradcam", stage)
    final = _output_dir(run, f"gradcam-{name}", opts.force)
    others = [_compare_targets(s, opts) for s in cfg.compare]  # bad names fail before any work
    ex = load_explained(run, name, rt.device)
    ds = _dataset_for(ex, opts)
    target = _class_target(ds.schema, cfg.target)
    cases = select_cases(ds, cfg.cases, target, split=cfg.split, seed=cfg.seed)
    rows = cases.rows
    cams, probs = grad_cams(ex.model, ds, rows, target=target, device=rt.device, batch_size=cfg.batch_size)
    masks, region = _region_masks(ds, rows)
    n = cfg.cases
    cls = str(ds.schema.class_names[target])
    summary: dict = {
        "run": run.name, "stage": name, "model": ex.describe("gradcam"), "method": "gradcam",
        "grad_cam": package_version("grad-cam"), "target_layer": "image_encoder.layer4 (last ResNet stage)",
        "target": {"index": target, "name": cls}, "split": cfg.split, "masked_features": ex.mask,
        "cases": {"positive": [str(i) for i in ds.ids[cases.positive]],
                  "negative": [str(i) for i in ds.ids[cases.negative]]},
        "probability": {"positive": [float(p) for p in probs[:n]], "negative": [float(p) for p in probs[n:]]},
    }
    if masks is not None:
        summary["region"] = {"positive": region_summary(cams[:n], masks[:n], region),
                             "negative": region_summary(cams[n:], masks[n:], region)}

    def titles(part: slice) -> list[str]:
        return [f"{ds.ids[r]} (label {ds.schema.class_names[ds.labels[r]]}) p={p:.2f}"
                for r, p in zip(rows[part], probs[part])]

    overlays = [overlay(ds.images[r], c) for r, c in zip(rows, cams)]
    compare_cells = []
    if others:
        summary["compare"] = []
        for other, other_stage in others:
            o_cams, o_summary = _cams_of_other(other, other_stage, ds, rows, target, cfg, opts, rt.device, masks,
                                               region, n)
            compare_cells.append(([overlay(ds.images[r], c) for r, c in zip(rows, o_cams)],
                                  f"{other.name}\n{other_stage}"))
            summary["compare"].append(o_summary)

    with staging_dir(final, force=opts.force) as tmp:
        for label, part in (("positive", slice(0, n)), ("negative", slice(n, 2 * n))):
            plots.cam_grid(overlays[part], titles(part), tmp / f"{label}.png",
                           f"Grad-CAM toward class {cls}: {label} {cfg.split} cases — {name}",
                           outlines=None if masks is None else masks[part])
            for r, img, t in zip(rows[part], overlays[part], titles(part)):
                plots.single_overlay(img, tmp / "cases" / f"{label}-{_safe(ds.ids[r])}.png", t)
            if compare_cells:
                cells = [[overlays[i]] + [c[0][i] for c in compare_cells] for i in range(part.start, part.stop)]
                plots.compare_grid(cells, [str(ds.ids[r]) for r in rows[part]],
                                   [f"{run.name}\n{name}"] + [c[1] for c in compare_cells],
                                   tmp / f"compare-{label}.png", f"Grad-CAM, {label} cases, side by side")
        with atomic_path(tmp / "cams.npz") as p:
            with open(p, "wb") as fh:
                np.savez_compressed(fh, ids=ds.ids[rows].astype(str), labels=ds.labels[rows], cams=cams.astype(np.float16),
                                    probs=probs)
        write_json(tmp / SUMMARY_FILE, summary)
        rundir.mark_complete(tmp, {"stage": name, "cases": int(len(rows))})
    run.record_command(f"explain gradcam-{name}", opts.argv)
    return CamReport(run.name, name, final, ex.describe("gradcam"), summary)


def _cams_of_other(other, stage, ds, rows, target, cfg, opts, device, masks, region, n):
    """CAMs of another run's model for the same patients (matched by id)."""
    from amfmedit.data import load_prepared

    ex = load_explained(other, stage, device)
    ods = load_prepared(other.data, other.data_dir if opts.data_dir is None else opts.data_dir)
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
    cams, probs = grad_cams(ex.model, ods, o_rows, target=target, device=device, batch_size=cfg.batch_size)
    out = {"run": other.name, "stage": stage, "model": ex.describe("gradcam"),
           "probability": {"positive": [float(p) for p in probs[:n]], "negative": [float(p) for p in probs[n:]]}}
    if masks is not None:
        out["region"] = {"positive": region_summary(cams[:n], masks[:n], region),
                         "negative": region_summary(cams[n:], masks[n:], region)}
    return cams, out


def _safe(text) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text))[:80]
