"""``export``: one fine-tuned classifier as a folder that describes itself and runs without the run.

``amfmedit export --out DIR`` writes (built aside, renamed into place when complete)::

    DIR/model.onnx            the classifier, uint8 image / float32 x_cont / int64 x_cat / bool missing,
                              image_present, table_present -> logits
                              (amfmedit.models.export: ONNX through torch.onnx.export's dynamo path)
    DIR/model.pt              the same weights as a checkpoint {kind, config, state_dict} for
                              PyTorch, what predict --model runs by default (loaded weights_only)
    DIR/schema.json           the preprocessing: the prepared dataset's schema (imputation medians,
                              z-score statistics, category codes, HU window, image size)
    DIR/operating_point.json  evaluate's threshold (chosen on validation) and calibration
    DIR/export.json           what the folder holds: inputs, output, class names, the classifier,
                              its run and stage, versions, the ONNX-vs-PyTorch check on the test split
    DIR/model_card.md         trained on what, metrics with intervals, intended use, limits
    DIR/SHA256SUMS            the SHA-256 of every file above (``sha256sum -c SHA256SUMS`` checks it)

``predict --model DIR`` (:mod:`amfmedit.stages.predict`) opens the folder with
:func:`amfmedit.stages.exported.open_export`, which checks every hash first, and scores new rows
on PyTorch (``--runtime onnxruntime``: the ONNX graph on ONNX Runtime).
"""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from amfmedit import __version__
from amfmedit.data.prepared import dataset_path
from amfmedit.errors import UserError
from amfmedit.io import read_json, staging_dir, torch_save, write_json, write_text
from amfmedit.models import model_config, to_checkpoint
from amfmedit.models.export import EXPORT_PACKAGES, ExportedClassifier, export_onnx, missing_packages, reads_presence
from amfmedit.stages import names
from amfmedit.stages.classify import best_model
from amfmedit.stages.common import load_dataset
from amfmedit.stages.configs import ExportConfig, RunOptions
from amfmedit.stages.evaluate import OPERATING_FILE
from amfmedit.stages.exported import (
    CARD_FILE,
    FORMAT,
    FORMAT_VERSION,
    HASH_FILE,
    INSTALL_HINT,
    MANIFEST_FILE,
    ONNX_FILE,
    OPERATING_POINT_FILE,
    SCHEMA_FILE,
    TORCH_FILE,
    OnnxPredictor,
    TorchPredictor,
    sha256,
)
from amfmedit.stages.kinds import kind_of
from amfmedit.stages.export_card import model_card
from amfmedit.stages.predict import operating_point
from amfmedit.stages.selection import Choice, choose_model
from amfmedit.train import rundir
from amfmedit.train.inputs import DeviceData

#: the exported graph should give the PyTorch model's probabilities to within PARITY_TARGET on the test
#: split (a warning otherwise); beyond PARITY_LIMIT the export is refused (a graph that computes something else)
PARITY_TARGET, PARITY_LIMIT = 1e-5, 1e-4


@dataclass
class ExportResult:
    run: str
    stage: str
    out: Path
    parity: float  # max |delta probability|, ONNX Runtime vs PyTorch, on the test split
    rows: int  # test rows checked
    warnings: list[str] = field(default_factory=list)
    model_choice: str = ""  # how the model was chosen (amfmedit.stages.selection)


def _check_out(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not force:
        raise UserError(f"--out {out}: exists; pass --force to replace it or choose another folder")
    if not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST_FILE).is_file()):
        raise UserError(f"--out {out}: exists and is not an amfmedit export, so --force will not replace it; "
                        "choose another folder")


def _finished_stage(run: rundir.Run, stage: str | None, data_dir) -> Choice:
    """The run's model for export (:func:`amfmedit.stages.selection.choose_model`), with an
    unfinished training named as such."""
    if stage is not None and names.parse_stage(stage) is not None and run.stage(stage).is_dir() \
            and not run.is_complete(stage):
        raise UserError(f"--stage {stage}: not finished (no {rundir.MARKER} marker in {run.stage(stage)}); finish it "
                        "with `amfmedit finetune ... --resume` or export a finished classifier")
    return choose_model(run, "export", stage, data_dir=data_dir)


def _parity(onnx: OnnxPredictor, torch_: TorchPredictor, data: DeviceData, rows: np.ndarray, batch_size: int,
            use_image: bool) -> float:
    """max |delta| of the kind's outputs (probabilities), ONNX Runtime vs PyTorch, over ``rows`` (0.0 for none)."""
    if not len(rows):
        return 0.0

    def batches():
        return (data.batch(rows[i:i + batch_size], images=use_image) for i in range(0, len(rows), batch_size))

    return float(np.abs(onnx.predictions(batches()) - torch_.predictions(batches())).max())


