"""Shared fixtures for every area's tests, built once per test session in a temporary folder.

``tiny_ol3i``
    Prepared synthetic OL3I (``synthetic-ol3i`` spec): 240 patients, 1 x 32 x 32 CT images
    (window [-125, 275] HU), 40 features (38 continuous incl. the 12 informative ones,
    2 categorical: gender, smoker), binary ``label_1y`` with prevalence 0.2 so that every
    split has positives; splits in OL3I's proportions (154 / 38 / 48). Seed 7.
``tiny_dvm``
    Prepared synthetic DVM (``synthetic-dvm`` spec, ``min_class_count`` lowered to 20): 360
    adverts of 5 car models generated, 306 kept after DVM's filters (220 / 55 / 31), 3 x 32 x 32
    RGB images, 13 features (9 continuous, 4 categorical), multiclass label ``Genmodel_ID``,
    random 72/18/10 split. Seed 7.

Each returns a :class:`PreparedFixture`: ``path`` (the dataset folder), ``data_dir`` (its parent,
for ``--data-dir``) and ``name`` (for ``--data NAME``). It is ``os.PathLike``, so
``amfmedit.data.load_prepared(tiny_ol3i)`` works. Both live in the same data dir. Treat them as
read-only (copy the folder first if a test must change it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fixture_records import PreparedFixture  # noqa: E402  (tests/fixture_records.py)

TINY_OL3I = dict(patients=240, seed=7, features=40, prevalence=0.2)
TINY_DVM = dict(patients=360, seed=7, classes=5)


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("amfmedit-data")


def _prepare(spec_name: str, data_dir: Path, image_size: int, options: dict, **spec_changes) -> PreparedFixture:
    from amfmedit.data.prepare import apply_overrides
    from amfmedit.stages.prepare import prepare
    from amfmedit.data.spec import load_spec

    spec = apply_overrides(load_spec(spec_name), image_size=image_size)
    for key, value in spec_changes.items():
        section, field = key.split("__")
        setattr(getattr(spec, section), field, value)
    result = prepare(spec, data_dir=data_dir, synthetic=options)
    return PreparedFixture(path=result.path, data_dir=data_dir, name=spec.name)


@pytest.fixture(scope="session")
def tiny_ol3i(shared_data_dir) -> PreparedFixture:
    """Prepared synthetic OL3I: 240 patients, 1 x 32 x 32, 40 features, prevalence 0.2."""
    return _prepare("synthetic-ol3i", shared_data_dir, 32, TINY_OL3I)


@pytest.fixture(scope="session")
def tiny_dvm(shared_data_dir) -> PreparedFixture:
    """Prepared synthetic DVM: ~360 adverts, 5 classes, 3 x 32 x 32, 13 features."""
    return _prepare("synthetic-dvm", shared_data_dir, 32, TINY_DVM, table__min_class_count=20)

