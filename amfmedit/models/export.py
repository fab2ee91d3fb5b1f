"""A trained classifier as an ONNX graph, and ONNX Runtime running one.

Knows models only (no schema, no run folder): :mod:`amfmedit.stages.export` adds the
preprocessing, the operating point and the model card around the graph, and
:mod:`amfmedit.stages.exported` turns the graph's logits into the prediction kind's outputs
(the PyTorch side runs :func:`amfmedit.train.tasks.infer`, the one inference path).

What is exported is :class:`ExportedClassifier`: the classifier with the image scaling that
``predict`` applies in front of it, taking exactly the arrays the preprocessing produces and
calling the model as :func:`amfmedit.train.tasks.infer` does::

    image          uint8   (batch, C, H, W)   windowed / resized as prepare stored it (zeros: no image)
    x_cont         float32 (batch, n_cont)    imputed and z-scored continuous features
    x_cat          int64   (batch, n_cat)     category codes (0 = missing or unseen)
    missing        bool    (batch, F)         the feature had no value before imputation (continuous first)
    image_present  bool    (batch,)           the row has an image
    table_present  bool    (batch,)           the row has at least one feature value
    -> logits float32 (batch, head size)

The data arrays are those the classifier reads (``model.inputs``: a tabular baseline takes no
image, an image baseline no table); the three masks are always inputs, whether or not this
model reads them (a model in ``--missing impute`` mode ignores ``missing``), so every graph is
called the same way. A model written before absent-modality vectors does not take the presence
flags (:func:`reads_presence`): ``predict`` refuses rows lacking a modality for it instead.

Why ``torch.onnx.export(dynamo=True)`` (``torch.export`` underneath) and not TorchScript: every
classifier of the zoo exports through it, with a dynamic batch dimension; TorchScript is
deprecated upstream and cannot script the scan's autograd Functions, thread pool and compiled
kernel anyway. Those are what made Mamba unexportable elsewhere (mamba-ssm's CUDA op); here the
scan is switched to one of its plain-tensor forms (``TRACEABLE_IMPLS`` of
:mod:`amfmedit.models.scan`) on a copy of the model before tracing, so the graph holds the
recurrence as ordinary ONNX operators, its loops unrolled over the fixed number of tokens.
"""

from __future__ import annotations

import copy
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from amfmedit.models.mamba import set_scan_impl
from amfmedit.models.scan import TRACEABLE_IMPLS

#: The scan form written into exported graphs, chosen by the exported model's speed on ONNX
#: Runtime (benchmarks/bench_export.py, docs/export.md): one step at a time is the faster at
#: batch 64 (the chunked form's materialised (L, B, N, D) tensors cost more memory traffic than
#: its fewer ops save); at batch 1 the two trade places from one model to the next.
EXPORT_SCAN = "traceable-sequential"
#: dtype of each input the exported graph may take
INPUT_DTYPES = {"image": np.uint8, "x_cont": np.float32, "x_cat": np.int64, "missing": np.bool_,
                "image_present": np.bool_, "table_present": np.bool_}
DATA_INPUTS = ("image", "x_cont", "x_cat")
#: inputs of every exported graph, after the data arrays the model reads
MASKS = ("missing", "image_present", "table_present")
OUTPUT = "logits"
BATCH = "batch"  # the name of the dynamic first dimension
#: what ``torch.onnx.export(dynamo=True)`` and a runtime need, by import name
EXPORT_PACKAGES = ("onnx", "onnxscript", "onnxruntime")


def missing_packages(names=EXPORT_PACKAGES) -> list[str]:
    """The packages of ``names`` that are not importable (looked up without importing them)."""
    return [n for n in names if importlib.util.find_spec(n) is None]


def reads_presence(model: nn.Module) -> bool:
    """Whether ``model`` takes the ``image_present`` / ``table_present`` flags: False for a classifier
    written before absent-modality vectors, which scores only rows that have every modality."""
    return bool((getattr(model, "config", None) or {}).get("absent_vectors", True))


