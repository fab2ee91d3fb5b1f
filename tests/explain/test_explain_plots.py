"""Figures a reader can use: titles and names not clipped or overlapping, one colour per group in
every IG chart, Grad-CAM colour bars / common scaling / outline legend / all-zero note, integer
epoch ticks and a chance line; and the plain-words verdict of the CAM region summary."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from amfmedit.explain import plots


@pytest.fixture
def figures(monkeypatch):
    """Every figure a plot function saves, kept open for inspection (drawn as saved)."""
    kept = []
    real = plots._save

    def keep(fig, path):
        fig.canvas.draw()
        kept.append(fig)
        out = real(fig, path)
        return out

    monkeypatch.setattr(plots, "_save", keep)
    import matplotlib.pyplot as plt

    monkeypatch.setattr(plt, "close", lambda fig=None: None)  # keep the figure alive for the test
    return kept


def _table(n=120, seed=0):
    rng = np.random.default_rng(seed)
    groups = ["demographics", "vital signs", "laboratory", "medications", "diagnoses"]
    names = [f"f{i:03d}" for i in range(n)]
    names[10], names[11], names[12] = "systolic_blood_pressure [mmHg]", "diastolic_blood_pressure", "age [years]"
    imp = rng.exponential(0.4, n)
    imp[10:13] = [9, 8.5, 7]  # three neighbours with long names: their labels would collide
    imp[1] = 5  # and one near the left edge
    imp = imp / imp.sum() * 100
    t = pd.DataFrame({"name": names, "group": [groups[i % 5] for i in range(n)], "importance_pct": imp,
                      "informative": [i in (10, 11, 12) for i in range(n)]})
    return t.sort_values("importance_pct", ascending=False).reset_index(drop=True), names


def _inside(inner, outer, tol=1.0):
    return (inner.x0 >= outer.x0 - tol and inner.x1 <= outer.x1 + tol and inner.y0 >= outer.y0 - tol
            and inner.y1 <= outer.y1 + tol)


def test_overview_title_and_labels_fit_and_do_not_overlap(tmp_path, figures):
    t, names = _table()
    title = ("IG: fine-tuned AMF-MedIT model (frozen image encoder, Mamba tabular encoder, seed 2022) "
             "on the class positive probability (128 test samples)")
    plots.importance_distribution(t, names, tmp_path / "d.png", title, label_top=5)
    (fig,) = figures
    r = fig.canvas.get_renderer()
    page = fig.bbox
    ax = fig.axes[0]
    assert _inside(ax.title.get_window_extent(r), page)
    assert "\n" in ax.title.get_text()  # wrapped, not cut at the figure's edge
    labels = [a for a in ax.texts if a.get_text() in set(t["name"].head(5))]
    assert sorted(a.get_text() for a in labels) == sorted(t["name"].head(5))
    from matplotlib.text import Text

    boxes = [Text.get_window_extent(a, r) for a in labels]  # the name itself, not its leader line
    axbox = ax.get_window_extent(r)
    for i, b in enumerate(boxes):
        assert _inside(b, axbox), labels[i].get_text()
        for c in boxes[i + 1:]:
            assert not b.overlaps(c)
    legend = ax.get_legend().get_window_extent(r)
    assert _inside(legend, page)


def _bar_colour(patch):
    import matplotlib.colors as mc

    return mc.to_hex(patch.get_facecolor())


def test_same_group_has_the_same_colour_in_both_ig_charts(tmp_path, figures):
    from amfmedit.explain.ig import group_shares

    t, names = _table()
    shares = group_shares(t)
    plots.importance_distribution(t, names, tmp_path / "d.png", "dist")
    plots.group_breakdown(shares, tmp_path / "g.png", "groups", groups=t["group"])
    dist, groups = figures
    by_name = t.set_index("name")["group"]
    seen: dict[str, set] = {}
    for name, patch in zip(names, dist.axes[0].patches):
        seen.setdefault(by_name[name], set()).add(_bar_colour(patch))
    assert all(len(c) == 1 for c in seen.values())
    ax = groups.axes[0]
    keys = [lab.get_text() for lab in ax.get_yticklabels()]
    assert set(keys) == set(shares)
    for key, patch in zip(keys, ax.patches):
        if key in seen:
            assert {_bar_colour(patch)} == seen[key], key
    # without the full list the chart still agrees here (no two of these names share a hash slot)
    assert plots.group_colours(list(shares)[1:]) == {g: plots.group_colours(t["group"])[g] for g in list(shares)[1:]}
    assert plots.group_colours(["b", "a"]) == plots.group_colours(["a", "b"])


def test_group_chart_is_labelled_bars_in_percent(tmp_path, figures):
    shares = {"low importance (<1%)": 40.0, "laboratory": 35.5, "vital signs": 24.5}
    truth = {"low importance (<1%)": 40.0, "high & informative": 50.0, "high & not informative": 10.0}
    plots.group_breakdown(shares, tmp_path / "g.png", "Importance by category — finetune-amf", truth)
    (fig,) = figures
    by_group, by_truth = fig.axes[:2]
    assert [p.get_width() for p in by_group.patches][::-1] == pytest.approx([40.0, 35.5, 24.5])
    assert {a.get_text() for a in by_group.texts} == {"40.0%", "35.5%", "24.5%"}
    assert {a.get_text() for a in by_truth.texts} == {"40.0%", "50.0%", "10.0%"}
    assert "%" in by_truth.get_xlabel()
    r = fig.canvas.get_renderer()
    for ax in (by_group, by_truth):
        for lab in ax.get_yticklabels():
            assert _inside(lab.get_window_extent(r), fig.bbox), lab.get_text()
        texts = [a.get_window_extent(r) for a in ax.texts]
        assert all(_inside(b, fig.bbox) for b in texts)


def _cam_inputs():
    h = 32
    yy, xx = np.mgrid[:h, :h]
    images = [np.full((1, h, h), 120, np.uint8) for _ in range(3)]
    blob = np.exp(-((yy - 10) ** 2 + (xx - 16) ** 2) / 40.0)
    cams = [blob * 3.0, blob * 1.0, np.zeros((h, h))]
    mask = ((yy - 22) ** 2 + (xx - 16) ** 2) < 30
    return images, cams, [mask] * 3


def _heat(ax):
    return [im for im in ax.get_images() if im.get_cmap().name == plots.CAM_CMAP]


@pytest.mark.parametrize("scale, tops", [("common", [1.0, 1 / 3]), ("per-map", [1.0, 1.0])])
def test_cam_grid_scaling_colour_bar_zero_note_and_outline_legend(tmp_path, figures, scale, tops):
    images, cams, masks = _cam_inputs()
    plots.cam_maps_grid(images, cams, ["a", "b", "c"], tmp_path / "c.png", "Grad-CAM toward class 1",
                        scale=scale, outlines=masks, outline_label="visceral fat (risk region)")
    (fig,) = figures
    panels = [ax for ax in fig.axes if ax.get_title() in ("a", "b", "c")]
    assert [ax.get_title() for ax in panels] == ["a", "b", "c"]
    got = [float(np.asarray(_heat(ax)[0].get_array()).max()) for ax in panels[:2]]
    assert got == pytest.approx(tops)
    assert not _heat(panels[2])  # an all-zero map gets no heat layer (no blue wash) ...
    assert "map is all zero" in [t.get_text() for t in panels[2].texts]  # ... but a note
    bars = [ax for ax in fig.axes if "Grad-CAM, %" in ax.get_ylabel()]
    assert len(bars) == 1
    assert ("each map's own maximum" in bars[0].get_ylabel()) == (scale == "per-map")
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["visceral fat (risk region)"]
    r = fig.canvas.get_renderer()
    assert _inside(legend.get_window_extent(r), fig.bbox)
    with pytest.raises(ValueError, match="per-map"):
        plots.cam_maps_grid(images, cams, ["a", "b", "c"], tmp_path / "x.png", "t", scale="max")


def test_single_and_compare_cam_figures_have_colour_bars(tmp_path, figures):
    images, cams, masks = _cam_inputs()
    plots.cam_map_single(images[0], cams[1], tmp_path / "s.png", "P1", vmax=3.0, outline=masks[0],
                         outline_label="visceral fat (risk region)")
    plots.cam_maps_compare(images[:2], [cams[:2], cams[1:]], ["P1", "P2"], ["run a", "run b"], tmp_path / "k.png",
                           "side by side", scale="common")
    single, compare = figures
    assert float(np.asarray(_heat(single.axes[0])[0].get_array()).max()) == pytest.approx(1 / 3)  # 1 of vmax 3
    assert [t.get_text() for t in single.axes[0].get_legend().get_texts()] == ["visceral fat (risk region)"]
    assert any("Grad-CAM, %" in ax.get_ylabel() for ax in single.axes)
    assert any("largest value" in ax.get_ylabel() for ax in compare.axes)
    zero_panel = compare.axes[3]  # run b, patient P2: the all-zero map
    assert "map is all zero" in [t.get_text() for t in zero_panel.texts]
    for png in ("s.png", "k.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG"


def test_training_curves_integer_epochs_and_chance_line(tmp_path, figures):
    hist = [{"epoch": e, "train_loss": 3.47 - 0.004 * e, "val_loss": 3.46 - 0.002 * e} for e in (1, 2, 3)]
    chance = math.log(32)
    plots.training_curves(hist, tmp_path / "c.png", "Pretraining — run x", chance=chance,
                          chance_label="chance, log(batch 32)")
    (fig,) = figures
    ax = fig.axes[0]
    ticks = [x for x in ax.get_xticks() if ax.get_xlim()[0] <= x <= ax.get_xlim()[1]]
    assert ticks and all(float(x).is_integer() for x in ticks)
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert f"chance, log(batch 32) = {chance:.3f}" in labels
    lo, hi = ax.get_ylim()
    assert lo < chance < hi
    assert plots.training_curves([], tmp_path / "none.png", "x") is None


def _region_case(inside_share: float, area: float, h: int = 40) -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((h, h), bool)
    mask.flat[: int(round(area * h * h))] = True
    cam = np.where(mask, inside_share / mask.sum(), (1 - inside_share) / (~mask).sum())
    return cam[None], mask[None]


@pytest.mark.parametrize("inside, verdict", [(0.16, "above area share, mostly outside"), (0.6, "concentrated"),
                                             (0.08, "not above area share")])
def test_region_summary_says_concentrates_only_when_it_does(inside, verdict):
    from amfmedit.explain.gradcam import region_summary

    cams, masks = _region_case(inside, 0.10)
    s = region_summary(cams, masks, "visceral_fat")
    for key in ("region", "cases", "cam_mass_in_region", "region_area_share", "enrichment", "per_case_mass",
                "per_case_area"):
        assert key in s  # the keys the report reads stay
    assert s["cam_mass_in_region"] == pytest.approx(inside)
    assert s["cam_mass_outside_region"] == pytest.approx(1 - inside)
    assert s["cam_mass_in_region_pct"] == pytest.approx(100 * inside)
    assert s["verdict"] == verdict
    assert ("concentrates" in s["verdict_text"]) == (verdict == "concentrated")
    assert f"{100 * inside:.0f}% of the heat" in s["verdict_text"]
    if inside == 0.16:
        assert "84% of the heat lies outside" in s["verdict_text"]  # the case, said plainly


def test_region_summary_of_all_zero_maps():
    from amfmedit.explain.gradcam import region_summary

    _, masks = _region_case(0.5, 0.1)
    zeros = np.zeros((2, 40, 40))
    s = region_summary(zeros, np.repeat(masks, 2, axis=0), "visceral_fat")
    assert s["verdict"] == "all-zero map" and s["zero_maps"] == 2
    assert "all zero" in s["verdict_text"] and "concentrates" not in s["verdict_text"]
    cams, m = _region_case(0.6, 0.1)
    s = region_summary(np.concatenate([cams, zeros[:1]]), np.concatenate([m, m]), "visceral_fat")
    assert s["verdict"] == "concentrated" and s["zero_maps"] == 1 and "1 of 2 maps are all zero" in s["verdict_text"]


class _Images:
    """The parts of a prepared dataset that grad_cams reads."""

    def __init__(self, n=3, size=64, seed=0):
        rng = np.random.default_rng(seed)
        self.images = rng.integers(0, 255, (n, 1, size, size), dtype=np.uint8)
        self.x_cont = np.zeros((n, 1), np.float32)
        self.x_cat = np.zeros((n, 0), np.int64)
        self.root = "tiny"


def test_raw_maps_are_the_library_maps_before_per_map_scaling():
    import torch

    from amfmedit.explain.gradcam import grad_cams
    from amfmedit.models.composite import UnimodalClassifier
    from amfmedit.models.image import ImageEncoder

    torch.manual_seed(0)
    model = UnimodalClassifier(ImageEncoder(arch="resnet18", in_channels=1), n_classes=2, modality="image").eval()
    ds = _Images()
    rows = np.arange(3)
    scaled, p1 = grad_cams(model, ds, rows, target=1)
    raw, p2 = grad_cams(model, ds, rows, target=1, raw=True)
    np.testing.assert_allclose(p1, p2, rtol=1e-5)
    assert raw.shape == scaled.shape == (3, 64, 64) and raw.min() >= 0
    for r, s in zip(raw, scaled):
        if r.max() > 0:
            np.testing.assert_allclose((r - r.min()) / (r.max() - r.min()), s, atol=2e-3)
    assert not np.allclose(raw.max(axis=(1, 2)), 1.0)  # model units, not scaled to 1
