"""Every classifier of the zoo through ONNX: the exported graph gives the PyTorch model's probabilities.

The models are tiny and untrained (the export does not care what the weights are; their
absent-modality vectors are set to non-zero values so that a row without an image or a table
differs from one with), shaped by the tiny OL3I cohort's schema, their tabular encoders reading
the missing mask (``missing="token"``), and fed its test rows as prepared with a quarter of the
values marked missing and every third image absent. The fusion x encoder matrix reads a narrower
table (:data:`NARROW`); the supervised tabular baseline reads all 40 features. Needs the ``export`` extra (onnx,
onnxscript, onnxruntime); CI installs it with ``.[dev]``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amfmedit.models import (
    FUSIONS, TABULAR_ENCODERS, ImageTabularClassifier, UnimodalClassifier, build_fusion, build_image_encoder,
    build_tabular_encoder,
)
from amfmedit.models.export import (
    EXPORT_PACKAGES, EXPORT_SCAN, ExportedClassifier, OnnxRunner, export_onnx, missing_packages, reads_presence,
)
from amfmedit.models.scan import TRACEABLE_IMPLS
from tiny_settings import TINY_ENCODERS, fusion_kwargs

needs_onnx = pytest.mark.skipif(bool(missing_packages()), reason=f"the export extra is not installed "
                                f"({', '.join(missing_packages())} of {', '.join(EXPORT_PACKAGES)} missing)")
TARGET = 1e-5  # max |delta probability| in float32 (the target)
#: continuous features (the first ones, with both categorical features) of the fusion x encoder matrix: an FT-Mamba
#: graph unrolls its scan over the feature tokens, and tracing 41 of them took ~20 s per model, 9 take a few
#: seconds. The whole table goes through FT-Mamba in the tabular baseline's case below, and fused with an image
#: encoder through tests/stages/test_stages_export.py and tests/stages/test_stages_missing_pipeline.py.
NARROW = 6


def tiny_ol3i_schema(tiny):
    from amfmedit.data import Schema

    return Schema.load(tiny.path / "schema.json")


def _tabular(name, schema, missing="token", n_cont=None):
    """Encoder ``name`` of the schema's table (its first ``n_cont`` continuous features when given)."""
    torch.manual_seed(0)
    return build_tabular_encoder(name, n_cont_features=n_cont or schema.n_cont, cat_cardinalities=schema.cardinalities,
                                 missing=missing, **TINY_ENCODERS[name])


