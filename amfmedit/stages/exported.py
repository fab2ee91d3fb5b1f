"""An export folder read back (``predict --model DIR``): its files checked, its model run.

The folder is written by :mod:`amfmedit.stages.export` (its docstring lists the files);
:func:`open_export` checks every file against ``SHA256SUMS`` before anything is read, and
:meth:`Exported.runner` runs the model on ONNX Runtime when it is installed, else on PyTorch.
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

FORMAT, FORMAT_VERSION = "amfmedit-export", 1
ONNX_FILE, TORCH_FILE = "model.onnx", "model.pt"
OPERATING_POINT_FILE, MANIFEST_FILE, CARD_FILE, HASH_FILE = ("operating_point.json", "export.json", "model_card.md",
                                                             "SHA256SUMS")
REQUIRED = (ONNX_FILE, TORCH_FILE, SCHEMA_FILE, OPERATING_POINT_FILE, MANIFEST_FILE)
RUNTIMES = ("auto", "onnxruntime", "pytorch")
INSTALL_HINT = "pip install 'amfmedit[export]'"


class OnnxPredictor:
    """An exported graph on ONNX Runtime: ``predictions(batches) -> (N, K)`` float64, the kind's outputs.

    ``batches`` yields :class:`~amfmedit.train.inputs.Batch` objects on the CPU (uint8 images).
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

    def runner(self, runtime: str = "auto", device: str | torch.device = "cpu") -> OnnxPredictor | TorchPredictor:
        """The model on ONNX Runtime (``auto``: when installed and on a CPU) or on PyTorch."""
        if runtime not in RUNTIMES:
            raise UserError(f"--runtime {runtime}: use {', '.join(RUNTIMES)}")
        has_ort = not missing_packages(("onnxruntime",))
        if runtime == "onnxruntime" and not has_ort:
            raise UserError(f"--runtime onnxruntime: onnxruntime is not installed; {INSTALL_HINT}, or pass "
                            "--runtime pytorch")
        if runtime == "onnxruntime" or (runtime == "auto" and has_ort and torch.device(device).type == "cpu"):
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
