"""The library page's Python example (docs/library.md) runs as printed (a user copies it into a notebook)."""

from __future__ import annotations

import re
from pathlib import Path

PAGE = Path(__file__).resolve().parents[1] / "docs" / "library.md"


def _example() -> str:
    text = PAGE.read_text(encoding="utf-8")
    m = re.search(r"<!-- example:library -->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/library.md lost its <!-- example:library --> code block"
    return m.group(1)


def test_library_page_python_example_runs_verbatim(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__library_example__"}
    exec(compile(_example(), str(PAGE), "exec"), namespace)  # noqa: S102 - the documented example itself
    out = capsys.readouterr().out
    assert "best validation AUC" in out and "(8, 6) completeness error" in out
    # the engine wrote what it promises into the folder the example named
    folder = tmp_path / "amf-notebook"
    assert {"last.pt", "best.pt", "metrics.jsonl"} <= {p.name for p in folder.iterdir()}
    assert len((folder / "metrics.jsonl").read_text().splitlines()) == 3
    # IG's completeness: the attributions sum to f(x) - f(baseline)
    attributions, delta, change = namespace["attributions"], namespace["delta"], namespace["change"]
    assert abs(attributions.sum(axis=1) - change).max() < 1e-2 + 1e-3 * abs(change).max()
    assert abs(delta).max() < 1e-2
