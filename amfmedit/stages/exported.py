"""An export folder read back (``predict --model DIR``): its files checked, its model run.

The folder is written by :mod:`amfmedit.stages.export` (its docstring lists the files);
:func:`open_export` checks every file against ``SHA256SUMS`` before anything is read, and
:meth:`Exported.runner` runs the model on PyTorch when torch is importable (the faster on the CPUs
measured, docs/export.md), else on ONNX Runtime (a deployment without torch).
Both runners give the prediction kind's outputs (``kind.predictions`` of the logits: class
probabilities), the PyTorch one through :func:`amfmedit.train.tasks.infer`, the inference path
of ``evaluate`` and ``predict``. Nothing here reads a run folder.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from amfmedit.data import Schema
from amfmedit.data.schema import SCHEMA_FILE
from amfmedit.errors import UserError
from amfmedit.io import read_json, torch_load
from amfmedit.models import from_checkpoint
from amfmedit.models.export import OnnxRunner, missing_packages
from amfmedit.stages.kinds import kind_of
from amfmedit.train.tasks import infer

FORMAT, FORMAT_VERSION = "amfmedit-export", 2  # 2: the graph takes the missing mask and presence flags
ONNX_FILE, TORCH_FILE = "model.onnx", "model.pt"
OPERATING_POINT_FILE, MANIFEST_FILE, CARD_FILE, HASH_FILE = ("operating_point.json", "export.json", "model_card.md",
                                                             "SHA256SUMS")
REQUIRED = (ONNX_FILE, TORCH_FILE, SCHEMA_FILE, OPERATING_POINT_FILE, MANIFEST_FILE)
RUNTIMES = ("auto", "onnxruntime", "pytorch")
INSTALL_HINT = "pip install 'amfmedit[export]'"


class OnnxPredictor:
    """An exported graph on ONNX Runtime: ``predictions(batches) -> (N, K)`` float64, the kind's outputs.

    ``batches`` yields :class:`~amfmedit.train.inputs.Batch` objects on the CPU (uint8 images, the
    missing mask and presence flags): each of the graph's inputs is the batch's field of that name.
    """

    name = "onnxruntime"
    device = torch.device("cpu")

    def __init__(self, path: str | Path, kind, *, threads: int | None = None) -> None:
        self.graph, self.kind = OnnxRunner(path, threads=threads), kind
        self.inputs, self.version = self.graph.inputs, self.graph.version

    def predictions(self, batches: Iterable) -> np.ndarray:
        out = []
        for b in batches:
            logits = self.graph.logits({k: getattr(b, k).cpu().numpy() for k in self.inputs})
            out.append(self.kind.predictions(torch.from_numpy(logits)).numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros((0, 0))


class TorchPredictor:
    """The same model on PyTorch through :func:`~amfmedit.train.tasks.infer` (eval mode, no autocast)."""

    name = "pytorch"

    def __init__(self, model: nn.Module, kind, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model, self.kind = model.to(self.device).eval(), kind
        self.inputs, self.version = tuple(model.inputs), torch.__version__

    def predictions(self, batches: Iterable) -> np.ndarray:
        with torch.no_grad():
            out = infer(self.model, self.kind, batches, use_image="image" in self.inputs)
        return np.concatenate(out) if out else np.zeros((0, 0))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Exported:
    """An export folder whose files passed their hashes."""

    path: Path
    manifest: dict
    schema: Schema
    operating_point: dict

    @property
    def stage(self) -> str:
        return self.manifest["stage"]

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(s["name"] for s in self.manifest["inputs"])

    @property
    def modality(self) -> str:
        """``multimodal``, ``image`` or ``tabular``: which inputs the model reads."""
        return self.manifest["modality"]

    @property
    def reads_presence(self) -> bool:
        """Whether the model scores rows lacking a modality (:func:`amfmedit.models.export.reads_presence`)."""
        return bool(self.manifest["reads_presence"])

    def runner(self, runtime: str = "auto", device: str | torch.device = "cpu") -> OnnxPredictor | TorchPredictor:
        """The model on PyTorch or on ONNX Runtime.

        ``auto`` is PyTorch: this module imports torch, so torch is importable wherever it runs, and
        PyTorch eager was the faster of the two on the CPUs measured (docs/export.md). ONNX Runtime is
        for ``--runtime onnxruntime`` and for deployments without torch, which run ``model.onnx``
        themselves (docs/export.md has the example).
        """
        if runtime not in RUNTIMES:
            raise UserError(f"--runtime {runtime}: use {', '.join(RUNTIMES)}")
        if runtime == "onnxruntime":
            if missing_packages(("onnxruntime",)):
                raise UserError(f"--runtime onnxruntime: onnxruntime is not installed; {INSTALL_HINT}, or pass "
                                "--runtime pytorch")
            return OnnxPredictor(self.path / ONNX_FILE, kind_of(self.schema))
        ckpt = torch_load(self.path / TORCH_FILE, hint=f"export the model again (`amfmedit export --out {self.path} "
                                                        "--force`)")
        return TorchPredictor(from_checkpoint(ckpt), kind_of(self.schema), device)


def open_export(path: str | Path, *, option: str = "--model") -> Exported:
    """The export folder at ``path``, every file checked against ``SHA256SUMS`` first."""
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{option} {path}: no such folder; pass a folder written by `amfmedit export`")
    sums = path / HASH_FILE
    if not sums.is_file():
        raise UserError(f"{option} {path}: not an amfmedit export (no {HASH_FILE}); pass a folder written by "
                        "`amfmedit export`")
    listed = {}
    for line in sums.read_text(encoding="utf-8", errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        if line.strip():
            listed[name.strip()] = digest.strip()
    redo = f"copy the export again from its source or re-export it (`amfmedit export --out {path} --force`)"
    for name in REQUIRED:
        if name not in listed:
            raise UserError(f"{sums}: {name} is not listed; the folder is damaged; {redo}")
    for name, digest in listed.items():
        file = path / name
        if not file.is_file():
            raise UserError(f"{file}: missing (listed in {HASH_FILE}); {redo}")
        if sha256(file) != digest:
            raise UserError(f"{file}: fails its SHA-256 check ({HASH_FILE}): the file was changed or damaged; {redo}")
    manifest = read_json(path / MANIFEST_FILE, hint=redo)
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path / MANIFEST_FILE}: format {manifest.get('format')!r} version "
                        f"{manifest.get('format_version')!r}; this amfmedit reads {FORMAT} version {FORMAT_VERSION}")
    return Exported(path, manifest, Schema.load(path / SCHEMA_FILE), read_json(path / OPERATING_POINT_FILE, hint=redo))
