"""Integrated Gradients: against a hand-computed path integral, completeness, the CLI report."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from explain_cli import invoke, ok  # noqa: E402  (tests/explain/explain_cli.py)


def _scorer(kind: str, output: str = "prob"):
    from amfmedit.explain.targets import TabularScore
    from amfmedit.models import UnimodalClassifier, build_tabular_encoder

    torch.manual_seed(0)
    kw = {"d_block": 8, "n_blocks": 1} if kind == "ft_mamba" else {"d_block": 16}
    enc = build_tabular_encoder(kind, n_cont_features=5, cat_cardinalities=[3, 4], **kw)
    model = UnimodalClassifier(enc, n_classes=2, modality="tabular").eval()
    return TabularScore(model, modality="tabular", output=output).eval()


def _riemann_ig(scorer, x_cont, e_cat, b_cont, b_cat, target: int, m: int = 400) -> np.ndarray:
    """Midpoint rule with m steps, one sample at a time: the obviously correct slow version."""
    out = []
    for xc, ec in zip(x_cont, e_cat):
        alphas = (torch.arange(m, dtype=torch.float64) + 0.5) / m
        pc = (b_cont + alphas[:, None].float() * (xc - b_cont)).requires_grad_(True)
        pe = (b_cat + alphas[:, None, None].float() * (ec - b_cat)).requires_grad_(True)
        g_c, g_e = torch.autograd.grad(scorer(pc, pe)[:, target].sum(), (pc, pe))
        a_c = (xc - b_cont) * g_c.mean(0)
        a_e = ((ec - b_cat) * g_e.mean(0)).sum(-1)
        out.append(torch.cat([a_c, a_e]).double().numpy())
    return np.stack(out)


def test_ig_equals_the_path_integral_and_is_complete():
    from amfmedit.explain.ig import integrated_gradients, tabular_baseline
    from amfmedit.explain.targets import frozen_parameters

    # FT-Mamba is smooth (SiLU, softplus), so quadrature converges fast; a ReLU network's
    # path integral has kinks and both rules below would differ by O(1/steps)
    scorer = _scorer("ft_mamba")
    gen = torch.Generator().manual_seed(1)
    train_cont, train_cat = torch.randn(50, 5, generator=gen), torch.stack(
        [torch.randint(0, 3, (50,), generator=gen), torch.randint(0, 4, (50,), generator=gen)], 1)
    b_cont, b_cat = tabular_baseline(scorer.encoder, train_cont, train_cat)
    assert torch.allclose(b_cont, train_cont.mean(0), atol=1e-6)
    assert torch.allclose(b_cat, scorer.encoder.embed_categorical(train_cat).mean(0), atol=1e-6)
    x_cont, x_cat = 2 * torch.randn(4, 5, generator=gen), train_cat[:4]
    x_cont[:, 2] = b_cont[2]  # a feature at its baseline value gets no attribution
    targets = torch.ones(4, dtype=torch.long)
    with frozen_parameters(scorer.model):
        attr, delta, change = integrated_gradients(scorer, x_cont=x_cont, x_cat=x_cat, baseline=(b_cont, b_cat),
                                                   targets=targets, steps=32, batch_size=64)
    assert all(p.requires_grad for p in scorer.model.parameters())  # restored afterwards
    assert attr.shape == (4, 7)
    assert np.all(attr[:, 2] == 0.0)
    e_cat = scorer.encoder.embed_categorical(x_cat).detach()
    manual = _riemann_ig(scorer, x_cont, e_cat, b_cont, b_cat, 1, m=256)
    np.testing.assert_allclose(attr, manual, rtol=2e-3, atol=2e-6)
    # completeness: sum of attributions = f(x) - f(baseline), checked independently of captum's delta
    with torch.no_grad():
        f_x = scorer(x_cont, e_cat)[:, 1].double().numpy()
        f_b = scorer(b_cont.expand(4, -1), b_cat.expand(4, -1, -1))[:, 1].double().numpy()
    np.testing.assert_allclose(change, f_x - f_b, atol=1e-6)
    assert np.abs(change).min() > 1e-4  # the check below is not trivially satisfied
    assert np.all(np.abs(attr.sum(1) - (f_x - f_b)) <= 1e-3 * np.abs(f_x - f_b) + 1e-7)
    np.testing.assert_allclose(delta, attr.sum(1) - change, atol=1e-6)


def test_ig_report_from_the_cli(trained_run, ol3i64):
    from amfmedit.data import load_prepared

    # the paper's setting (§4.2.1): the supervised tabular model, named with --stage
    res = ok("explain", "--method", "ig", "--max-samples", "40", "--steps", "8", "--stage", "supervised-tabular-seed2022")
    folder = trained_run.root / "explain" / "ig-supervised-tabular-seed2022"
    schema = load_prepared(ol3i64).schema
    table = pd.read_csv(folder / "importance.csv")
    assert list(table.columns[:6]) == ["name", "kind", "group", "description", "importance_pct", "rank"]
    assert table["importance_pct"].sum() == pytest.approx(100.0, abs=1e-9)
    assert sorted(table["rank"]) == list(range(1, 41))
    assert list(table["name"]) == list(table.sort_values("importance_pct", ascending=False)["name"])
    assert set(table["name"]) == set(schema.feature_names)
    np.testing.assert_allclose(table["importance_pct"],
                               100 * table["mean_abs_attribution"] / table["mean_abs_attribution"].sum())
    for _, r in table.iterrows():
        f = schema.feature(r["name"])
        assert (r["kind"], r["group"], r["description"]) == (f.kind, f.group, f.description)

    summary = json.loads((folder / "summary.json").read_text())
    assert summary["n_samples"] == 40 and summary["steps"] == 8 and summary["target"]["index"] == 1
    assert "supervised MLP tabular model" in summary["model"]
    c = summary["completeness"]
    assert 0 <= c["mean_abs_delta"] <= c["max_abs_delta"]
    assert c["relative"] == pytest.approx(c["mean_abs_delta"] / c["mean_abs_output_change"])
    informative = json.loads((ol3i64.path / "provenance.json").read_text())["synthetic"]["informative_features"]
    in_top = int(table.head(10)["name"].isin(informative).sum())
    assert summary["synthetic"]["in_top_k"] == in_top and summary["synthetic"]["top_k"] == 10
    proxies = sorted(json.loads((ol3i64.path / "provenance.json").read_text())["synthetic"]["proxy_features"])
    assert proxies and summary["synthetic"]["proxies"] == proxies  # counted apart from the informative ones
    assert summary["synthetic"]["proxies_in_top_k"] == int(table.head(10)["name"].isin(proxies).sum())
    assert summary["top"] == list(table["name"].head(10))

    top = (folder / "top10.md").read_text()
    rows = [line for line in top.splitlines() if line.startswith("| ") and not line.startswith("| Rank")]
    assert len(rows) == 10
    first = table.iloc[0]
    assert rows[0].startswith(f"| 1 (1–{first['rank_high']}) | `{first['name']}` | {first['description']} |")
    assert f"{in_top} of the top 10 features" in top
    for png in ("importance_distribution.png", "top_features.png", "groups.png"):
        data = (folder / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert (folder / "COMPLETE").is_file()
    assert "Top 10 features by Integrated Gradients" in res.output
    assert str(first["name"]) in res.output
    assert f"{in_top} of the top 10 features are informative" in " ".join(res.output.split())
    # --mask-top-k ranks by this report
    from amfmedit.stages.common import resolve_mask, top_features
    from amfmedit.train import rundir

    run = rundir.open_run()
    assert top_features(run, 3) == list(table["name"][:3])
    assert resolve_mask(run, (), 2) == list(table["name"][:2])
    # a finished report is not silently replaced
    again = invoke("explain", "--method", "ig", "--max-samples", "4", "--steps", "4", "--stage",
                   "supervised-tabular-seed2022")
    assert again.exit_code == 2 and "--force" in again.output


def test_ig_on_the_tabular_branch_of_a_multimodal_model(trained_run):
    from amfmedit.explain.ig import IGConfig
    from amfmedit.stages.common import RunOptions
    from amfmedit.stages.explain import explain_ig

    rep = explain_ig(IGConfig(steps=32, max_samples=6, output="logit"), RunOptions(),
                     stage="finetune-concat-frozen-seed2022")
    assert "tabular branch" in rep.model and "image held fixed" in rep.model
    assert rep.summary["n_samples"] == 6 and rep.summary["output"] == "logit"
    assert rep.table["importance_pct"].sum() == pytest.approx(100.0)
    # the fusion is linear in z_tab and the MLP piecewise linear: the integral is near exact
    assert rep.summary["completeness"]["relative"] < 0.05


@pytest.mark.parametrize("kind", ["ft_mamba", "ft_transformer"])
def test_ig_equals_plain_captum_one_sample_at_a_time(kind):
    # The reference: captum's IntegratedGradients called the straightforward way, one sample
    # per call, weights requiring grad, captum's own convergence delta. Ours batches samples,
    # freezes the weights and computes the delta from a shared baseline forward; the numbers
    # must not change (float32 round-off only).
    from captum.attr import IntegratedGradients

    from amfmedit.explain.ig import integrated_gradients, tabular_baseline

    scorer = _scorer(kind)
    gen = torch.Generator().manual_seed(5)
    x_cont = torch.randn(7, 5, generator=gen)
    x_cat = torch.stack([torch.randint(0, 3, (7,), generator=gen), torch.randint(0, 4, (7,), generator=gen)], 1)
    b_cont, b_cat = tabular_baseline(scorer.encoder, x_cont, x_cat)
    targets = torch.tensor([1, 0, 1, 1, 0, 1, 0])
    attr, delta, change = integrated_gradients(scorer, x_cont=x_cont, x_cat=x_cat, baseline=(b_cont, b_cat),
                                               targets=targets, steps=20, batch_size=60)  # 3 samples per call
    assert all(p.requires_grad for p in scorer.parameters())
    one, _, _ = integrated_gradients(scorer, x_cont=x_cont, x_cat=x_cat, baseline=(b_cont, b_cat), targets=targets,
                                     steps=20, batch_size=60, max_tokens_per_pass=8 * 20)  # 1 sample per pass
    np.testing.assert_allclose(one, attr, rtol=1e-5, atol=1e-7)
    ig = IntegratedGradients(scorer)
    for i in range(7):
        e = scorer.encoder.embed_categorical(x_cat[i : i + 1]).detach()
        (a_c, a_e), d = ig.attribute((x_cont[i : i + 1], e), baselines=(b_cont[None], b_cat[None]),
                                     target=int(targets[i]), n_steps=20, return_convergence_delta=True)
        ref = torch.cat([a_c, a_e.sum(-1)], 1)[0].double().numpy()
        scale = np.abs(ref).max()
        np.testing.assert_allclose(attr[i], ref, rtol=1e-4, atol=1e-5 * scale)
        assert delta[i] == pytest.approx(float(d[0]), abs=1e-5 * scale + 1e-7)
    assert np.abs(attr).max() > 1e-4  # not a trivially equal pair of zeros


def test_ig_without_categorical_features_equals_captum_on_the_continuous_inputs():
    # every feature continuous (prepare --categorical none, the authors' OL3I typing): the empty
    # categorical embedding is no input to attribute; the attributions are plain captum's over x_cont
    from captum.attr import IntegratedGradients

    from amfmedit.explain.ig import integrated_gradients, tabular_baseline
    from amfmedit.explain.targets import TabularScore
    from amfmedit.models import UnimodalClassifier, build_tabular_encoder

    torch.manual_seed(0)
    enc = build_tabular_encoder("ft_mamba", n_cont_features=5, cat_cardinalities=[], d_block=8, n_blocks=1)
    scorer = TabularScore(UnimodalClassifier(enc, n_classes=2, modality="tabular").eval(), modality="tabular",
                          output="prob").eval()
    gen = torch.Generator().manual_seed(3)
    x_cont, x_cat = 2 * torch.randn(5, 5, generator=gen), torch.zeros(5, 0, dtype=torch.long)
    b_cont, b_cat = tabular_baseline(scorer.encoder, torch.randn(40, 5, generator=gen), x_cat.repeat(8, 1))
    targets = torch.tensor([1, 0, 1, 1, 0])
    attr, delta, change = integrated_gradients(scorer, x_cont=x_cont, x_cat=x_cat, baseline=(b_cont, b_cat),
                                               targets=targets, steps=24, batch_size=48)
    assert attr.shape == (5, 5)
    empty = scorer.encoder.embed_categorical(x_cat[:1]).detach()
    ref = IntegratedGradients(lambda xc: scorer(xc, empty.expand(len(xc), -1, -1))).attribute(
        x_cont, baselines=b_cont[None], target=targets, n_steps=24).double().numpy()
    np.testing.assert_allclose(attr, ref, rtol=1e-4, atol=1e-7)
    assert np.abs(attr).max() > 1e-4 and np.abs(delta).max() <= 1e-3 * np.abs(change).max()


def test_steps_for_completeness_picks_the_fewest_steps_within_the_tolerance():
    from amfmedit.errors import UserError
    from amfmedit.explain.ig import STEP_LADDER, integrated_gradients, steps_for_completeness, tabular_baseline

    scorer = _scorer("ft_mamba")
    gen = torch.Generator().manual_seed(2)
    x_cont = 3 * torch.randn(6, 5, generator=gen)
    x_cat = torch.stack([torch.randint(0, 3, (6,), generator=gen), torch.randint(0, 4, (6,), generator=gen)], 1)
    base = tabular_baseline(scorer.encoder, torch.randn(30, 5, generator=gen), x_cat.repeat(5, 1))
    targets = torch.ones(6, dtype=torch.long)

    def rel(steps):
        _, d, c = integrated_gradients(scorer, x_cont=x_cont, x_cat=x_cat, baseline=base, targets=targets, steps=steps)
        return np.abs(d).mean() / np.abs(c).mean()

    tol = rel(STEP_LADDER[2]) * 1.01  # what 12 steps achieve
    steps, err = steps_for_completeness(scorer, x_cont=x_cont, x_cat=x_cat, baseline=base, targets=targets,
                                        tolerance=tol)
    assert steps <= STEP_LADDER[2] and err <= tol
    assert err == pytest.approx(rel(steps), rel=1e-9)
    for smaller in STEP_LADDER[: STEP_LADDER.index(steps)]:
        assert rel(smaller) > tol  # no cheaper count on the ladder meets it
    with pytest.raises(UserError, match="--completeness"):
        steps_for_completeness(scorer, x_cont=x_cont, x_cat=x_cat, baseline=base, targets=targets, tolerance=0)


def test_steps_chosen_by_the_asked_completeness_error(trained_run):
    import json

    from amfmedit.explain.ig import STEP_LADDER

    ok("explain", "--method", "ig", "--max-samples", "8", "--completeness", "0.05", "--quiet")
    summary = json.loads(next((trained_run.root / "explain").glob("ig-*/summary.json")).read_text())
    assert summary["steps"] in STEP_LADDER and summary["settings"]["completeness"] == 0.05
    assert "--completeness 0.05" in summary["steps_rule"]
    # the whole run meets what the pilot promised, to within the pilot's sampling
    assert summary["completeness"]["relative"] <= 0.1
    res = invoke("explain", "--method", "ig", "--completeness", "2", "--quiet")
    assert res.exit_code == 2 and "--completeness 2" in res.output
