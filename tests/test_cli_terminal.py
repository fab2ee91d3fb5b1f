"""What a user sees in a terminal: help texts printed as written."""

from __future__ import annotations

from typer.testing import CliRunner

from amfmedit.cli import app


def test_help_texts_print_literally():
    for command in ("pretrain", "rconf", "finetune"):
        out = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).output
        assert "a [pretrain] / [rconf] / [finetune] section" in out, command
    out = CliRunner().invoke(app, ["pretrain", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}).output
    assert "cls ([CLS] last" in out
    assert "[default: 500]" in out and "\\[" not in out
