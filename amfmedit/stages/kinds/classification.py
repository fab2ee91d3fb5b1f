"""Classification kinds: binary (OL3I, AUC) and multiclass (DVM, top-1 accuracy).

Both predict class probabilities (softmax of C logits) and train with cross-entropy (eq. 13) or
its class-weighted form (eq. 12, :mod:`amfmedit.models.losses`). A binary classifier also has an
operating point (a threshold chosen on validation) and a recalibration with a bias.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from amfmedit.data.targets import ClassTarget
from amfmedit.errors import UserError, close_matches
from amfmedit.models.specs import OL3I_CLASS_WEIGHTS
from amfmedit.stages.kinds.base import LossChoice, Metric, PredictionKind, ProbeScore, Weights
from amfmedit.stats.bootstrap import bootstrap_metrics
from amfmedit.train.metrics import classification_metrics

#: Appendix A.3: class-balanced sampling for binary tasks, class 0 down-sampled x0.5, class 1 over-sampled x5.
BINARY_SAMPLER_WEIGHTS = (0.5, 5.0)
PROBE_LEVEL = 0.95


class ClassificationKind(PredictionKind):
    """What binary and multiclass classification share."""

    has_calibration = True
    loss_choices = {
        "ce": "cross-entropy: eq. 12 with --loss-weights, else eq. 13",
        "focal": "focal loss (Lin et al. 2017) with --loss-weights as α and --focal-gamma as γ: the authors' OL3I loss",
    }

    def head_size(self, schema) -> int:
        return schema.n_classes

    def target_names(self, schema) -> list[str]:
        return list(schema.class_names)

    def check_weights(self, weights: Weights, schema) -> None:
        for name, w in (("--sampler-weights", weights.sampler), ("--loss-weights", weights.loss)):
            if w and len(w) != schema.n_classes:
                raise UserError(f"{name} {','.join(map(str, w))}: need one weight per class ({schema.n_classes})")
            if w and (min(w) < 0 or max(w) <= 0):
                raise UserError(f"{name} {','.join(map(str, w))}: weights must be >= 0 with one positive")

    def loss(self, weights: Weights) -> Callable:
        """Eq. 12 (class-weighted cross-entropy) with loss weights, else eq. 13."""
        from amfmedit.models import losses

        if weights.loss:
            return lambda logits, y: losses.weighted_ce_loss(logits, y, weights.loss)
        return losses.ce_loss

    def training_loss(self, weights: Weights, choice: LossChoice) -> Callable:
        """``--loss focal``: :func:`~amfmedit.models.losses.focal_loss`; ``ce`` or none: :meth:`loss`."""
        from amfmedit.models import losses

        self.check_loss(choice)
        if choice.name == "focal":
            alpha, gamma = weights.loss or None, choice.focal_gamma
            return lambda logits, y: losses.focal_loss(logits, y, gamma, alpha)
        return self.loss(weights)

    def predictions(self, output):
        import torch

        return torch.softmax(output.float(), dim=-1)

    def validation_metrics(self, outputs: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        m = classification_metrics(outputs, targets)
        m.pop("n")
        eps = 1e-7
        labels = np.asarray(targets, dtype=np.int64)
        m["loss"] = (float(-np.mean(np.log(np.clip(outputs[np.arange(len(labels)), labels], eps, 1.0))))
                     if len(labels) else math.nan)
        return m

    def explain_target(self, schema, requested: str | int | None) -> int | None:
        """``--target``: a class name or index; None -> :meth:`default_target`."""
        if requested is None:
            return self.default_target(schema)
        names = [str(c) for c in schema.class_names]
        if str(requested) in names:
            return names.index(str(requested))
        try:
            idx = int(requested)
        except (TypeError, ValueError):
            idx = -1
        if 0 <= idx < schema.n_classes:
            return idx
        hint = close_matches(str(requested), names)
        shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
        raise UserError(f"--target {requested}: not a class of dataset {schema.name} (classes: {shown})"
                        + (f"; did you mean {hint}?" if hint else ""))

    def default_target(self, schema) -> int | None:
        return None

    def cam_target(self, schema, requested: str | int | None) -> int:
        """The class whose evidence Grad-CAM draws (``--target``; binary: the positive class)."""
        idx = self.explain_target(schema, requested)
        if idx is None:
            raise UserError(f"dataset {schema.name} has {schema.n_classes} classes: pass --target CLASS "
                            f"(e.g. --target {schema.class_names[0]}) to choose the class whose evidence is drawn")
        return idx

    def cam_cases(self, dataset, n: int, target: int, *, split: str, seed: int):
        """Grad-CAM's cases: ``n`` rows of the target class and ``n`` of the others (Fig. 6)."""
        from amfmedit.explain.gradcam import select_cases

        return select_cases(dataset, n, target, split=split, seed=seed)

    def statistics(self, y_val, y_test, preds: dict, *, spec: str, split: str, schema, y_fit=None, horizons=None,
                   **kw):
        from amfmedit.stages import evalstats

        return evalstats.compute(y_val, y_test, preds, spec, split, class_names=schema.class_names,
                                 thresholded=self.has_operating_point, **kw)

    def predict_columns(self, raw: np.ndarray, op: dict | None, schema, *, calibration: str,
                        horizons: str | None = None) -> tuple[dict, str | None, list[str]]:
        """Each class's probability (temperature-scaled as fitted on validation with ``calibration``
        "temperature"), the decision at the operating point ``evaluate`` chose, the threshold."""
        from amfmedit.stages import evalstats
        from amfmedit.stats import calibration as calib

        warnings = []
        if op is None:  # first: predict puts why there is no record in front of it
            warnings.append("writing probabilities as trained, without decisions (no threshold is known)")
        if horizons:
            warnings.append(f"--horizons {horizons}: a {self.title} model has no time horizons; ignored")
        scaled = op is not None and calibration == "temperature"
        temperature = float(op["temperature"]) if scaled else 1.0
        bias = float(op.get("bias") or 0.0) if scaled else 0.0  # binary recalibration (Platt); 0 in older evaluations
        # the same recalibration evaluate fitted and scored (on the probabilities' log-odds)
        p = calib.apply_temperature(calib.logits_from_probs(raw), temperature, bias) if scaled else raw
        cols: dict = {f"prob_{name}": p[:, c] for c, name in enumerate(schema.class_names)}
        threshold_name = None
        if op is not None and op.get("threshold") is not None and self.has_operating_point:
            threshold_name = op["threshold_name"]
            cut = float(op["threshold"])  # on the probabilities as trained: the decision does not depend on calibration
            cols["decision"] = [schema.class_names[k] for k in (raw[:, 1] >= cut).astype(int)]
            cols["threshold"] = evalstats.calibrated_threshold(cut, temperature, bias) if scaled else cut
        elif op is not None:
            threshold_name = op["threshold_name"]
            cols["decision"] = [schema.class_names[k] for k in p.argmax(axis=1)] if len(p) else []
            cols["threshold"] = math.nan
        else:
            cols["decision"], cols["threshold"] = "", math.nan
        cols["threshold_name"] = threshold_name or ""
        cols["calibration"] = ((f"temperature {temperature:.4g}" + (f", bias {bias:+.4g}" if bias else "")) if scaled
                               else "none")
        return cols, threshold_name, warnings


