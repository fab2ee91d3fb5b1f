"""``amfmedit study``: the plan, the budget, a failure that spares what does not depend on it, the
report, and a study killed with SIGKILL that ends as an uninterrupted one."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from amfmedit.stages import study as study_mod
from amfmedit.stages import study_plan as plan_mod
from amfmedit.stages.common import RunOptions
from amfmedit.stages.study_plan import Sizes, StudyConfig

TINY = dict(encoders=("mlp",), fusions=("concat",), strategies=("frozen",), seeds=(2022, 2023),
            supervised=("tabular",), table1=("mlp",), rconf_sweep=(), rconf_auto=False, ablation=False,
            explain=("ig",), pretrain_epochs=2, finetune_epochs=2, ig_samples=16, recipe="cpu")


def _fake_pilot(seconds: float = 0.1):
    def pilot(cfg, opts, pcfg, recipe):
        shapes = [f"pretrain:{e}" for e in cfg.encoders]
        shapes += [f"finetune:{e}:{f}:{s}" for e in cfg.encoders for f in cfg.fusions for s in cfg.strategies]
        shapes += ["supervised:image:-"] + [f"supervised:tabular:{e}" for e in {cfg.encoders[0], *cfg.table1}]
        timings = {k: seconds for k in shapes} | {f"eval:{k}": seconds / 3 for k in shapes}
        if cfg.baselines:  # one fit of each estimator, and the size of its validation grid
            timings |= {"baseline:linear": seconds, "baseline:linear:grid": 5.0, "baseline:linear:seeded": 0.0,
                        "baseline:trees": seconds, "baseline:trees:grid": 8.0, "baseline:trees:seeded": 1.0}
        return timings, Sizes(512, 128, 160, 64, 64, 1)
    return pilot


def test_the_plan_fits_a_budget_and_says_what_it_changed(tiny_ol3i, tmp_path, monkeypatch):
    monkeypatch.setattr(plan_mod, "pilot", _fake_pilot(0.5))
    opts = RunOptions(runs_dir=str(tmp_path / "runs"), data_dir=str(tiny_ol3i.data_dir))
    full = plan_mod.build_plan(StudyConfig(data=tiny_ol3i.name, recipe="cpu"), opts)
    assert full.pretrain_epochs == 20 and full.seeds == (2022, 2023, 2024, 2025, 2026)
    kinds = [s.kind for s in full.steps]
    assert kinds.index("pretrain") < kinds.index("rconf") < kinds.index("finetune") < kinds.index("evaluate")
    assert {"rconf_sweep", "ablation", "ig"} <= set(kinds)
    assert "gradcam" not in kinds and any("Grad-CAM left out" in n for n in full.notes)  # 32 px images
    budget = full.total_estimate() / 4
    fitted = plan_mod.build_plan(StudyConfig(data=tiny_ol3i.name, recipe="cpu", budget_s=budget), opts)
    assert fitted.total_estimate() <= plan_mod.SAFETY * budget
    assert any(n.startswith("budget: pretraining 20 -> ") for n in fitted.notes)  # epochs first ...
    assert any("dropped" in n for n in fitted.notes) or fitted.pretrain_epochs > plan_mod.MIN_PRETRAIN_EPOCHS
    for step in fitted.steps:  # nothing left waits on a dropped step
        assert set(step.after) <= {s.id for s in fitted.steps}
    tiny = plan_mod.build_plan(StudyConfig(data=tiny_ol3i.name, recipe="cpu", budget_s=1.0), opts)
    (note,) = [n for n in tiny.notes if "even the smallest study" in n]
    assert "--recipe cpu" not in note  # the study already uses it


def test_the_baselines_are_an_arm_after_fine_tuning_and_before_evaluate(tiny_ol3i, tmp_path, monkeypatch):
    monkeypatch.setattr(plan_mod, "pilot", _fake_pilot())
    opts = RunOptions(runs_dir=str(tmp_path / "runs"), data_dir=str(tiny_ol3i.data_dir))
    plan = plan_mod.build_plan(StudyConfig(data=tiny_ol3i.name, **TINY), opts)
    ids = [s.id for s in plan.steps]
    (step,) = [s for s in plan.steps if s.kind == "baseline"]
    assert ids.index("finetune-mlp-concat") < ids.index("baselines") < ids.index("evaluate-mlp")
    assert step.after == ["pretrain-mlp"] and "baselines" in plan.steps[ids.index("evaluate-mlp")].after
    assert step.command == "amfmedit baseline --run mlp --model logistic --model gbdt --model late-fusion --seeds 2022,2023"
    # 5 + 8 + 8 candidates (the chosen one's fit is the first seed's), one more fit for the second seed of each
    # tree model (the logistic regression is one model for every seed), 0.1 s a fit, and one pass of the frozen
    # encoder for late fusion
    assert (5 + 8 + 8 + 2) * 0.1 <= step.estimate_s < (5 + 8 + 8 + 3) * 0.1 + 1.0
    assert "Pilot of the baselines" in plan.markdown(StudyConfig(data=tiny_ol3i.name, **TINY))
    off = plan_mod.build_plan(StudyConfig(data=tiny_ol3i.name, **{**TINY, "baselines": ()}), opts)
    assert "baseline" not in {s.kind for s in off.steps}
    with pytest.raises(study_mod.UserError, match="baselines gbtd: not one of .*did you mean gbdt"):
        StudyConfig(data=tiny_ol3i.name, **{**TINY, "baselines": ("gbtd",)}).validate()


def test_dry_run_writes_the_plan_and_a_second_call_reads_it_back(tiny_ol3i, tmp_path, monkeypatch):
    monkeypatch.setattr(plan_mod, "pilot", _fake_pilot())
    opts = RunOptions(runs_dir=str(tmp_path / "runs"), data_dir=str(tiny_ol3i.data_dir))
    cfg = StudyConfig(data=tiny_ol3i.name, **TINY)
    res = study_mod.run_study(cfg, opts, dry_run=True)
    plan_md = (res.folder / "plan.md").read_text()
    assert res.folder == tmp_path / "runs" / f"{tiny_ol3i.name}-study"
    for step in res.plan.steps:
        assert f"`{step.command}`" in plan_md
    assert "amfmedit pretrain --data" in plan_md and "--seeds 2022,2023" in plan_md
    monkeypatch.setattr(plan_mod, "pilot", lambda *a: pytest.fail("a planned study is not piloted again"))
    again = study_mod.run_study(cfg, opts, dry_run=True)
    assert again.plan.to_dict() == res.plan.to_dict()
    with pytest.raises(Exception, match="planned with other settings"):
        study_mod.run_study(StudyConfig(data=tiny_ol3i.name, **{**TINY, "seeds": (1,)}), opts, dry_run=True)


def test_a_failed_step_skips_what_depends_on_it_and_the_rest_goes_on(tiny_ol3i, tmp_path, monkeypatch):
    monkeypatch.setattr(plan_mod, "pilot", _fake_pilot())
    ran = []

    def execute(step, folder, opts, cfg):
        ran.append(step.id)
        if step.kind == "rconf":
            raise study_mod.UserError("the probes broke")

    monkeypatch.setattr(plan_mod, "execute", execute)
    monkeypatch.setattr(study_mod, "write_study_report", lambda *a, **k: (None, None))
    opts = RunOptions(runs_dir=str(tmp_path / "runs"), data_dir=str(tiny_ol3i.data_dir))
    cfg = StudyConfig(data=tiny_ol3i.name, **{**TINY, "fusions": ("concat", "amf")})
    lines = []
    res = study_mod.run_study(cfg, opts, line=lines.append)
    assert res.failed == {"rconf-mlp": "`amfmedit rconf --run mlp --recipe cpu`: the probes broke"}
    assert "finetune-mlp-amf" in res.skipped and "finetune-mlp-concat" in res.done  # concat needs no R_conf
    assert "supervised-tabular" in res.done and "baselines" in res.done  # the baselines need no R_conf
    assert any(x.startswith("[fail] R_conf probes") for x in lines)
    progress = [json.loads(x) for x in (res.folder / "progress.jsonl").read_text().splitlines()]
    assert {p["step"]: p["status"] for p in progress}["rconf-mlp"] == "failed"


@pytest.mark.parametrize("slow", [1.0, 2.0])
def test_optional_arms_go_at_run_time_when_the_steps_run_slower_than_planned(tiny_ol3i, tmp_path, monkeypatch,
                                                                              slow):
    """The plan fits the budget; when every step then takes ``slow`` x its estimate (another job on the machine),
    the optional arms still to run are dropped, whole, and every core step still runs."""
    monkeypatch.setattr(plan_mod, "pilot", _fake_pilot())
    opts = RunOptions(runs_dir=str(tmp_path / "runs"), data_dir=str(tiny_ol3i.data_dir))
    arms = {**TINY, "fusions": ("concat", "amf"), "rconf_sweep": (0.5, 1.0), "ablation": True}
    full = plan_mod.build_plan(StudyConfig(data=tiny_ol3i.name, **arms), opts).total_estimate()
    cfg = StudyConfig(data=tiny_ol3i.name, **arms, budget_s=1.2 * full / plan_mod.SAFETY)
    clock = [0.0]
    monkeypatch.setattr(study_mod, "time", type("Clock", (), {"perf_counter": staticmethod(lambda: clock[0])}))
    ran = []

    def execute(step, folder, opts, cfg):
        ran.append(step.id)
        clock[0] += step.estimate_s * slow

    monkeypatch.setattr(plan_mod, "execute", execute)
    monkeypatch.setattr(study_mod, "write_study_report", lambda *a, **k: (None, None))
    lines = []
    res = study_mod.run_study(cfg, opts, line=lines.append)
    plan = res.plan
    assert not plan.notes[:-1]  # the plan itself fitted the budget unchanged (the last note is the pilot's time)
    core = [s.id for s in plan.steps if s.arm == "core"]
    optional = [s.id for s in plan.steps if s.arm != "core"]
    assert set(core) <= set(res.done) and len(optional) >= 3 and not res.failed
    if slow == 1.0:
        assert ran == [s.id for s in plan.steps] and not res.skipped
        return
    dropped = set(res.skipped)
    assert dropped and dropped <= set(optional) and all(v.startswith("budget: ") for v in res.skipped.values())
    for arm in {s.arm for s in plan.steps if s.id in dropped}:  # a dropped arm goes whole
        assert {s.id for s in plan.steps if s.arm == arm} <= dropped
    assert any(x.startswith("[skip] ") and "budget:" in x for x in lines)
    assert clock[0] < slow * plan.total_estimate()  # the study took less than it would have with every arm


def _study(runs: Path, data_dir: Path, *flags: str, kill_when=None, **changes) -> subprocess.CompletedProcess | None:
    """``amfmedit study --name s`` of TINY with ``changes``, its runs under ``runs``; killed with SIGKILL
    (and None returned) as soon as ``kill_when()`` holds."""
    cfg = runs.parent / f"{runs.name}.toml"
    cfg.write_text("[study]\n" + "\n".join(
        f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in {**TINY, **changes}.items()) + "\n")
    env = {**os.environ, "AMFMEDIT_RUNS": str(runs), "AMFMEDIT_DATA": str(data_dir)}
    cmd = [sys.executable, "-m", "amfmedit", "study", "--data", "synthetic-ol3i", "--config", str(cfg), "--name",
           "s", "--quiet", *flags]
    if kill_when is None:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not kill_when():
        time.sleep(0.2)
    assert proc.poll() is None, "the study ended before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return None


def _results(folder: Path) -> dict:
    m = json.loads((folder / "runs" / "mlp" / "evaluate" / "metrics.json").read_text())
    return {s["stage"]: (s["best_epoch"], s["val_metric"], s["auc"], s["brier"]) for s in m["stages"]}


@pytest.mark.slow
def test_a_study_killed_mid_training_ends_as_an_uninterrupted_one(tiny_ol3i, tmp_path):
    # one seed, one pretraining epoch, and the logistic baseline alone: the study's baseline step and its
    # results in evaluate are what is checked here (all three baselines are trained and evaluated in
    # test_stages_reviewer.py, and planned as one command in the baselines test above)
    small = dict(seeds=(2022,), pretrain_epochs=1, baselines=("logistic",))
    data = tiny_ol3i.data_dir
    planned = _study(tmp_path / "whole", data, "--dry-run", **small)
    assert planned.returncode == 0, planned.stderr[-2000:]
    shutil.copytree(tmp_path / "whole" / "s", tmp_path / "cut" / "s")  # the same plan read back: one pilot for both
    whole = _study(tmp_path / "whole", data, **small)
    assert whole.returncode == 0, whole.stderr[-2000:]
    folder = tmp_path / "cut" / "s"
    seed = folder / "runs" / "mlp" / "finetune-concat-frozen-seed2022"
    _study(tmp_path / "cut", data, kill_when=lambda: (seed / "metrics.jsonl").is_file(), **small)
    assert not (seed / "COMPLETE").exists()  # killed inside a training
    again = _study(tmp_path / "cut", data, **small)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _results(folder) == _results(tmp_path / "whole" / "s")
    assert "baseline-logistic-seed2022" in _results(folder)
    html = (folder / "report.html").read_text()
    assert "Table 2" in html and "<table>" in html
    assert not re.search(r'<img[^>]+src="(?!data:)', html)  # every figure embedded: the page stands alone
    assert 'src="data:image/png;base64,' in html