class ExportedClassifier(nn.Module):
    """A classifier as exported: ``forward(*inputs) -> logits (B, head size)``.

    ``inputs`` (:attr:`input_names`) are the data arrays named by ``model.inputs``, in that order,
    then :data:`MASKS`, with the dtypes of :data:`INPUT_DTYPES`; the uint8 image is scaled to [0, 1]
    here, as ``predict`` scales it, and everything goes to the model as
    :func:`amfmedit.train.tasks.infer` passes it.
    """

    def __init__(self, model: nn.Module) -> None:
        data = tuple(getattr(model, "inputs", ()))
        if not data or set(data) - set(DATA_INPUTS):
            raise ValueError(f"{type(model).__name__} must declare the inputs it reads (model.inputs, a tuple of "
                             f"{DATA_INPUTS}), however: inputs={data!r}")
        super().__init__()
        self.model, self.data_inputs, self.presence = model, data, reads_presence(model)
        self.input_names = data + MASKS

    def forward(self, *args: Tensor) -> Tensor:
        kw = dict(zip(self.input_names, args))
        image = kw["image"].float() / 255.0 if "image" in kw else None
        # a model without absent-modality vectors checks its flags in Python (data-dependent, which
        # torch.export cannot trace); None means "every row has it", which predict guarantees for such a model
        present = {k: kw[k] if self.presence else None for k in ("image_present", "table_present")}
        return self.model(image, kw.get("x_cont"), kw.get("x_cat"), missing=kw["missing"], **present).logits


def input_specs(example: dict[str, np.ndarray]) -> list[dict]:
    """``[{"name", "dtype", "shape"}]`` of the example arrays, the first dimension named :data:`BATCH`."""
    return [{"name": k, "dtype": np.dtype(INPUT_DTYPES[k]).name, "shape": [BATCH, *map(int, v.shape[1:])]}
            for k, v in example.items()]


def export_onnx(model: nn.Module, example: dict[str, np.ndarray], path: str | Path, *, scan: str = EXPORT_SCAN) -> dict:
    """Write ``model`` (a classifier declaring ``inputs``) as ONNX to ``path``; returns what was done.

    ``example``: one array per input of :attr:`ExportedClassifier.input_names` (the data arrays of
    ``model.inputs``, then :data:`MASKS`), at least 2 rows (torch.export fixes a dimension of size 1).
    The batch dimension is dynamic. ``scan`` is the plain-tensor scan FT-Mamba
    runs in the graph (``TRACEABLE_IMPLS``); the caller's model is not changed. Returns
    ``{"exporter", "opset", "scan", "inputs", "output"}``.
    """
    if scan not in TRACEABLE_IMPLS:
        raise ValueError(f"scan must be one of {TRACEABLE_IMPLS}, however: {scan=}")
    wrapped = ExportedClassifier(copy.deepcopy(model)).eval()
    n_mamba = set_scan_impl(wrapped, scan)
    names = list(wrapped.input_names)
    if list(example) != names:
        raise ValueError(f"example must hold {names} in this order, however: {list(example)}")
    if min(len(v) for v in example.values()) < 2:
        raise ValueError("example needs at least 2 rows: torch.export specialises a dimension of size 1")
    args = tuple(torch.from_numpy(np.ascontiguousarray(example[n], dtype=INPUT_DTYPES[n])) for n in names)
    batch = torch.export.Dim(BATCH)
    with warnings.catch_warnings(), torch.no_grad():
        # the exporter warns that dims sharing one constraint keep one name: that is the point
        warnings.simplefilter("ignore")
        program = torch.onnx.export(wrapped, args, input_names=names, output_names=[OUTPUT], dynamo=True, optimize=False,
                                    dynamic_shapes=(tuple({0: batch} for _ in names),), verbose=False)
    program.save(str(path))
    return {"exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}",
            "opset": int(program.model.opset_imports.get("", 0)), "scan": scan if n_mamba else None,
            "inputs": input_specs(example),
            "output": {"name": OUTPUT, "dtype": "float32", "shape": [BATCH, "head size"]}}


class OnnxRunner:
    """An exported graph on ONNX Runtime's CPU provider: ``logits({input: array}) -> (B, head size)``."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or torch.get_num_threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # warnings about unused initialisers are not the user's concern
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = tuple(i.name for i in self.session.get_inputs())
        self.version = ort.__version__

    def logits(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """``batch``: at least the graph's inputs (:attr:`inputs`), by name."""
        feed = {k: np.ascontiguousarray(batch[k], dtype=INPUT_DTYPES[k]) for k in self.inputs}
        return self.session.run([OUTPUT], feed)[0]
