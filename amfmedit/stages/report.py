"""``<run>/report.md``: one page a person reads top to bottom.

Data summary, pretraining curves, R_conf, the fine-tuning results table (the Table-2 layout of
:func:`amfmedit.stages.tables.table2_markdown`, from ``evaluate``), the incomplete-data drops,
the IG top-10 and the CAM examples. Every figure is a PNG linked by a path relative to the
run folder. A stage that has not run yet is one line naming the command that produces it.

Written by ``amfmedit report`` and refreshed at the end of every stage
(:func:`refresh_report`, called by :func:`amfmedit.stages.lifecycle.finish_stage`); drawing the pretraining curves is the only computation here,
everything else is read from the stage folders.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

from amfmedit.data.prepared import dataset_path
from amfmedit.data.schema import SCHEMA_FILE
from amfmedit.errors import UserError
from amfmedit.explain.ig import SUMMARY_FILE, TOP_FILE, IGTruth
from amfmedit.explain.plots import training_curves
from amfmedit.io import read_json, write_text
from amfmedit.stages import names
from amfmedit.stages.sanity import stage_warnings
from amfmedit.stages.tables import incomplete_markdown, table2_markdown
from amfmedit.train import rundir

REPORT_FILE = "report.md"
ASSETS = "report_files"  # figures drawn for the report itself (the others live in stage folders)


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _img(path: Path, root: Path, alt: str) -> str:
    return f"![{alt}]({_rel(path, root)})\n" if path.is_file() else ""


def _todo(text: str) -> str:
    return f"_Not run yet: {text}._\n\n"


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue  # a line being appended right now
    return out


def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


# ----------------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------------


def _data_section(run: rundir.Run) -> str:
    out = ["## 1. Data\n\n"]
    try:
        root = dataset_path(run.data, run.data_dir)
    except UserError as exc:
        return "".join(out) + f"The prepared dataset is not where the run recorded it ({exc}).\n"
    schema = read_json(root / SCHEMA_FILE)
    prov = read_json(root / "provenance.json") if (root / "provenance.json").is_file() else {}
    n_cont = sum(f["kind"] == "continuous" for f in schema["features"])
    img = schema["image"]
    out.append(f"Prepared dataset `{root}`: task {schema['task']} ({len(schema['class_names'])} classes), "
               f"{len(schema['features'])} tabular features ({n_cont} continuous, {len(schema['features']) - n_cont} "
               f"categorical), images {img['channels']} × {img['height']} × {img['width']} ({img['modality']}).\n\n")
    counts = prov.get("counts") or {}
    if counts:
        classes = list(next(iter(counts.values()))["classes"])
        shown = classes if len(classes) <= 6 else classes[:5]
        out.append("| split | rows | " + " | ".join(f"class {c}" for c in shown) + (" | … |" if len(classes) > 6 else " |")
                   + "\n")
        out.append("|---|---:|" + "---:|" * len(shown) + ("---|" if len(classes) > 6 else "") + "\n")
        for s, rec in counts.items():
            cells = [str(rec["classes"].get(c, 0)) for c in shown]
            out.append(f"| {s} | {rec['rows']} | " + " | ".join(cells) + (" | … |" if len(classes) > 6 else " |")
                       + "\n")
        follow = {s: rec["follow_up"] for s, rec in counts.items() if rec.get("follow_up")}
        if follow:  # a time-to-event outcome: events, censoring and follow-up per split
            unit = (schema.get("target") or {}).get("time_unit") or ""
            out.append(f"\n| split | events | censored | median follow-up{f' ({unit})' if unit else ''} "
                       "(reverse Kaplan-Meier) |\n|---|---:|---:|---:|\n")
            for s, f in follow.items():
                med = f.get("median_follow_up")
                out.append(f"| {s} | {f['events']} | {f['censored']} | {'—' if med is None else f'{med:.3g}'} |\n")
    syn = prov.get("synthetic")
    if syn:
        oracle = syn.get("oracle") or {}
        parts = [f"{k} {oracle[k]:.3f}" for k in ("train", "val", "test", "tabular_only", "image_only")
                 if isinstance(oracle.get(k), (int, float))]
        out.append(f"\nSynthetic cohort ({syn.get('generator')}, seed {syn.get('seed')}): oracle "
                   f"{oracle.get('metric', 'auc').upper()} from the true risk: {', '.join(parts) or '—'}.")
        if syn.get("informative_features"):
            out.append(f" Informative features: {', '.join(f'`{n}`' for n in syn['informative_features'])}.")
        signal = syn.get("image_signal") or {}
        if signal.get("region"):
            out.append(f" Image signal: {signal.get('property')} (region `{signal['region']}`).")
        out.append("\n")
    return "".join(out)


def _pretrain_section(run: rundir.Run) -> str:
    out = ["## 2. Contrastive pretraining\n\n"]
    stage = run.stage(names.PRETRAIN)
    history = _jsonl(stage / rundir.METRICS_FILE)
    if not history:
        return "".join(out) + _todo(f"`amfmedit pretrain --data {run.data}`")
    cfg = read_json(stage / rundir.CONFIG_FILE).get("config", {}) if (stage / rundir.CONFIG_FILE).is_file() else {}
    state = "finished" if run.is_complete(names.PRETRAIN) else "unfinished (continue with `amfmedit pretrain --resume`)"
    best = min((h for h in history if isinstance(h.get("val_loss"), (int, float))), key=lambda h: h["val_loss"],
               default=None)
    out.append(f"ResNet ({cfg.get('image_arch', '?')}) + {cfg.get('tabular_encoder', '?')} with the ITC loss; "
               f"{len(history)} of {cfg.get('epochs', '?')} epochs, {state}.")
    if best:
        out.append(f" Lowest validation loss {best['val_loss']:.4f} at epoch {best['epoch']}; "
                   f"last {history[-1].get('val_loss', float('nan')):.4f}.")
    out.append("\n\n")
    marker = read_json(stage / rundir.MARKER) if run.is_complete(names.PRETRAIN) else {}
    chance = marker.get("chance_val_loss")
    batch = cfg.get("batch_size")
    png = training_curves(history, run.root / ASSETS / "pretrain_curves.png", f"Pretraining — run {run.name}",
                          chance=chance if isinstance(chance, (int, float)) else None,
                          chance_label=f"chance, log(batch {batch})" if batch else "chance")
    if png is not None:
        out.append(_img(png, run.root, "pretraining curves"))
    return "".join(out)


def _rconf_section(run: rundir.Run) -> str:
    out = ["## 3. Modality confidence R_conf\n\n"]
    folders = [p for p in sorted(run.root.glob(names.RCONF + "*")) if (p / rundir.MARKER).is_file() and (p / names.RCONF_FILE).is_file()]
    if not folders:
        return "".join(out) + _todo("`amfmedit rconf` (image-only and tabular-only probes on the frozen encoders)")
    if not run.is_complete(names.RCONF):
        out.append(_todo("`amfmedit rconf` on the complete table"))
    out.append("| stage | split | image (95% CI) | tabular (95% CI) | R_conf | L_img / L_tab (D_out) |\n"
               "|---|---|---:|---:|---:|---|\n")
    warned = []

    def probe(rec: dict, metric: str) -> str:
        iv = rec.get("interval") or {}
        text = f"{metric} {_fmt(rec['metric'])}"
        if iv.get("low") is not None:
            text += f" ({_fmt(iv['low'])}–{_fmt(iv['high'])})" + ("" if iv.get("informative") else " ⚠")
        return text

    for p in folders:
        r = read_json(p / names.RCONF_FILE)
        metric = r.get("metric", "auc").upper()
        out.append(f"| {p.name} | {r.get('split')} | {probe(r['image'], metric)} | {probe(r['tabular'], metric)} | "
                   f"{_fmt(r.get('r_conf'))} | {r.get('L_img')} / {r.get('L_tab')} ({r.get('d_out')}) |\n")
        warned += [(p.name, w) for w in r.get("warnings") or []]
    if warned:
        out.append("\n" + "".join(f"> **Warning** ({name}): {w}.\n>\n" for name, w in warned).rstrip(">\n") + "\n")
    return "".join(out)


def _ci(iv: dict | None) -> str:
    if not iv or not math.isfinite(iv.get("estimate", math.nan)):
        return "n/a"
    return f"{iv['estimate']:.3f} ({iv['low']:.3f}–{iv['high']:.3f})"


def _interval_lines(m: dict, ev: Path, root: Path) -> str:
    """Per model: the headline metric with its 95% interval and the operating point chosen on validation."""
    lines = []
    for g in m.get("groups", []):
        ivs = g.get("intervals")
        if ivs is None:  # an evaluation written before intervals existed
            continue
        thr = g.get("threshold") or {}
        if "auc" in ivs or "sensitivity" in ivs or thr.get("value") is not None:
            line = (f"- {g['title']}: AUC {_ci(ivs.get('auc'))}; at the threshold chosen on validation "
                    f"({thr.get('name')}, {_fmt(thr.get('value'), 3)}): sensitivity {_ci(ivs.get('sensitivity'))}, "
                    f"specificity {_ci(ivs.get('specificity'))}")
        else:
            line = f"- {g['title']}: top-1 accuracy {_ci(ivs.get('acc'))}"
        lines.append(line + "\n")
    if not lines:
        return ""
    text = ("\nSeed-averaged prediction, 95% intervals (DeLong for AUC, stratified bootstrap otherwise):\n\n"
            + "".join(lines))
    note = (m.get("comparisons") or {}).get("note")
    if note:
        text += f"\n{note}\n"
    for w in m.get("warnings", []):
        text += f"\n- Warning: {w}"
    text += "\n" if m.get("warnings") else ""
    figures = m.get("figures") or {}
    words = {"roc": "ROC", "pr": "precision-recall", "decision": "decision curve"}
    links = [f"[{words[k]}](evaluate/{v})" for k, v in figures.items() if k in words and (ev / v).is_file()]
    rel = [f"[{k.split(':', 1)[1]}](evaluate/{v})" for k, v in figures.items()
           if k.startswith("reliability:") and (ev / v).is_file()]
    comp = ev / "comparisons.md"
    if comp.is_file():
        links.append(f"[paired comparisons]({_rel(comp, root)})")
    if links:
        text += "\nFigures and tables: " + ", ".join(links) + ".\n"
    if rel:
        text += "\nReliability diagrams: " + ", ".join(rel) + ".\n"
    return text


def _finetune_section(run: rundir.Run) -> str:
    out = ["## 4. Fine-tuning and evaluation\n\n"]
    stages = names.classifier_stages(run)
    ev = run.stage(names.EVALUATE)
    if run.is_complete(names.EVALUATE) and (ev / names.EVAL_METRICS_FILE).is_file():
        m = read_json(ev / names.EVAL_METRICS_FILE)
        groups = m.get("groups", [])
        # Table 2: no masked group, sweep member, ablation row or label fraction (those have tables of their own)
        complete = [g for g in groups if not g.get("mask")
                    and not names.is_variant({**(g.get("variant") or {}), "encoder": None})]
        out.append(f"Test metric: {m['metric'].upper()} on the {m['split']} split, mean ± std over seeds (%), "
                   f"from [`evaluate/{names.RESULTS_FILE}`](evaluate/{names.RESULTS_FILE}).\n\n")
        out.append(table2_markdown(complete, metric=m["metric"], oracle=m.get("oracle_auc")))
        masked = incomplete_markdown(groups, metric=m["metric"])
        if masked:
            out.append("\n**Incomplete tabular data** (Table 4 layout; drop = complete − masked, points):\n\n")
            out.append(masked)
        out.append(_interval_lines(m, ev, run.root))
        rocs = sorted((ev / "roc").glob("*.png")) if (ev / "roc").is_dir() else []
        if rocs:
            out.append("\nROC curves per seed: " + ", ".join(f"[{p.stem}]({_rel(p, run.root)})" for p in rocs) + "\n")
        evaluated = {s["stage"] for s in m.get("stages", [])}
        newer = sorted(set(stages) - evaluated)
        if newer:
            out.append(f"\n{len(newer)} stage(s) finished after this evaluation ({', '.join(newer)}); "
                       "refresh with `amfmedit evaluate`.\n")
        return "".join(out)
    if not stages:
        return "".join(out) + _todo("`amfmedit finetune --fusion amf` (and other fusions / `--fusion none` baselines), "
                                     "then `amfmedit evaluate`")
    out.append("| stage | lr | best epoch | best validation |\n|---|---:|---:|---:|\n")
    for name in stages:
        rec = read_json(run.stage(name) / rundir.MARKER)
        lr = rec.get("lr")
        out.append(f"| {name} | {'—' if lr is None else format(lr, 'g')} | {rec.get('best_epoch', '—')} | "
                   f"{_fmt(rec.get('best_val'))} |\n")
    out.append("\n" + _todo("`amfmedit evaluate` (test metrics in the Table-2 layout)"))
    return "".join(out)


def _explain_section(run: rundir.Run) -> str:
    out = ["## 5. Explanations\n\n"]
    reports = names.ig_reports(run)
    if not reports:
        out.append("### Integrated Gradients\n\n" + _todo("`amfmedit explain --method ig` (tabular feature importance)"))
    for stage, folder in reports.items():
        s = read_json(folder / SUMMARY_FILE)
        out.append(f"### Integrated Gradients — {stage}\n\n{s['model']}; {s['n_samples']} {s['split']} samples, "
                   f"{s['steps']} steps, baseline: training-set mean.\n\n")
        top = (folder / TOP_FILE).read_text(encoding="utf-8")
        table = [line for line in top.splitlines() if line.startswith("|")]
        out.append("\n".join(table) + "\n\n")
        c = s["completeness"]
        out.append(f"Completeness: mean |Σ attributions − (f(x) − f(baseline))| = {c['mean_abs_delta']:.3g} "
                   f"(relative to mean |f(x) − f(baseline)|: {c['relative']:.3g}).")
        syn = s.get("synthetic")
        if syn:
            out.append(f" Ground truth: {IGTruth.from_dict(syn).sentence()}.")
        out.append(f" All features: [`importance.csv`]({_rel(folder / 'importance.csv', run.root)}).\n\n")
        for png, alt in (("importance_distribution.png", "importance over all features (Fig. 4)"),
                         ("top_features.png", "top features"), ("groups.png", "importance by category (Fig. 5a)")):
            out.append(_img(folder / png, run.root, alt))
        out.append("\n")
    cams = list(names.cam_reports(run).values())
    if not cams:
        out.append("### Grad-CAM\n\n" + _todo("`amfmedit explain --method gradcam` (CAM overlays of test cases)"))
    for folder in cams:
        s = read_json(folder / SUMMARY_FILE)
        groups = list(s["cases"])  # the prediction kind's two case groups (positive / negative for classification)
        out.append(f"### Grad-CAM — {s['stage']}\n\n{s['model']}; toward {s['target']['name']}, "
                   + " and ".join(f"{len(s['cases'][g])} {g}" for g in groups) + f" {s['split']} cases.\n\n")
        if "region" in s:
            out.append(_region_table(s, groups))
        for g in groups:
            out.append(_img(folder / f"{g}.png", run.root, f"{g} cases"))
        for g in groups:
            out.append(_img(folder / f"compare-{g}.png", run.root, f"{g} cases, runs side by side"))
        out.append("\n")
    return "".join(out)


def _region_table(s: dict, groups: list[str]) -> str:
    region = s["region"][groups[0]]["region"]
    lines = [f"Share of the CAM heat inside the generator's signal region `{region}` against the region's share "
             "of the image (mean over cases; a map spread evenly would put the area share there):\n\n",
             "| run | cases | heat in region | region area | ratio | verdict |\n|---|---|---:|---:|---:|---|\n"]
    texts = []
    for name, rec in [(s["run"], s)] + [(c["run"], c) for c in s.get("compare", [])]:
        for part in groups:
            r = rec["region"][part]
            lines.append(f"| {name} | {part} | {_pct(r['cam_mass_in_region'])} | {_pct(r['region_area_share'])} | "
                         f"{_fmt(r['enrichment'], 2)} | {r.get('verdict', '—')} |\n")
            if r.get("verdict_text"):
                texts.append(f"- {name}, {part} cases: {r['verdict_text']}.\n")
    return "".join(lines) + "\n" + "".join(texts) + ("\n" if texts else "")


def _pct(v) -> str:
    return "—" if not isinstance(v, (int, float)) or not math.isfinite(v) else f"{100 * v:.1f}%"


def _warnings_section(run: rundir.Run) -> str:
    found = stage_warnings(run)
    if not found:
        return ""
    lines = ["## Warnings\n\nThe stages checked themselves against a model that learned nothing:\n\n"]
    for stage, warns in found.items():
        lines += [f"- **{stage}**: {w}\n" for w in warns]
    return "".join(lines)


def _commands_section(run: rundir.Run) -> str:
    cmds = run.info.get("commands", [])
    if not cmds:
        return ""
    # one command line that ran several stages (e.g. --fusion concat --fusion amf) is listed once
    argvs = [c.get("argv", "") for c in cmds]
    shown = [a for i, a in enumerate(argvs) if i == 0 or a != argvs[i - 1]]
    lines = ["## Commands\n\n```\n"] + [f"{a}\n" for a in shown] + ["```\n"]
    return "".join(lines)


def build_report(run: rundir.Run) -> str:
    """The markdown of ``run``'s report (no file written except the pretraining-curve PNG)."""
    info = run.info
    head = (f"# Run `{run.name}`\n\nData `{info.get('data')}`, started {str(info.get('created', ''))[:19]}. "
            "Sections follow the pipeline: data → pretraining → R_conf → fine-tuning → explanations. "
            "Regenerate with `amfmedit report`.\n\n")
    sections = [_warnings_section(run), _data_section(run), _pretrain_section(run), _rconf_section(run), _finetune_section(run),
                _explain_section(run), _commands_section(run)]
    return head + "\n".join(s for s in sections if s)


def write_report(run: rundir.Run) -> Path:
    """Write ``<run>/report.md`` (atomically) and return its path."""
    path = run.root / REPORT_FILE
    write_text(path, build_report(run))
    return path


def refresh_report(run_root: str | Path) -> Path | None:
    """Rewrite the report at the end of a stage; a failure here never fails the stage (it warns)."""
    try:
        return write_report(rundir.Run(Path(run_root)))
    except Exception as exc:  # noqa: BLE001 - the stage's own results are already safe on disk
        warnings.warn(f"{Path(run_root) / REPORT_FILE} not refreshed ({type(exc).__name__}: {exc}); "
                      "run `amfmedit report` to retry", RuntimeWarning, stacklevel=2)
        return None
