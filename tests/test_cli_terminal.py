"""What a user sees in a terminal of 80 columns and in a log file: help texts printed as written,
progress bars that keep every number, one plain line per epoch when the output is not a terminal."""

from __future__ import annotations

import io
import re

from rich.console import Console
from typer.testing import CliRunner

from amfmedit.cli import app

TIME = r"(\d+:\d\d:\d\d|-:--:--)"


def test_help_texts_print_literally():
    for command in ("pretrain", "rconf", "finetune"):
        out = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).output
        assert "a [pretrain] / [rconf] / [finetune] section" in out, command
    out = CliRunner().invoke(app, ["pretrain", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).output
    assert "cls ([CLS] last" in out
    assert "[default: 500]" in out and "\\[" not in out


def _reports(epochs: int = 3, steps: int = 4):
    from amfmedit.train.engine import Progress

    for epoch in range(1, epochs + 1):
        for step in range(1, steps + 1):
            yield Progress(epoch, epochs, step, steps, loss=0.6931, samples_per_s=12345.0)
        yield Progress(epoch, epochs, steps, steps, loss=0.6931, metrics={"val_auc": 0.8123}, samples_per_s=12345.0,
                       done=True)


def test_progress_bars_at_80_columns_keep_the_seed_the_metric_and_the_times(monkeypatch):
    from amfmedit.cli import train_common

    monkeypatch.setattr(train_common, "console", Console(width=80, file=io.StringIO(), force_terminal=True))
    with train_common.progress_bars() as make:
        bars = [make(f"finetune-amf-trainable-rconf0.95 seed={seed} lr=0.001", "val_auc") for seed in (2022, 2023)]
        for bar in bars:
            for report in _reports():
                bar(report)
        screen = Console(width=80, record=True, file=io.StringIO(), force_terminal=True)
        screen.print(bars[0].progress.get_renderable())
    text = screen.export_text()
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    for seed in (2022, 2023):
        assert f"seed={seed} lr=0.001" in text
    assert text.count("val_auc 0.8123") == 2 and text.count("12,345 samples/s") == 2
    assert len(re.findall(TIME, text)) == 4  # elapsed and remaining time of both bars


def test_a_run_whose_output_is_not_a_terminal_prints_one_line_per_epoch(tiny_ol3i, tmp_path, monkeypatch):
    monkeypatch.setenv("AMFMEDIT_DATA", str(tiny_ol3i.data_dir))
    monkeypatch.setenv("AMFMEDIT_RUNS", str(tmp_path / "runs"))
    res = CliRunner().invoke(app, ["pretrain", "--data", tiny_ol3i.name, "--run", "lines", "--tabular-encoder", "mlp",
                                   "--tabular-dim", "16", "--image-arch", "resnet18", "--epochs", "3",
                                   "--warmup-epochs", "0", "--batch-size", "32"])
    assert res.exit_code == 0, res.output
    lines = [line for line in res.output.splitlines() if line.startswith("pretrain  epoch ")]
    assert [line.split()[2] for line in lines] == ["1/3", "2/3", "3/3"], res.output
    for line in lines:
        assert re.search(r"loss \d+\.\d{4}  val_loss \d+\.\d{4}  [\d,]+ samples/s  elapsed \d+:\d\d:\d\d  "
                         r"left <= \d+:\d\d:\d\d$", line), line
