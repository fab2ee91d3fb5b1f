"""Batches of an incomplete cohort carry the mask and presence flags; corruption by marking missing
or swapping values with their missing flags; modality dropout."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from amfmedit.data import load_prepared
from amfmedit.data.masking import mask_features
from amfmedit.train.corruption import TabularCorruptor, drop_modalities
from amfmedit.train.inputs import DeviceData


@pytest.fixture(scope="module")
def incomplete(tiny_ol3i):
    """tiny_ol3i with rows 0-9 lacking an image and rows 10-14 lacking a table (in memory only)."""
    ds = load_prepared(tiny_ol3i)
    image_present = np.ones(len(ds), bool)
    image_present[:10] = False
    missing = ds.missing.copy()
    missing[10:15] = True
    return dataclasses.replace(ds, missing=missing, image_present=image_present, table_present=None)


def test_batches_carry_the_mask_and_presence_flags(incomplete):
    dd = DeviceData(incomplete, device=torch.device("cpu"), with_images=False)
    rows = np.array([12, 3, 40, 10])
    b = dd.batch(rows, images=False)
    assert torch.equal(b.missing, torch.from_numpy(incomplete.missing[rows]))
    assert b.image_present.tolist() == [True, False, True, True]
    assert b.table_present.tolist() == [False, True, True, False]
    complete = dd.with_complete_rows()
    for split in ("train", "val", "test"):
        kept = complete.rows(split)
        assert set(kept) == {r for r in dd.rows(split) if r >= 15}
    assert (np.diff(complete.rows("train")) > 0).all()


def test_masked_features_are_missing_but_not_absence(incomplete):
    dd = DeviceData(incomplete, device=torch.device("cpu"), with_images=False)
    masked = mask_features(incomplete, incomplete.schema.feature_names)  # every feature masked
    other = dd.with_table(masked)
    assert other.missing.all()
    assert torch.equal(other.table_present, dd.table_present) and other.image_present is dd.image_present


def test_a_dataset_without_masks_is_complete():
    class Plain:
        x_cont, x_cat = np.zeros((3, 2), np.float32), np.zeros((3, 1), np.int64)
        labels, images = np.zeros(3, np.int64), None

        def indices(self, split):
            return np.arange(3)

    b = DeviceData(Plain(), device=torch.device("cpu"), with_images=False).batch(np.array([0, 2]), images=False)
    assert not b.missing.any() and b.missing.shape == (2, 3) and b.image_present.all() and b.table_present.all()


def test_corruption_by_marking_missing_keeps_values():
    g = torch.Generator().manual_seed(0)
    x_cont, x_cat = torch.randn(50, 6, generator=g), torch.randint(0, 3, (50, 4), generator=g)
    corruptor = TabularCorruptor(x_cont=x_cont, x_cat=x_cat, rate=0.3, mode="missing")
    already = torch.zeros(8, 10, dtype=torch.bool)
    already[:, 0] = True
    out = corruptor.corrupt(x_cont[:8], x_cat[:8], already, torch.Generator().manual_seed(1))
    assert torch.equal(out.x_cont, x_cont[:8]) and torch.equal(out.x_cat, x_cat[:8])
    assert (out.corrupted.sum(dim=1) == 3).all()
    assert torch.equal(out.missing, already | out.corrupted)
    with pytest.raises(ValueError, match="call corrupt"):
        corruptor(x_cont[:8], x_cat[:8], torch.Generator())


def test_swap_corruption_draws_the_missing_flag_with_the_value():
    n = 200
    x_cont = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3)  # row i holds i everywhere
    x_cat = torch.zeros(n, 1, dtype=torch.long)
    train_missing = torch.zeros(n, 4, dtype=torch.bool)
    train_missing[::2] = True  # even training rows: every cell missing
    corruptor = TabularCorruptor(x_cont=x_cont, x_cat=x_cat, rate=0.5, missing=train_missing)
    batch = torch.full((64, 3), -1.0)
    out = corruptor.corrupt(batch, torch.zeros(64, 1, dtype=torch.long), None, torch.Generator().manual_seed(2))
    drawn = out.corrupted[:, :3]
    values = out.x_cont[drawn]
    assert torch.equal(out.missing[:, :3][drawn], values.long() % 2 == 0)  # each drawn row's own flag
    assert not out.missing[:, :3][~drawn].any() and (out.x_cont[~drawn] == -1).all()
    # without a mask the legacy call and its random draws are unchanged
    a = corruptor(batch, torch.zeros(64, 1, dtype=torch.long), torch.Generator().manual_seed(2))
    assert torch.equal(a[0], out.x_cont) and torch.equal(a[2], out.corrupted)


def test_modality_dropout_never_leaves_a_row_with_neither():
    n = 20000
    img = torch.ones(n, dtype=torch.bool)
    tab = torch.ones(n, dtype=torch.bool)
    img[:1000] = False
    tab[1000:2000] = False
    new_img, new_tab = drop_modalities(img, tab, 0.3, torch.Generator().manual_seed(0))
    assert (new_img | new_tab).all()
    assert torch.equal(new_img[:2000], img[:2000]) and torch.equal(new_tab[:2000], tab[:2000])
    hit = (~new_img | ~new_tab)[2000:].float().mean().item()
    assert abs(hit - 0.3) < 0.015
    assert abs((~new_img[2000:]).float().mean().item() - 0.15) < 0.01
    assert drop_modalities(img, tab, 0.0, torch.Generator()) == (img, tab)
    with pytest.raises(ValueError, match="modality dropout rate"):
        drop_modalities(img, tab, 1.5, torch.Generator())
