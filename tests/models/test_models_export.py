"""Every classifier of the zoo through ONNX: the exported graph gives the PyTorch model's probabilities.

The models are tiny and untrained (the export does not care what the weights are), shaped by the
tiny OL3I cohort's schema and fed its test rows as prepared. Needs the ``export`` extra (onnx,
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
from amfmedit.models.export import EXPORT_PACKAGES, ExportedClassifier, OnnxRunner, export_onnx, missing_packages
from amfmedit.models.scan import TRACEABLE_IMPLS
from tiny_settings import TINY_ENCODERS, fusion_kwargs

needs_onnx = pytest.mark.skipif(bool(missing_packages()), reason=f"the export extra is not installed "
                                f"({', '.join(missing_packages())} of {', '.join(EXPORT_PACKAGES)} missing)")
TARGET = 1e-5  # max |delta probability| in float32 (the target)


def tiny_ol3i_schema(tiny):
    from amfmedit.data import Schema

    return Schema.load(tiny.path / "schema.json")


def _tabular(name, schema):
    torch.manual_seed(0)
    return build_tabular_encoder(name, n_cont_features=schema.n_cont, cat_cardinalities=schema.cardinalities,
                                 **TINY_ENCODERS[name])


def _rows(tiny, model, n=None):
    from amfmedit.data import load_prepared

    ds = load_prepared(tiny)
    rows = ds.indices("test")[:n]
    pool = {"image": ds.images, "x_cont": ds.x_cont, "x_cat": ds.x_cat}
    return {k: np.asarray(pool[k][rows]) for k in model.inputs}


def _eager(model, arrays):
    """The logits of the module that is exported, run eagerly (what the graph must reproduce)."""
    with torch.no_grad():
        return ExportedClassifier(model).eval()(*(torch.from_numpy(arrays[k]) for k in model.inputs)).numpy()


def max_prob_delta(logits_a, logits_b):
    """max |softmax(a) - softmax(b)| over rows and classes."""
    a, b = (torch.softmax(torch.from_numpy(z).double(), dim=1) for z in (logits_a, logits_b))
    return float((a - b).abs().max())


def _check_parity(model, arrays, path):
    info = export_onnx(model, {k: v[:2] for k, v in arrays.items()}, path)
    onnx = OnnxRunner(path)
    assert [s["name"] for s in info["inputs"]] == list(model.inputs) and onnx.inputs == tuple(model.inputs)
    deltas = [max_prob_delta(onnx.logits(arrays), _eager(model, arrays))]
    one = {k: v[:1] for k, v in arrays.items()}  # the batch dimension is dynamic: one row works too
    deltas.append(max_prob_delta(onnx.logits(one), _eager(model, one)))
    assert onnx.logits(one).shape == (1, 2)
    return max(deltas), info


@needs_onnx
@pytest.mark.parametrize("encoder", sorted(TABULAR_ENCODERS))
@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_onnx_parity_for_every_fusion_and_tabular_encoder(fusion, encoder, tiny_ol3i, tmp_path):
    schema = tiny_ol3i_schema(tiny_ol3i)
    tab = _tabular(encoder, schema)
    img = build_image_encoder("resnet18", in_channels=schema.image.channels)
    fus = build_fusion(fusion, **fusion_kwargs(fusion, d_img=img.d_out, d_tab=tab.d_out, n_classes=schema.n_classes))
    model = ImageTabularClassifier(img, tab, fus).eval()
    delta, info = _check_parity(model, _rows(tiny_ol3i, model), tmp_path / "m.onnx")
    assert delta <= TARGET, f"{fusion} + {encoder}: max |delta p| {delta:.2e}"
    assert (info["scan"] is not None) == any(getattr(m, "kind", None) == "mamba_block" for m in model.modules())


@needs_onnx
@pytest.mark.parametrize("modality", ["image", "tabular"])
def test_onnx_parity_for_the_supervised_baselines(modality, tiny_ol3i, tmp_path):
    schema = tiny_ol3i_schema(tiny_ol3i)
    enc = build_image_encoder("resnet18", in_channels=schema.image.channels) if modality == "image" \
        else _tabular("ft_mamba", schema)
    model = UnimodalClassifier(enc, n_classes=schema.n_classes, modality=modality).eval()
    delta, info = _check_parity(model, _rows(tiny_ol3i, model), tmp_path / "m.onnx")
    assert delta <= TARGET
    assert [s["name"] for s in info["inputs"]] == (["image"] if modality == "image" else ["x_cont", "x_cat"])


@needs_onnx
@pytest.mark.parametrize("scan", TRACEABLE_IMPLS)
def test_both_scan_forms_export_and_the_callers_model_keeps_its_scan(scan, tiny_ol3i, tmp_path):
    schema = tiny_ol3i_schema(tiny_ol3i)
    model = UnimodalClassifier(_tabular("ft_mamba", schema), n_classes=2, modality="tabular").eval()
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
    image = _rows(tiny_ol3i, model, 3)["image"]
    with torch.no_grad():
        want = model(image=torch.from_numpy(image).float() / 255.0).logits
        got = ExportedClassifier(model)(torch.from_numpy(image))
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert schema.image.channels == 1


def test_a_model_that_does_not_declare_its_inputs_is_refused():
    with pytest.raises(ValueError, match="must declare the inputs it reads"):
        ExportedClassifier(torch.nn.Linear(2, 2))
