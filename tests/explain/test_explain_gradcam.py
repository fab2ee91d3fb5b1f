"""Grad-CAM: overlays for positive and negative test cases, CAM mass in the generator's region, --compare."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from explain_cli import invoke, ok  # noqa: E402  (tests/explain/explain_cli.py)


def test_gradcam_overlays_region_share_and_compare(trained_run, ol3i64):
    from amfmedit.data import load_prepared
    from amfmedit.data.synthetic import region_masks

    shutil.copytree(trained_run.root, trained_run.runs_dir / "other")  # a second run to compare with
    res = ok("explain", "--method", "gradcam", "--cases", "2", "--compare", "other")
    folder = trained_run.root / "explain" / "gradcam-finetune-concat-frozen-seed2022"
    summary = json.loads((folder / "summary.json").read_text())
    assert "image encoder of the fine-tuned Concatenation model (frozen)" in summary["model"]

    ds = load_prepared(ol3i64)
    ids = {str(i): k for k, i in enumerate(ds.ids)}
    pos = [ids[i] for i in summary["cases"]["positive"]]
    neg = [ids[i] for i in summary["cases"]["negative"]]
    test = set(ds.indices("test").tolist())
    assert len(pos) == len(neg) == 2 and set(pos + neg) <= test
    assert (ds.labels[pos] == 1).all() and (ds.labels[neg] == 0).all()

    cams = np.load(folder / "cams.npz")
    assert cams["cams"].shape == (4, 64, 64)
    assert list(cams["ids"]) == summary["cases"]["positive"] + summary["cases"]["negative"]
    maps = cams["cams"].astype(np.float64)
    assert maps.min() >= 0 and maps.max() <= 1 and (maps.reshape(4, -1).max(1) > 0).all()  # frozen encoder, real maps

    # the recorded mass share is the map's mass inside the regenerated region mask
    masks = region_masks(ds, np.array(pos), "visceral_fat")
    region = summary["region"]["positive"]
    assert region["region"] == "visceral_fat"
    want = [(m * k).sum() / m.sum() for m, k in zip(maps[:2], masks)]
    np.testing.assert_allclose(region["per_case_mass"], want, rtol=2e-3)  # cams.npz holds float16
    assert region["region_area_share"] == pytest.approx(masks.mean())
    assert region["enrichment"] == pytest.approx(region["cam_mass_in_region"] / region["region_area_share"])
    # the same model in the compared run gives the same maps
    (other,) = summary["compare"]
    assert other["run"] == "other"
    assert other["region"]["positive"]["per_case_mass"] == pytest.approx(summary["region"]["positive"]["per_case_mass"],
                                                                         rel=1e-4)

    for png in ("positive.png", "negative.png", "compare-positive.png", "compare-negative.png"):
        assert (folder / png).read_bytes()[:4] == b"\x89PNG"
    singles = sorted(p.name for p in (folder / "cases").iterdir())
    assert singles == sorted([f"positive-{i}.png" for i in summary["cases"]["positive"]]
                             + [f"negative-{i}.png" for i in summary["cases"]["negative"]])
    assert "heat in region" in res.output


def test_overlay_is_grey_ct_under_the_heat_map():
    from amfmedit.explain.gradcam import overlay

    image = np.full((1, 8, 8), 100, np.uint8)
    flat = overlay(image, np.zeros((8, 8), np.float32))
    assert flat.shape == (8, 8, 3) and flat.dtype == np.uint8
    hot = overlay(image, np.ones((8, 8), np.float32))
    assert hot[..., 0].mean() > flat[..., 0].mean()  # red where the map is high (jet colour map)


def test_too_many_cases_is_one_line(trained_run, ol3i64):
    from amfmedit.data import load_prepared

    ds = load_prepared(ol3i64)
    n_pos = int((ds.labels[ds.indices("test")] == 1).sum())
    res = invoke("explain", "--method", "gradcam", "--cases", str(n_pos + 1))
    assert res.exit_code == 2
    assert f"has only {n_pos} positive cases" in res.output and "Traceback" not in res.output
    assert not (trained_run.root / "explain").exists()


def test_a_single_cell_feature_map_is_refused(tiny_ol3i):
    from amfmedit.data import load_prepared
    from amfmedit.errors import UserError
    from amfmedit.explain.gradcam import grad_cams
    from amfmedit.models import ImageEncoder, UnimodalClassifier

    ds = load_prepared(tiny_ol3i)  # 32 x 32: ResNet's last stage is 1 x 1
    model = UnimodalClassifier(ImageEncoder(arch="resnet18", in_channels=1), n_classes=2, modality="image").eval()
    with pytest.raises(UserError, match="images of 32x32 pixels give a 1x1 map"):
        grad_cams(model, ds, ds.indices("test")[:2], target=1)
    assert not model.encoder.layer4._forward_hooks  # the CAM hooks are removed again


def test_coarse_maps_warn_and_cases_are_titled_on_the_thresholds_scale(trained_run):
    import pandas as pd

    from amfmedit.explain.gradcam import grid_warning

    assert grid_warning((4, 4), (128, 128)) is None
    assert "3 x 3 cells" in grid_warning((3, 3), (96, 96)) and "128 pixels" in grid_warning((3, 3), (96, 96))

    # 64-pixel images: ResNet's last stage is 2 x 2 cells, said in the summary and the terminal
    res = ok("explain", "--method", "gradcam", "--cases", "2")
    folder = trained_run.root / "explain" / "gradcam-finetune-concat-frozen-seed2022"
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["map_cells"] == [2, 2]
    assert any("2 x 2 cells" in w and "too coarse" in w for w in summary["warnings"])
    assert "too coarse" in " ".join(res.output.split())
    assert summary["shown"]["threshold"] is None and "no threshold" in summary["shown"]["note"]

    # after evaluate: the probabilities shown are predict's (recalibrated), beside the threshold on that
    # scale, so a case above the threshold is one the operating point calls positive
    ok("evaluate")
    ok("explain", "--method", "gradcam", "--cases", "2", "--force")
    summary = json.loads((folder / "summary.json").read_text())
    stage = summary["stage"]
    op = json.loads((trained_run.root / "evaluate" / "operating_points.json").read_text())["stages"][stage]
    shown = summary["shown"]
    assert shown["threshold"] == pytest.approx(op["threshold_calibrated"]) and "recalibrated" in shown["note"]
    raw = np.array(summary["probability"]["positive"] + summary["probability"]["negative"])
    cal = np.array(shown["positive"] + shown["negative"])
    assert not np.allclose(raw, cal)  # a temperature was fitted: the scales differ
    decisions = pd.read_csv(trained_run.root / "evaluate" / "predictions" / f"{stage}.csv").set_index("id")["decision"]
    ids = summary["cases"]["positive"] + summary["cases"]["negative"]
    called = [int(decisions.loc[type(decisions.index[0])(i)]) for i in ids]
    assert [int(p >= shown["threshold"]) for p in cal] == called
