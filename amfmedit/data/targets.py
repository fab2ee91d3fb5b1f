"""Target codings: how ``prepare`` reads a cohort's outcome column(s) and codes them.

A prediction kind (:mod:`amfmedit.stages.kinds`) names the coding its outcome needs; the data
layer knows codings, never kinds. :class:`ClassTarget` codes a categorical label as class
indices ``0..C-1`` in the order of ``class_names``: the vocabulary listed in the spec
(``table.label_values``), a kind's default vocabulary, or the sorted values found.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from amfmedit.errors import UserError


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

    def check_spec(self, label_values: list[str], where: str) -> None:
        """The spec's ``table.label_values`` fit this coding (one line naming the key otherwise)."""
        if self.n_classes is not None and label_values and len(label_values) != self.n_classes:
            raise UserError(f"{where}: table.label_values must list exactly {self.n_classes} values for this task, "
                            f"got {label_values}")

    def vocabulary(self, label_values: list[str]) -> list[str] | None:
        """The fixed class order, or None when it comes from the data (sorted values found)."""
        if label_values:
            return list(label_values)
        if self.n_classes is not None and self.default_values:
            return list(self.default_values)
        return None

    def split_warnings(self, labels: np.ndarray, split: np.ndarray, splits) -> list[str]:
        """Splits whose labels leave the task's headline metric undefined."""
        if self.n_classes is None:
            return []
        return [f"split {s!r} has only one class; AUC is undefined on it" for s in splits
                if len(np.unique(labels[split == s])) < 2]