class BinaryKind(ClassificationKind):
    """Two classes, class 1 the positive one (OL3I's ischaemic heart disease within a year)."""

    name = "binary"
    title = "binary classification"
    target = ClassTarget(n_classes=2, default_values=("0", "1"))
    headline = Metric("auc", "AUC", "AUC")
    pretrain_lr = 3e-4  # Appendix A.2 / reference config for OL3I
    has_operating_point = True

    def check(self, schema, where: str) -> None:
        if schema.n_classes != 2:
            raise UserError(f"{where}: a binary task needs two classes, the dataset has {schema.n_classes} "
                            f"({', '.join(map(str, schema.class_names[:5]))}); prepare it with task = \"multiclass\"")

    def default_weights(self, schema) -> Weights:
        return Weights(sampler=BINARY_SAMPLER_WEIGHTS, loss=OL3I_CLASS_WEIGHTS)

    def selectable(self, targets: np.ndarray) -> str | None:
        present = np.unique(targets)
        if len(present) < 2:
            return f"holds only class {int(present[0])}" if len(present) else "is empty"
        return None

    def probe_score(self, outputs: np.ndarray, targets: np.ndarray, seed: int) -> ProbeScore:
        """The probe's AUC with its DeLong interval; chance 0.5."""
        from amfmedit.stats.delong import delong_auc, undefined_reason

        value = classification_metrics(outputs, targets)["auc"]
        y = np.asarray(targets)
        if undefined_reason(int((y == 1).sum()), int((y == 0).sum())):  # DeLong needs two rows of each class
            return ProbeScore(value, None, None, None, None, False, PROBE_LEVEL)
        ci = delong_auc(y, outputs[:, 1], level=PROBE_LEVEL)
        return ProbeScore(value, float(ci.low), float(ci.high), "DeLong", 0.5, bool(ci.low > 0.5), PROBE_LEVEL)

    def default_target(self, schema) -> int:
        return 1  # the positive class

    def summary_columns(self, schema) -> list[str]:
        return [f"label {c}" for c in schema.class_names] + ["positives"]

    def summary_cells(self, counts: dict) -> list[str]:
        values = list(counts["classes"].values())
        return [str(v) for v in values] + [f"{values[-1] / max(counts['rows'], 1):.1%}"]


class MulticlassKind(ClassificationKind):
    """More than two classes (DVM's car models); IG explains each row's own class."""

    name = "multiclass"
    title = "multiclass classification"
    target = ClassTarget()
    headline = Metric("acc", "ACC", "top-1 accuracy")
    pretrain_lr = 3e-3  # Appendix A.2 for DVM

    def selectable(self, targets: np.ndarray) -> str | None:
        return "is empty" if len(targets) == 0 else None

    def probe_score(self, outputs: np.ndarray, targets: np.ndarray, seed: int) -> ProbeScore:
        """The probe's top-1 accuracy with a stratified bootstrap interval; chance: the majority class's share."""
        targets = np.asarray(targets)
        value = classification_metrics(outputs, targets)["acc"]
        if len(np.unique(targets)) < 2:
            return ProbeScore(value, None, None, None, None, False, PROBE_LEVEL)
        iv = bootstrap_metrics(targets, outputs, seed=seed, level=PROBE_LEVEL)["acc"]
        chance = float(max(np.bincount(targets).max() / len(targets), 1.0 / outputs.shape[1]))
        return ProbeScore(value, float(iv.low), float(iv.high), "bootstrap", chance, bool(iv.low > chance),
                          PROBE_LEVEL)

    def summary_columns(self, schema) -> list[str]:
        return ["classes present", "smallest class"]

    def summary_cells(self, counts: dict) -> list[str]:
        present = [v for v in counts["classes"].values() if v]
        return [str(len(present)), str(min(present) if present else 0)]
