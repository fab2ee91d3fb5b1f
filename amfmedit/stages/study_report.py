"""A study's report: ``report.md`` beside its runs and ``report.html``, one self-contained file
(figures embedded as data URIs) that opens in a browser without the run folders.

Everything is read from the study's runs: the plan and what happened to each step, the paper's
Table 2 over every pretrained encoder (from each run's ``evaluate/metrics.json``), then each run's
``results.md`` (Tables 1, 4, 5, 6 and every metric with its interval, operating points,
calibration, paired comparisons) with its figures, and the explanations (IG: Figs. 4-5, Grad-CAM:
Fig. 6), and each run's ``report.md`` sections of data and training.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

import markdown

from amfmedit.io import read_json, write_text
from amfmedit.stages import names
from amfmedit.stages.tables import table2_markdown

REPORT_MD, REPORT_HTML = "report.md", "report.html"
_LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")


def _rebase(markdown: str, base: str) -> str:
    """Links of a page written inside ``base`` (a folder relative to the study) made relative to the study."""

    def fix(m: re.Match) -> str:
        target = m.group(2)
        if re.match(r"^[a-z]+:", target) or target.startswith(("#", "/")):
            return m.group(0)
        return f"{m.group(1)}{base}/{target}{m.group(3)}"

    return _LINK.sub(fix, markdown)


def _demote(markdown: str, levels: int = 1) -> str:
    return re.sub(r"^(#+) ", lambda m: "#" * min(6, len(m.group(1)) + levels) + " ", markdown, flags=re.M)


def _status_table(plan, failed: dict, skipped: dict, progress: dict) -> str:
    lines = ["| # | Step | Status | Time | Estimate |", "|--:|---|---|--:|--:|"]
    for i, s in enumerate(plan.steps, 1):
        status = ("failed: " + failed[s.id]) if s.id in failed else ("skipped: " + skipped[s.id]) if s.id in skipped \
            else ("done" if s.id in progress else "not run")
        took = progress.get(s.id)
        lines.append(f"| {i} | {s.title} | {status.replace('|', '/')} | "
                     f"{'-' if took is None else f'{took:.0f} s'} | {s.estimate_s:.0f} s |")
    return "\n".join(lines) + "\n"


def _progress(folder: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    path = folder / "progress.jsonl"
    if path.is_file():
        for text in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(text)
            except json.JSONDecodeError:
                continue
            if rec.get("status") == "done":
                out[rec["step"]] = float(rec.get("seconds", 0.0))
    return out


def build_markdown(folder: Path, plan, cfg, *, failed: dict, skipped: dict) -> str:
    runs = folder / "runs"
    progress = _progress(folder)
    parts = [f"# Study `{cfg.folder_name}`\n\n"
             f"Data `{plan.data}`; {len(plan.steps)} steps, {plan.n_trainings()} training runs, pretraining "
             f"{plan.pretrain_epochs} epochs, fine-tuning up to {plan.finetune_epochs} epochs, seeds "
             f"{', '.join(map(str, plan.seeds))}. The plan with every command: [plan.md](plan.md). Each number "
             "below comes with its 95% interval where the run has one (see each run's results).\n\n"]
    if plan.notes:
        parts.append("".join(f"- {n}\n" for n in plan.notes) + "\n")
    parts.append("## Steps\n\n" + _status_table(plan, failed, skipped, progress) + "\n")
    groups, metric, oracle = [], "auc", None
    for enc in cfg.encoders:
        path = runs / enc / names.EVALUATE / names.EVAL_METRICS_FILE
        if path.is_file():
            m = read_json(path)
            metric, oracle = m.get("metric", metric), oracle if oracle is not None else m.get("oracle_auc")
            groups += [g for g in m.get("groups", []) if g.get("kind") == "fusion" and not g.get("mask")
                       and not any(v not in (None, (), [], "") for k, v in (g.get("variant") or {}).items())]
    if groups:
        parts.append("## Fusion methods across tabular encoders (Table 2)\n\nMean ± SD over seeds (%), test split; "
                     "every pretrained encoder's run side by side.\n\n"
                     + table2_markdown(groups, metric=metric, oracle=oracle) + "\n")
    for enc in cfg.encoders:
        run = runs / enc
        results = run / names.EVALUATE / names.RESULTS_FILE
        parts.append(f"## Run `{enc}`\n\n")
        if results.is_file():
            text = results.read_text(encoding="utf-8")
            text = text.split("\n", 1)[1] if text.startswith("# ") else text  # its title is this section's
            parts.append(_demote(_rebase(text, f"runs/{enc}/{names.EVALUATE}"), 2) + "\n")
        else:
            parts.append("_No evaluation in this run (see the steps above)._\n\n")
        report = run / "report.md"
        if report.is_file():
            text = report.read_text(encoding="utf-8")
            keep = [sec for sec in re.split(r"(?m)^(?=## )", text) if sec.startswith(("## 1.", "## 2.", "## 3.", "## 5.",
                                                                                     "## Warnings"))]
            if keep:
                parts.append(f"### Data, training and explanations of run `{enc}`\n\n"
                             + _demote(_rebase("".join(keep), f"runs/{enc}"), 2) + "\n")
    return "".join(parts)


def _embed(html_text: str, folder: Path) -> str:
    """Every local image as a data URI; links to local files other than images are left as text."""

    def img(m: re.Match) -> str:
        src = html.unescape(m.group(2))
        path = (folder / src).resolve()
        if not path.is_file() or folder.resolve() not in path.parents:
            return m.group(0)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        return f'{m.group(1)}data:image/png;base64,{data}{m.group(3)}'

    return re.sub(r'(<img[^>]*\ssrc=")([^"]+)(")', img, html_text)


STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #ccc;
padding:.3em .6em;vertical-align:top}th{background:#f3f3f3}tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.5em 0}code{background:#f4f4f4;padding:0 .2em}
blockquote{border-left:4px solid #ddd;margin:1em 0;padding:.2em 1em;color:#444}h1,h2,h3{line-height:1.2}"""


def to_html(markdown_text: str, folder: Path, title: str) -> str:
    body = markdown.markdown(markdown_text, extensions=["tables", "fenced_code"])
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{_embed(body, folder)}</body></html>\n")


def write_study_report(folder: Path, plan, cfg, opts, *, failed: dict, skipped: dict) -> tuple[Path, Path]:
    """Write ``report.md`` and the self-contained ``report.html`` of the study in ``folder``."""
    md = build_markdown(folder, plan, cfg, failed=failed, skipped=skipped)
    write_text(folder / REPORT_MD, md)
    write_text(folder / REPORT_HTML, to_html(md, folder, f"Study {cfg.folder_name}"))
    return folder / REPORT_MD, folder / REPORT_HTML
