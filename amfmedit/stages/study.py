"""``study``: the paper's whole study on a prepared cohort, planned, timed, resumable, reported.

A study is a folder ``<runs>/<name>/``::

    study.json      the resolved settings and the plan (steps, estimates, what the budget changed)
    plan.md         the plan a person reads: every step, its command, its estimated time
    progress.jsonl  one line per step that ended: seconds it took, done / failed / skipped
    runs/<encoder>/ one ordinary amfmedit run per pretrained tabular encoder (the first holds the
                    supervised models, the experiments and the explanations)
    report.md, report.html   every table and figure of the study, html self-contained

It adds no training code: every step calls the stage a command would (``pretrain``, ``rconf``,
``finetune`` with its experiment expansions, ``evaluate``, ``explain``), with the same settings
(:mod:`amfmedit.stages.study_plan` builds them) and the equivalent command line recorded in the run.
A second call skips the steps that finished and resumes the one that was interrupted (``kill -9``
included: stages write atomic checkpoints and resume bit for bit on the CPU). A step that fails is
reported with its command, and the steps that depend on it are skipped; the others go on.
"""

from __future__ import annotations

import json
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from amfmedit.errors import UserError
from amfmedit.io import read_json, write_json, write_text
from amfmedit.paths import runs_dir
from amfmedit.stages import study_plan as plan_mod
from amfmedit.stages.common import RunOptions
from amfmedit.stages.study_plan import Step, StudyConfig, StudyPlan
from amfmedit.stages.study_report import write_study_report

STUDY_FILE = "study.json"
PLAN_FILE = "plan.md"
PROGRESS_FILE = "progress.jsonl"

#: ``line(text)``: how progress reaches the person (the CLI prints each line; the library stays silent)
Line = Callable[[str], None]


@dataclass
class StudyResult:
    folder: Path
    plan: StudyPlan
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # step id -> one line: the command and the error
    skipped: dict[str, str] = field(default_factory=dict)  # step id -> why
    dropped: list[str] = field(default_factory=list)  # optional steps left out at run time to keep to the budget
    report: Path | None = None
    html: Path | None = None
    seconds: float = 0.0


def study_folder(name: str, runs_root: str | None) -> Path:
    return runs_dir(runs_root) / name


def prepare_plan(cfg: StudyConfig, opts: RunOptions, *, line: Line = lambda s: None) -> tuple[Path, StudyPlan]:
    """The study's folder and plan: read back when the study exists (so a second call does what the
    first planned), else built, timed by a pilot and fitted to the budget, and written first."""
    cfg.validate()
    folder = study_folder(cfg.folder_name, opts.runs_dir)
    saved = folder / STUDY_FILE
    if saved.is_file():
        rec = read_json(saved, hint=f"remove {folder} to plan the study anew")
        old = StudyConfig.from_dict(rec["config"])
        if old.plan_key() != cfg.plan_key():
            raise UserError(f"{folder}: a study of this name was planned with other settings; give another --name, "
                            f"or remove the folder to plan it anew")
        return folder, StudyPlan.from_dict(rec["plan"])
    plan = plan_mod.build_plan(cfg, opts, line=line)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(saved, {"config": cfg.to_dict(), "plan": plan.to_dict()})
    write_text(folder / PLAN_FILE, plan.markdown(cfg))
    return folder, plan


