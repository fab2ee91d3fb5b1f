"""Target codings: how ``prepare`` reads a cohort's outcome column(s) and codes them.

A prediction kind (:mod:`amfmedit.stages.kinds`) names the coding its outcome needs; the data
layer knows codings, never kinds. Every coding gives each row a **stratum** (the prepared
table's ``label`` column: what splits, label fractions and the class-balanced sampler group
by) and may add float columns of its own to the prepared table:

- :class:`ClassTarget`: a categorical label coded as class indices ``0..C-1`` in the order of
  ``class_names`` (the vocabulary listed in the spec, ``table.label_values``, a kind's default
  vocabulary, or the sorted values found); the stratum is the class.
- :class:`TimeEventTarget`: time to event with right censoring (``table.time``, ``table.event``);
  columns ``time`` and ``event`` (1 = the event was observed, 0 = censored at ``time``); the
  stratum is the event indicator, so splits are stratified by event.
- :class:`NumericTarget`: a continuous outcome (``table.label``); column ``target``; one stratum.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from amfmedit.data.transform import category_key, sort_categories
from amfmedit.errors import UserError


def first_bad(where: str, column: str, ids, mask, what: str, fix: str, values=None) -> UserError:
    """One line naming the first bad row of ``column`` (and how many there are)."""
    i = int(np.flatnonzero(mask)[0])
    shown = f" {values[i]!r}" if values is not None else ""
    return UserError(f"{where}: column {column!r} has {what}{shown} at id {ids[i]!r} "
                     f"({int(mask.sum())} row{'s' if mask.sum() != 1 else ''}); {fix}")


@dataclass
class Coded:
    """An outcome read from the raw table, per raw row (valid where ``keep``)."""

    keep: np.ndarray  # (N,) bool: rows still kept after the outcome's checks
    strata: np.ndarray  # (N,) int64: the prepared ``label`` column
    class_names: list[str]  # names of the strata
    values: dict[str, np.ndarray] = field(default_factory=dict)  # prepared column -> (N,) float64
    dropped: dict[str, int] = field(default_factory=dict)


def _numbers(df, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(values float64 with NaN for missing, raw objects) of a column that must hold numbers."""
    import pandas as pd

    raw = df[column].astype(object).to_numpy()
    text = df[column].astype("string").str.strip()
    values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return values, raw


def _blank(raw) -> np.ndarray:
    return np.array([category_key(v) is None for v in raw], dtype=bool)


def _missing_or_drop(coded_keep, missing, t, where, column, ids, dropped, what="a missing value"):
    """Drop rows with a missing outcome (``table.drop_missing``) or stop at the first."""
    bad = missing & coded_keep
    if bad.any():
        if t.drop_missing:
            dropped[f"missing {column}"] = int(bad.sum())
            return coded_keep & ~bad
        raise first_bad(where, column, ids, bad, what, "every row needs one (or set table.drop_missing = true)")
    return coded_keep


