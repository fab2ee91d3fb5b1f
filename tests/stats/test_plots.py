"""Figures: every function writes one PNG atomically from plain arrays keyed by display name."""

import numpy as np
import pytest

from amfmedit.stats import plots


@pytest.fixture(scope="module")
def run():
    rng = np.random.default_rng(0)
    y = (rng.random(300) < 0.2).astype(int)
    names = ["AMF + FT-Mamba, trainable", "Concatenation + FT-Mamba, trainable", "ResNet-50 (image only)"]
    return y, {n: 1 / (1 + np.exp(-(rng.normal(size=300) + (1 + i / 2) * y - 1.5))) for i, n in enumerate(names)}


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_all_figures_written_atomically(run, tmp_path):
    y, preds = run
    ops = {k: 0.3 for k in preds}
    first = next(iter(preds))
    out = [
        plots.roc_figure(y, preds, tmp_path / "roc.png", title="demo test split", operating_points=ops),
        plots.roc_figure(y, {first: preds[first]}, tmp_path / "roc1.png", auc_ci={first: (0.8, 0.7, 0.9)}),
        plots.pr_figure(y, preds, tmp_path / "pr.png", operating_points=ops, n_boot=200),
        plots.reliability_figure(y, {first: preds[first]}, tmp_path / "rel.png", title=first),
        plots.decision_figure(y, preds, tmp_path / "dca.png"),
    ]
    assert all(_is_png(p) for p in out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dca.png", "pr.png", "rel.png", "roc.png", "roc1.png"]