def run_study(cfg: StudyConfig, opts: RunOptions, *, line: Line = lambda s: None, dry_run: bool = False) -> StudyResult:
    """Plan (or read back the plan), then run every step not yet finished and write the report."""
    t0 = time.perf_counter()
    folder, plan = prepare_plan(cfg, opts, line=line)
    res = StudyResult(folder, plan)
    if dry_run:
        return res
    finished = _finished_steps(folder)
    spent_before = _spent(folder)  # earlier calls of an interrupted study
    budget_left = plan.total_estimate()
    elapsed_study = 0.0
    ratio = 1.0  # measured / estimated time of the steps run so far: corrects the remaining estimate
    for i, step in enumerate(plan.steps):
        blocked = [d for d in step.after if (d in res.failed or d in res.skipped) and d not in res.dropped]
        if blocked:
            why = f"depends on {', '.join(blocked)}, which did not finish"
            res.skipped[step.id] = why
            _record(folder, step, "skipped", 0.0, why)
            line(f"[skip] {step.title}: {why}")
            continue
        if step.id in finished and plan_mod.is_done(step, folder, opts):
            res.done.append(step.id)
            budget_left -= step.estimate_s
            continue
        why = _over_budget(plan, i, finished, spent_before + time.perf_counter() - t0, ratio)
        if why:  # the whole rest of the arm goes, as the plan drops arms (its dependents run without it)
            for later in plan.steps[i:]:
                if later.arm == step.arm and later.id not in finished:
                    res.skipped[later.id] = why
                    res.dropped.append(later.id)
            _record(folder, step, "skipped", 0.0, why)
            line(f"[skip] {step.title} and the rest of its arm: {why}")
            budget_left -= step.estimate_s
            continue
        if step.id in res.dropped:
            _record(folder, step, "skipped", 0.0, res.skipped[step.id])
            budget_left -= step.estimate_s
            continue
        # short lines (80 columns): the step's number ties its "done" line to its title
        tag = f"{len(res.done) + len(res.failed) + len(res.skipped) + 1}/{len(plan.steps)}"
        line(f"[{tag}] {step.title} (~{_duration(step.estimate_s * ratio)}; ~{_duration(budget_left * ratio)} left)")
        start = time.perf_counter()
        try:
            with warnings.catch_warnings(record=True) as caught:  # a stage's warnings, as one line each
                warnings.simplefilter("always")
                plan_mod.execute(step, folder, opts, cfg)
            for w in _unique(caught):
                line(f"warning: {w}")
        except UserError as exc:
            res.failed[step.id] = f"`{step.command}`: {exc}"
        except Exception as exc:  # noqa: BLE001 - a broken step must not stop the steps that do not need it
            res.failed[step.id] = f"`{step.command}`: {type(exc).__name__}: {exc}"
            write_text(folder / f"failed-{step.id}.txt", traceback.format_exc())
        took = time.perf_counter() - start
        elapsed_study += took
        budget_left -= step.estimate_s
        if step.id in res.failed:
            _record(folder, step, "failed", took, res.failed[step.id])
            line(f"[fail] {step.title} after {_duration(took)}: {res.failed[step.id]}")
            continue
        res.done.append(step.id)
        _record(folder, step, "done", took)
        if step.estimate_s > 0:
            ratio = max(0.25, min(4.0, (ratio + took / step.estimate_s) / 2))
        line(f"[{tag} done] in {_duration(took)}; {_duration(time.perf_counter() - t0)} in all, "
             f"about {_duration(max(budget_left, 0) * ratio)} left")
    res.report, res.html = write_study_report(folder, plan, cfg, opts, failed=res.failed, skipped=res.skipped)
    res.seconds = time.perf_counter() - t0
    return res


def _unique(caught) -> list[str]:
    """The text of each caught warning once, in order (stages repeat theirs per seed)."""
    return list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, UserWarning)))


def _finished_steps(folder: Path) -> set[str]:
    path = folder / PROGRESS_FILE
    if not path.is_file():
        return set()
    done = set()
    for text in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(text)
        except json.JSONDecodeError:  # a line cut by a kill: that step did not end
            continue
        if rec.get("status") == "done":
            done.add(rec["step"])
    return done


def _spent(folder: Path) -> float:
    """Seconds the steps of earlier calls took (progress.jsonl)."""
    path = folder / PROGRESS_FILE
    total = 0.0
    for text in path.read_text(encoding="utf-8").splitlines() if path.is_file() else []:
        try:
            total += float(json.loads(text).get("seconds", 0.0))
        except (json.JSONDecodeError, TypeError, ValueError):
            continue
    return total


def _over_budget(plan: StudyPlan, i: int, finished: set[str], spent: float, ratio: float) -> str | None:
    """Why step ``i``, an optional arm's, is left out at run time, or None to run it.

    The plan fits the budget with the pilot's timings; when the steps so far ran slower than planned (``ratio``,
    measured / estimated: another job on the machine, a pilot taken at another load), the steps still to run,
    corrected by it, may no longer fit in what is left. Optional arms then go, so that the core steps, evaluate
    and the report, still finish within the budget."""
    step = plan.steps[i]
    if not plan.budget_s or step.arm == "core":
        return None
    rest = sum(s.estimate_s for s in plan.steps[i:] if s.id not in finished) * ratio
    if spent + rest <= plan.budget_s:
        return None
    return (f"budget: {_duration(spent)} spent of {_duration(plan.budget_s)}, the remaining steps need about "
            f"{_duration(rest)} at the pace measured so far ({ratio:.2f} x the plan)")


def _record(folder: Path, step: Step, status: str, seconds: float, note: str = "") -> None:
    with open(folder / PROGRESS_FILE, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"step": step.id, "status": status, "seconds": round(seconds, 2),
                             "estimate_s": round(step.estimate_s, 2), "note": note}) + "\n")


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