def _with_absent_vectors(model):
    """Non-zero absent vectors (they start at zero), so that presence changes the output."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("absent"):
                p.copy_(torch.linspace(-1, 1, p.numel()).view_as(p))
    return model.eval()


def _rows(tiny, model, n=None, n_cont=None):
    """The graph's inputs for test rows: as prepared (the first ``n_cont`` continuous features when given),
    plus missing values and absent images."""
    from amfmedit.data import load_prepared

    ds = load_prepared(tiny)
    rows = ds.indices("test")[:n]
    rng = np.random.default_rng(0)
    x_cont, x_cat = np.asarray(ds.x_cont[rows])[:, :n_cont], np.asarray(ds.x_cat[rows])
    missing = rng.random((len(rows), x_cont.shape[1] + x_cat.shape[1])) < 0.25
    missing[1] = True  # a row without any feature value
    x_cont = np.where(missing[:, : x_cont.shape[1]], 0.0, x_cont).astype(np.float32)  # imputed: the mean
    x_cat = np.where(missing[:, x_cont.shape[1]:], 0, x_cat)
    image_present = np.arange(len(rows)) % 3 != 0
    images = np.where(image_present[:, None, None, None], np.asarray(ds.images[rows]), 0).astype(np.uint8)
    pool = {"image": images, "x_cont": x_cont, "x_cat": x_cat, "missing": missing, "image_present": image_present,
            "table_present": ~missing.all(axis=1)}
    return {k: pool[k] for k in ExportedClassifier(model).input_names}


def _eager(model, arrays):
    """The logits of the model called as train.tasks.infer calls it (what the graph must reproduce)."""
    with torch.no_grad():
        t = {k: torch.from_numpy(v) for k, v in arrays.items()}
        image = t["image"].float() / 255.0 if "image" in t else None
        return model(image, t.get("x_cont"), t.get("x_cat"), missing=t["missing"], image_present=t["image_present"],
                     table_present=t["table_present"]).logits.numpy()


def max_prob_delta(logits_a, logits_b):
    """max |softmax(a) - softmax(b)| over rows and classes."""
    a, b = (torch.softmax(torch.from_numpy(z).double(), dim=1) for z in (logits_a, logits_b))
    return float((a - b).abs().max())


def _check_parity(model, arrays, path):
    info = export_onnx(model, {k: v[:2] for k, v in arrays.items()}, path)
    onnx = OnnxRunner(path)
    # every graph takes the three masks, whether this model reads them or not
    assert [s["name"] for s in info["inputs"]] == list(onnx.inputs) == list(ExportedClassifier(model).input_names)
    assert onnx.inputs[-3:] == ("missing", "image_present", "table_present")
    deltas = [max_prob_delta(onnx.logits(arrays), _eager(model, arrays))]
    one = {k: v[:1] for k, v in arrays.items()}  # the batch dimension is dynamic: one row works too
    deltas.append(max_prob_delta(onnx.logits(one), _eager(model, one)))
    assert onnx.logits(one).shape == (1, 2)
    return max(deltas), info


def _presence_matters(model, arrays):
    """The masks reach the model: all rows complete gives other logits than the rows as they are."""
    complete = {**arrays, "missing": np.zeros_like(arrays["missing"]),
                "image_present": np.ones_like(arrays["image_present"]),
                "table_present": np.ones_like(arrays["table_present"])}
    return max_prob_delta(_eager(model, arrays), _eager(model, complete)) > 1e-4


@needs_onnx
@pytest.mark.parametrize("encoder", sorted(TABULAR_ENCODERS))
@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_onnx_parity_for_every_fusion_and_tabular_encoder(fusion, encoder, tiny_ol3i, tmp_path):
    schema = tiny_ol3i_schema(tiny_ol3i)
    tab = _tabular(encoder, schema, n_cont=NARROW)
    img = build_image_encoder("resnet18", in_channels=schema.image.channels)
    fus = build_fusion(fusion, **fusion_kwargs(fusion, d_img=img.d_out, d_tab=tab.d_out, n_classes=schema.n_classes))
    model = _with_absent_vectors(ImageTabularClassifier(img, tab, fus))
    arrays = _rows(tiny_ol3i, model, n_cont=NARROW)
    assert _presence_matters(model, arrays)
    delta, info = _check_parity(model, arrays, tmp_path / "m.onnx")
    assert delta <= TARGET, f"{fusion} + {encoder}: max |delta p| {delta:.2e}"
    assert (info["scan"] is not None) == any(getattr(m, "kind", None) == "mamba_block" for m in model.modules())


@needs_onnx
@pytest.mark.parametrize("modality", ["image", "tabular"])
def test_onnx_parity_for_the_supervised_baselines(modality, tiny_ol3i, tmp_path):
    schema = tiny_ol3i_schema(tiny_ol3i)
    enc = build_image_encoder("resnet18", in_channels=schema.image.channels) if modality == "image" \
        else _tabular("ft_mamba", schema)
    model = _with_absent_vectors(UnimodalClassifier(enc, n_classes=schema.n_classes, modality=modality))
    arrays = _rows(tiny_ol3i, model)
    assert _presence_matters(model, arrays)
    delta, info = _check_parity(model, arrays, tmp_path / "m.onnx")
    assert delta <= TARGET
    data = ["image"] if modality == "image" else ["x_cont", "x_cat"]
    assert [s["name"] for s in info["inputs"]] == data + ["missing", "image_present", "table_present"]
    if modality == "tabular":  # FT-Mamba: the graph holds the default scan form, switched on a copy of the model
        assert info["scan"] == EXPORT_SCAN
        blocks = [m for m in model.modules() if getattr(m, "kind", None) == "mamba_block"]
        assert blocks and all(m.impl is None for m in blocks)


@needs_onnx
@pytest.mark.parametrize("scan", [s for s in TRACEABLE_IMPLS if s != EXPORT_SCAN])  # the default: the baseline's case
def test_the_other_scan_form_exports_and_the_callers_model_keeps_its_scan(scan, tiny_ol3i, tmp_path):
    schema = tiny_ol3i_schema(tiny_ol3i)
    model = _with_absent_vectors(UnimodalClassifier(_tabular("ft_mamba", schema), n_classes=2, modality="tabular"))
    arrays = _rows(tiny_ol3i, model)
    info = export_onnx(model, {k: v[:2] for k, v in arrays.items()}, tmp_path / "m.onnx", scan=scan)
    assert info["scan"] == scan
    blocks = [m for m in model.modules() if getattr(m, "kind", None) == "mamba_block"]
    assert blocks and all(m.impl is None for m in blocks)  # a copy was switched
    assert max_prob_delta(OnnxRunner(tmp_path / "m.onnx").logits(arrays), _eager(model, arrays)) <= TARGET


def test_exported_classifier_scales_the_uint8_image_as_predict_does(tiny_ol3i):
    schema = tiny_ol3i_schema(tiny_ol3i)
    torch.manual_seed(0)
    model = UnimodalClassifier(build_image_encoder("resnet18", in_channels=1), n_classes=2, modality="image").eval()
    arrays = _rows(tiny_ol3i, model, 3)
    with torch.no_grad():
        want = model(image=torch.from_numpy(arrays["image"]).float() / 255.0,
                     image_present=torch.from_numpy(arrays["image_present"])).logits
        got = ExportedClassifier(model)(*(torch.from_numpy(v) for v in arrays.values()))
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert schema.image.channels == 1


def test_a_model_that_does_not_declare_its_inputs_is_refused():
    with pytest.raises(ValueError, match="must declare the inputs it reads"):
        ExportedClassifier(torch.nn.Linear(2, 2))


@needs_onnx
def test_a_model_without_absent_vectors_is_exported_without_its_presence_flags(tiny_ol3i, tmp_path):
    """A checkpoint written before absent-modality vectors checks its flags in Python, which a graph
    cannot hold: the graph scores its rows as complete, and predict refuses the rows that are not."""
    schema = tiny_ol3i_schema(tiny_ol3i)
    model = UnimodalClassifier(_tabular("ft_transformer", schema), n_classes=2, modality="tabular",
                               absent_vectors=False).eval()
    assert not reads_presence(model)
    arrays = _rows(tiny_ol3i, model)
    arrays["table_present"][:] = True
    export_onnx(model, {k: v[:2] for k, v in arrays.items()}, tmp_path / "m.onnx")
    assert max_prob_delta(OnnxRunner(tmp_path / "m.onnx").logits(arrays), _eager(model, arrays)) <= TARGET