@dataclass(frozen=True)
class ClassTarget:
    """A categorical label coded as class indices.

    Args:
        n_classes: the number of classes the kind needs (2 for a binary task), None for any (>= 2).
        default_values: the vocabulary when the spec lists none and ``n_classes`` is fixed
            (a binary label coded 0/1).
    """

    n_classes: int | None = None
    default_values: tuple[str, ...] = ()
    columns: tuple[str, ...] = ()  # prepared columns besides ``label``
    stratify: bool = False  # splits drawn by prepare follow split.stratify

    def check_spec(self, table, where: str) -> None:
        """The spec's outcome keys fit this coding (one line naming the key otherwise)."""
        if not table.label:
            raise UserError(f"{where}: required key 'table.label' is missing; name the label column")
        label_values = table.label_values
        if self.n_classes is not None and label_values and len(label_values) != self.n_classes:
            raise UserError(f"{where}: table.label_values must list exactly {self.n_classes} values for this task, "
                            f"got {label_values}")

    def sources(self, table) -> list[str]:
        """Raw columns the outcome is read from (never features)."""
        return [table.label]

    def vocabulary(self, label_values: list[str]) -> list[str] | None:
        """The fixed class order, or None when it comes from the data (sorted values found)."""
        if label_values:
            return list(label_values)
        if self.n_classes is not None and self.default_values:
            return list(self.default_values)
        return None

    def code(self, df, t, ids, keep: np.ndarray, where: str) -> Coded:
        """Class indices of every row; rows without a label are dropped (``drop_missing``) or refused."""
        dropped: dict[str, int] = {}
        label_keys = np.array([category_key(v) for v in df[t.label].astype(object)], dtype=object)
        no_label = np.array([k is None for k in label_keys]) & keep
        if no_label.any():
            if t.drop_missing:
                dropped["missing label"] = int(no_label.sum())
                keep = keep & ~no_label
            else:
                raise first_bad(where, t.label, ids, no_label, "a missing (NaN) label", "every row needs a label")
        allowed = self.vocabulary(t.label_values)
        if allowed is not None:
            unknown = keep & np.array([k not in allowed for k in label_keys])
            if unknown.any():
                raise first_bad(where, t.label, ids, unknown, "the unknown label", f"labels must be one of "
                                f"{', '.join(allowed)} (table.label_values)", values=label_keys)
            class_names = list(allowed)
        else:
            class_names = sort_categories(label_keys[keep])
        if t.min_class_count:
            present = label_keys[keep]
            names, counts = np.unique(present.astype(str), return_counts=True)
            rare = set(names[counts < t.min_class_count].tolist())
            small = keep & np.array([k in rare for k in label_keys])
            dropped[f"class with fewer than {t.min_class_count} rows"] = int(small.sum())
            keep = keep & ~small
            class_names = [c for c in class_names if c not in rare]
            if len(class_names) < 2:
                raise UserError(f"{where}: fewer than two classes of {t.label!r} have at least {t.min_class_count} "
                                f"rows; lower table.min_class_count or use more data")
        index = {c: i for i, c in enumerate(class_names)}
        strata = np.array([index.get(k, -1) if k is not None else -1 for k in label_keys], dtype=np.int64)
        return Coded(keep, strata, class_names, {}, dropped)

    def check_splits(self, labels: np.ndarray, values: dict, split: np.ndarray, splits, where: str) -> list[str]:
        """Splits whose labels leave the task's headline metric undefined (warnings)."""
        if self.n_classes is None:
            return []
        return [f"split {s!r} has only one class; AUC is undefined on it" for s in splits
                if len(np.unique(labels[split == s])) < 2]

    def split_record(self, labels: np.ndarray, values: dict, class_names) -> dict:
        """Provenance's per-split counts beyond the class counts."""
        return {}

    def schema_record(self, t, values: dict, train: np.ndarray) -> dict:
        """What ``schema.json`` keeps of the outcome (``Schema.target``)."""
        return {}


@dataclass(frozen=True)
class TimeEventTarget:
    """Time to event with right censoring: ``table.time`` (>= 0, in ``table.time_unit``) and
    ``table.event`` (1 = event observed, 0 = censored; true/false and yes/no are read as 1/0)."""

    columns: tuple[str, ...] = ("time", "event")
    stratify: bool = True  # splits drawn by prepare are stratified by event
    class_names: tuple[str, ...] = ("censored", "event")

    def check_spec(self, table, where: str) -> None:
        for key in ("time", "event"):
            if not getattr(table, key):
                raise UserError(f"{where}: required key 'table.{key}' is missing; a survival task names its "
                                "time column (table.time) and its event column (table.event, 1 = event, 0 = censored)")
        if table.time == table.event:
            raise UserError(f"{where}: table.time and table.event both name column {table.time!r}; give two columns")

    def sources(self, table) -> list[str]:
        return [table.time, table.event] + ([table.label] if table.label else [])

    def code(self, df, t, ids, keep: np.ndarray, where: str) -> Coded:
        """Times and event indicators; missing, negative or non-numeric times and events other than 0/1 are refused."""
        dropped: dict[str, int] = {}
        time, raw_t = _numbers(df, t.time)
        blank = _blank(raw_t)
        keep = _missing_or_drop(keep, blank, t, where, t.time, ids, dropped, "a missing time")
        bad = keep & ~blank & ~np.isfinite(time)
        if bad.any():
            raise first_bad(where, t.time, ids, bad, "the non-numeric time", "times must be numbers >= 0 in "
                            f"{t.time_unit or 'the time unit'}", values=raw_t)
        neg = keep & (time < 0)
        if neg.any():
            raise first_bad(where, t.time, ids, neg, "the negative time", "times to event or censoring must be >= 0",
                            values=raw_t)
        event_keys = np.array([category_key(v) for v in df[t.event].astype(object)], dtype=object)
        keep = _missing_or_drop(keep, np.array([k is None for k in event_keys]), t, where, t.event, ids, dropped,
                                "a missing event indicator")
        coding = {"0": 0.0, "1": 1.0, "False": 0.0, "True": 1.0, "false": 0.0, "true": 1.0, "no": 0.0, "yes": 1.0}
        event = np.array([coding.get(k, np.nan) if k is not None else np.nan for k in event_keys])
        bad = keep & ~np.isfinite(event)
        if bad.any():
            raise first_bad(where, t.event, ids, bad, "the event value", "events must be 1 (event observed) or 0 "
                            "(censored)", values=event_keys)
        if keep.any() and not (event[keep] == 1).any():
            raise UserError(f"{where}: column {t.event!r} holds no event (all {int(keep.sum())} rows censored); a "
                            "survival model needs observed events: check the column or the 0/1 coding")
        strata = np.where(np.isfinite(event), event, -1).astype(np.int64)
        return Coded(keep, strata, list(self.class_names), {"time": time, "event": event}, dropped)

    def check_splits(self, labels: np.ndarray, values: dict, split: np.ndarray, splits, where: str) -> list[str]:
        """A split without events is refused (no C-index, no risk set to learn from); few events warn."""
        out = []
        for s in splits:
            n_events = int((values["event"][split == s] == 1).sum())
            if n_events == 0:
                raise UserError(f"{where}: split {s!r} has no event ({int((split == s).sum())} rows, all censored); "
                                "every split needs events: use more rows or fix the split column")
            if n_events < 10:
                out.append(f"split {s!r} has only {n_events} events (fewer than 10): its C-index is very uncertain")
        return out

    def split_record(self, labels: np.ndarray, values: dict, class_names) -> dict:
        """Events, censored rows and the median follow-up (reverse Kaplan-Meier) of one split."""
        time, event = values["time"], values["event"] == 1
        return {"follow_up": {"events": int(event.sum()), "censored": int((~event).sum()),
                              "median_follow_up": median_follow_up(time, event),
                              "max_time": float(time.max()) if len(time) else None}}

    def schema_record(self, t, values: dict, train: np.ndarray) -> dict:
        return {"coding": "time-event", "columns": list(self.columns), "time_source": t.time,
                "event_source": t.event, "time_unit": t.time_unit, "horizons": [float(h) for h in t.horizons]}


