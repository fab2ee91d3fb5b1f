"""The facts of a run that reports quote, each read from one of the run's files.

:class:`RunFacts` opens nothing until asked; every accessor returns None when its file is absent or
unreadable, so a report item built on it falls back to a placeholder instead of failing. Paths are
named as reports cite them: relative to the run folder, or ``<data>/...`` for the prepared dataset.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import numpy as np

from amfmedit.data.prepared import dataset_path
from amfmedit.errors import UserError
from amfmedit.io import write_json
from amfmedit.stages import names
from amfmedit.train import rundir

HASH_CACHE = "report_files/hashes.json"  # sha256 of checkpoints, keyed by path, size and modification time


class RunFacts:
    """Lazy, cached readers of one run's files (see the module docstring)."""

    def __init__(self, run: rundir.Run) -> None:
        self.run = run
        self.root = run.root

    # ------------------------------------------------------------------ files

    @functools.cached_property
    def data_root(self) -> Path | None:
        try:
            return dataset_path(self.run.data, self.run.data_dir)
        except UserError:
            return None

    def json(self, rel: str):
        """A JSON file of the run (``<data>/...``: of its prepared dataset), None when absent or unreadable."""
        path = self.path(rel)
        if path is None or not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def path(self, rel: str) -> Path | None:
        if rel.startswith("<data>/"):
            return None if self.data_root is None else self.data_root / rel[len("<data>/"):]
        return self.root / rel

    def glob(self, pattern: str) -> list[Path]:
        return sorted(p for p in self.root.glob(pattern) if p.is_file())

    # ------------------------------------------------------------------ the dataset

    @functools.cached_property
    def provenance(self) -> dict | None:
        return self.json("<data>/provenance.json")

    @functools.cached_property
    def schema(self) -> dict | None:
        return self.json("<data>/schema.json")

    @functools.cached_property
    def source(self) -> dict:
        """The data spec's ``[source]`` as given (empty strings where not given)."""
        return ((self.provenance or {}).get("spec") or {}).get("source") or {}

    @functools.cached_property
    def table(self):
        """The prepared table (pandas), or None."""
        path = self.path("<data>/tabular.parquet")
        if path is None or not path.is_file():
            return None
        import pandas as pd

        try:
            return pd.read_parquet(path)
        except Exception:  # noqa: BLE001 - a damaged file is reported as unknown, never a failed report
            return None

    def disjointness(self) -> dict | None:
        """How the prepared rows fall into splits: ids per split and ids found in more than one."""
        t = self.table
        if t is None:
            return None
        per = t.groupby("id")["split"].nunique()
        return {"rows": int(len(t)), "ids": int(t["id"].nunique()), "in_several_splits": int((per > 1).sum()),
                "per_split": {s: int(n) for s, n in t["split"].value_counts().sort_index().items()}}

    # ------------------------------------------------------------------ stages

    @functools.cached_property
    def classifiers(self) -> dict[str, dict]:
        return names.classifier_stages(self.run)

    def config(self, stage: str) -> dict | None:
        return self.json(f"{stage}/{rundir.CONFIG_FILE}")

    def marker(self, stage: str) -> dict | None:
        return self.json(f"{stage}/{rundir.MARKER}")

    @functools.cached_property
    def evaluation(self) -> dict | None:
        return self.json(f"{names.EVALUATE}/{names.EVAL_METRICS_FILE}")

    @functools.cached_property
    def operating(self) -> dict | None:
        return self.json(f"{names.EVALUATE}/operating_points.json")

    @functools.cached_property
    def subgroups(self) -> dict | None:
        return self.json(f"{names.EVALUATE}/subgroups.json")

    @functools.cached_property
    def externals(self) -> dict[str, dict]:
        out = {}
        for p in self.glob(f"{names.EXTERNAL_PREFIX}*/{names.EVAL_METRICS_FILE}"):
            if (p.parent / rundir.MARKER).is_file():
                rec = self.json(str(p.relative_to(self.root)))
                if rec:
                    out[p.parent.name] = rec
        return out

    @functools.cached_property
    def environment(self) -> dict | None:
        return self.json(rundir.ENV_FILE)

    def checkpoint_hashes(self) -> dict[str, str]:
        """Stage -> SHA-256 of the file a classifier is scored from (``best.pt``, or a baseline's ``model.pkl``)."""
        cache_path = self.root / HASH_CACHE
        try:
            cache = json.loads(cache_path.read_text(encoding="utf-8")) if cache_path.is_file() else {}
        except (OSError, ValueError):
            cache = {}
        out, changed = {}, False
        for stage in self.classifiers:
            folder = self.root / stage
            path = folder / "model.pkl" if (folder / "model.pkl").is_file() else folder / "best.pt"
            if not path.is_file():
                continue
            st = path.stat()
            key = f"{path.relative_to(self.root)}:{st.st_size}:{st.st_mtime_ns}"
            if key not in cache:
                h = hashlib.sha256()
                with open(path, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 20), b""):
                        h.update(block)
                cache[key], changed = h.hexdigest(), True
            out[stage] = cache[key]
        if changed:
            try:
                write_json(cache_path, cache)
            except OSError:
                pass
        return out


def finite(v) -> bool:
    return isinstance(v, (int, float)) and np.isfinite(v)

