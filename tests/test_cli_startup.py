"""Help screens and usage errors answer without the heavy packages of :mod:`amfmedit.deferred`.

Not timed (``benchmarks/bench_startup.py`` times them): a fresh process answers every help
screen and a usage error, then reports which deferred packages it holds.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
from typer.testing import CliRunner
{plant}
from amfmedit.cli import app
from amfmedit.deferred import DEFERRED

runner = CliRunner()
codes = [runner.invoke(app, ["--help"]).exit_code]
codes += [runner.invoke(app, [c.name, "--help"]).exit_code for c in app.registered_commands]
codes.append(runner.invoke(app, ["finetune", "--no-such-option"]).exit_code)
print(codes)
print(sorted(p for p in DEFERRED if p in sys.modules))
"""


def loaded_after_help(plant: str = "") -> tuple[list[int], list[str]]:
    """(exit codes of the help screens and the usage error, deferred packages imported) in a fresh process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(plant=plant)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    codes, loaded = done.stdout.splitlines()[-2:]
    return ast.literal_eval(codes), ast.literal_eval(loaded)


def test_help_screens_and_usage_errors_import_no_deferred_package():
    from amfmedit.cli import app

    codes, loaded = loaded_after_help()
    assert codes == [0] * (1 + len(app.registered_commands)) + [2]
    assert loaded == [], f"answering --help imported {loaded}; import them inside the functions that use them"


def test_the_check_sees_a_deferred_package_imported_on_the_way():
    _, loaded = loaded_after_help(plant="import amfmedit.stages.finetune")
    assert "torch" in loaded