def median_follow_up(time: np.ndarray, event: np.ndarray) -> float | None:
    """Median follow-up by the reverse Kaplan-Meier method (Schemper & Smith 1996, Control Clin Trials
    17:343): the median of the censoring distribution, events treated as censored. None when the
    censoring curve never reaches one half (or there are no rows)."""
    from sksurv.nonparametric import kaplan_meier_estimator

    time, event = np.asarray(time, dtype=np.float64), np.asarray(event, dtype=bool)
    if len(time) == 0 or event.all():
        return None
    t, g = kaplan_meier_estimator(~event, time)
    below = np.flatnonzero(g <= 0.5)
    return float(t[below[0]]) if len(below) else None


@dataclass(frozen=True)
class NumericTarget:
    """A continuous outcome (``table.label``): a risk score, a lab value, a length of stay."""

    columns: tuple[str, ...] = ("target",)
    stratify: bool = False
    class_names: tuple[str, ...] = ("all",)

    def check_spec(self, table, where: str) -> None:
        if not table.label:
            raise UserError(f"{where}: required key 'table.label' is missing; name the column of the continuous outcome")
        if table.label_values:
            raise UserError(f"{where}: table.label_values lists classes, a regression task has none; remove it")

    def sources(self, table) -> list[str]:
        return [table.label]

    def code(self, df, t, ids, keep: np.ndarray, where: str) -> Coded:
        dropped: dict[str, int] = {}
        value, raw = _numbers(df, t.label)
        blank = _blank(raw)
        keep = _missing_or_drop(keep, blank, t, where, t.label, ids, dropped)
        bad = keep & ~np.isfinite(value)
        if bad.any():
            raise first_bad(where, t.label, ids, bad, "the non-numeric (or infinite) value", "a regression outcome "
                            "must be a finite number", values=raw)
        return Coded(keep, np.zeros(len(value), np.int64), list(self.class_names), {"target": value}, dropped)

    def check_splits(self, labels: np.ndarray, values: dict, split: np.ndarray, splits, where: str) -> list[str]:
        out = []
        for s in splits:
            v = values["target"][split == s]
            if len(v) < 2 or np.ptp(v) == 0:
                raise UserError(f"{where}: split {s!r} holds {len(v)} rows with one value of the outcome; R² and "
                                "the validation RMSE need varying values: use more rows")
        return out

    def split_record(self, labels: np.ndarray, values: dict, class_names) -> dict:
        v = values["target"]
        return {"outcome": {"mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
                            "min": float(v.min()), "max": float(v.max())}}

    def schema_record(self, t, values: dict, train: np.ndarray) -> dict:
        """The training split's mean and SD: the model learns the standardised outcome."""
        v = values["target"][train]
        return {"coding": "numeric", "columns": list(self.columns), "source": t.label,
                "mean": float(v.mean()), "std": float(v.std()) or 1.0}