def export(cfg: ExportConfig, opts: RunOptions) -> ExportResult:
    """Write one finished classifier of a run, with what it needs to run elsewhere, to ``cfg.out``."""
    missing = missing_packages()
    if missing:
        raise UserError(f"amfmedit export needs {', '.join(EXPORT_PACKAGES)}; {', '.join(missing)} not installed: "
                        f"{INSTALL_HINT}")
    if cfg.batch_size < 1:
        raise UserError(f"--batch-size {cfg.batch_size}: must be at least 1")
    out = Path(cfg.out)
    _check_out(out, opts.force)
    run = rundir.open_run(opts.runs_dir, opts.run)
    choice = _finished_stage(run, cfg.stage, opts.data_dir)
    stage = choice.stage
    model, ckpt = best_model(run.stage(stage))
    model.eval()
    op, why = operating_point(run, stage, int(ckpt["epoch"]))
    if op is None:
        raise UserError(f"{why}: an export carries the threshold and calibration evaluate chooses")
    evaluation = read_json(run.stage(names.EVALUATE) / names.EVAL_METRICS_FILE)
    ds = load_dataset(run, opts)
    schema = ds.schema
    kind = kind_of(schema)
    test = np.asarray(ds.indices("test"), dtype=np.int64)
    use_image = "image" in model.inputs
    data = DeviceData(ds, device=torch.device("cpu"), with_images=use_image)
    rows = test if len(test) >= 2 else np.arange(min(2, len(ds)))  # torch.export needs 2 example rows
    first = data.batch(rows[:2], images=use_image)
    example = {k: getattr(first, k).cpu().numpy() for k in ExportedClassifier(model).input_names}
    eval_op = read_json(run.stage(names.EVALUATE) / OPERATING_FILE)
    record = {**op, "stage": stage, "positive_class": eval_op.get("positive_class"), "note": eval_op.get("note"),
              "threshold_spec": eval_op.get("threshold_spec"), "chosen_on": eval_op.get("chosen_on")}

    warnings: list[str] = []
    with staging_dir(out, force=opts.force) as tmp:
        tmp = Path(tmp)
        info = export_onnx(model, example, tmp / ONNX_FILE)
        onnx_runner = OnnxPredictor(tmp / ONNX_FILE, kind)
        parity = _parity(onnx_runner, TorchPredictor(model, kind), data, test, cfg.batch_size, use_image)
        if not parity <= PARITY_LIMIT:
            raise UserError(f"{stage}: the exported graph's probabilities differ from the PyTorch model's by "
                            f"{parity:.2e} on the test split (limit {PARITY_LIMIT:g}); nothing was written")
        if parity > PARITY_TARGET:
            warnings.append(f"the exported graph's probabilities differ from the PyTorch model's by up to {parity:.2e} "
                            f"on the test split (target {PARITY_TARGET:g}); see export.json")
        torch_save(to_checkpoint(model, epoch=int(ckpt["epoch"])), tmp / TORCH_FILE)
        shutil.copyfile(dataset_path(run.data, opts.data_dir or run.data_dir) / SCHEMA_FILE, tmp / SCHEMA_FILE)
        write_json(tmp / OPERATING_POINT_FILE, record)
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "created": dt.datetime.now(dt.timezone.utc)
            .isoformat(timespec="seconds"), "amfmedit": __version__,
            "run": run.name, "stage": stage, "title": op.get("title"), "best_epoch": int(ckpt["epoch"]),
            "modality": names.parse_stage(stage)["modality"], "reads_presence": reads_presence(model),
            "model": {**model_config(model), "parameters": sum(p.numel() for p in model.parameters()),
                      "onnx": ONNX_FILE, "torch": TORCH_FILE, **{k: info[k] for k in ("exporter", "opset", "scan")}},
            "inputs": info["inputs"], "output": info["output"], "class_names": schema.class_names,
            "image_column": schema.image_column, "id_column": schema.id_column,
            "preprocessing": SCHEMA_FILE, "operating_point": OPERATING_POINT_FILE,
            "parity": {"split": "test", "rows": int(len(test)), "max_abs_prob_delta": parity, "target": PARITY_TARGET,
                       "between": f"onnxruntime {onnx_runner.version} and PyTorch {torch.__version__} eager"},
        }
        write_json(tmp / MANIFEST_FILE, manifest)
        write_text(tmp / CARD_FILE, model_card(manifest, schema, record, evaluation, ds))
        files = sorted(p.name for p in tmp.iterdir() if p.is_file())
        write_text(tmp / HASH_FILE, "".join(f"{sha256(tmp / f)}  {f}\n" for f in files))
    return ExportResult(run.name, stage, out, parity, int(len(test)), warnings, choice.rule)
