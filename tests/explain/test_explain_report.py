"""The run report and the explain command's bad inputs."""

from __future__ import annotations

import re
from pathlib import Path

from explain_cli import invoke, ok  # noqa: E402  (tests/explain/explain_cli.py)


def _links(markdown: str) -> list[str]:
    return re.findall(r"\]\(([^)]+)\)", markdown)


def test_report_links_existing_files_and_hints_missing_stages(trained_run):
    ok("explain", "--method", "ig", "--max-samples", "8", "--steps", "4", "--quiet", "--stage",
       "supervised-tabular-seed2022")
    report = trained_run.root / "report.md"
    assert report.is_file()  # refreshed by explain itself
    ok("explain", "--method", "gradcam", "--cases", "1")
    res = ok("report")
    assert res.output.startswith("report:")
    text = report.read_text()
    heads = [line for line in text.splitlines() if line.startswith("## ") and line[3:4].isdigit()]
    assert heads[:5] == ["## 1. Data", "## 2. Contrastive pretraining", "## 3. Modality confidence R_conf",
                         "## 4. Fine-tuning and evaluation", "## 5. Explanations"]
    links = _links(text)
    assert "report_files/pretrain_curves.png" in links
    assert "explain/ig-supervised-tabular-seed2022/importance_distribution.png" in links
    assert "explain/gradcam-finetune-concat-frozen-seed2022/positive.png" in links
    for link in links:
        assert not Path(link).is_absolute() and (trained_run.root / link).is_file(), link
    assert (trained_run.root / "report_files" / "pretrain_curves.png").read_bytes()[:4] == b"\x89PNG"
    # stages not run yet are one line naming their command
    assert "_Not run yet: `amfmedit rconf`" in text
    assert "_Not run yet: `amfmedit evaluate`" in text
    for stage in ("finetune-concat-frozen-seed2022", "supervised-tabular-seed2022"):
        assert f"| {stage} |" in text
    assert "| 1 | `" in text  # the IG top-10 table
    assert "heat in region" in text

    ok("evaluate")  # evaluate refreshes it with the Table-2 layout
    text = report.read_text()
    assert "| Fusion method | Tabular encoder | Frozen AUC (%) | Trainable AUC (%) |" in text
    assert "| Concatenation | MLP |" in text and "Oracle (true risk)" in text
    assert "_Not run yet: `amfmedit evaluate`" not in text
    for link in _links(text):
        assert (trained_run.root / link).is_file(), link


def test_explaining_a_run_without_a_trained_model_names_the_command(tmp_path, monkeypatch, ol3i64):
    from amfmedit.train import rundir

    monkeypatch.setenv("AMFMEDIT_RUNS", str(tmp_path))
    rundir.create_run(tmp_path, "empty", data=ol3i64.name, data_dir=str(ol3i64.data_dir), environment={})
    res = invoke("explain", "--method", "ig")
    assert res.exit_code == 2
    assert "run empty has no trained model with a tabular input" in res.output
    assert "amfmedit finetune --fusion none --modality tabular" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = invoke("explain", "--method", "gradcam")
    assert res.exit_code == 2 and "amfmedit finetune --fusion concat --strategy frozen" in res.output
    res = invoke("report")  # a report of an empty run is all hints
    assert res.exit_code == 0
    assert "_Not run yet: `amfmedit pretrain --data" in (tmp_path / "empty" / "report.md").read_text()


def test_unknown_method_and_stage_are_one_line(trained_run):
    res = invoke("explain", "--method", "shap")
    assert res.exit_code == 2 and "--method shap: unknown explanation method; use ig" in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = invoke("explain", "--method", "ig", "--stage", "supervised-tabular-seed2023")
    assert res.exit_code == 2 and "did you mean supervised-tabular-seed2022" in res.output
    res = invoke("explain", "--method", "gradcam", "--stage", "supervised-tabular-seed2022")
    assert res.exit_code == 2 and "pick a stage with an image input" in res.output
    res = invoke("explain", "--method", "ig", "--target", "2")
    assert res.exit_code == 2 and "--target 2: not a class" in res.output
    assert not (trained_run.root / "explain").exists()


def test_explain_and_predict_use_the_same_model_by_default(trained_run):
    """One rule for "the model": predict scores it, explain explains it, and both say which."""
    from amfmedit.stages.selection import choose_model
    from amfmedit.train import rundir

    run = rundir.open_run()
    chosen = choose_model(run, "predict")
    assert choose_model(run, "ig").stage == choose_model(run, "gradcam").stage == chosen.stage
    assert chosen.stage == "finetune-concat-frozen-seed2022"  # image-tabular models before baselines
    res = ok("explain", "--method", "ig", "--max-samples", "4", "--steps", "4")
    assert chosen.stage in res.output and "best validation AUC" in res.output
    assert (trained_run.root / "explain" / f"ig-{chosen.stage}").is_dir()
