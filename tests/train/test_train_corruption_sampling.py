"""Tabular corruption (rate 0.3, values from the training column) and epoch sampling."""

import numpy as np
import pytest
import torch

from amfmedit.train.corruption import TabularCorruptor
from amfmedit.train.sampling import EpochSampler, batches, sample_weights


def _train_columns(n=50, n_cont=7, n_cat=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    # Column j holds values only from its own range, so a drawn value betrays its column.
    x_cont = torch.rand(n, n_cont, generator=g) + torch.arange(n_cont).float() * 10
    x_cat = torch.randint(1, 4, (n, n_cat), generator=g) + torch.arange(n_cat) * 10
    return x_cont, x_cat


def test_exactly_30_percent_of_features_replaced_by_training_values_of_that_column():
    x_cont, x_cat = _train_columns()
    corrupt = TabularCorruptor(x_cont=x_cont, x_cat=x_cat, rate=0.3)
    batch_cont = torch.full((64, 7), -1.0)
    batch_cat = torch.full((64, 3), -1, dtype=torch.long)
    out_cont, out_cat, mask = corrupt(batch_cont, batch_cat, torch.Generator().manual_seed(1))
    assert (mask.sum(dim=1) == 3).all()  # floor(10 * 0.3)
    replaced_cont = out_cont != -1
    replaced_cat = out_cat != -1
    assert torch.equal(torch.cat([replaced_cont, replaced_cat], 1), mask)
    for j in range(7):
        vals = out_cont[mask[:, j], j]
        assert all((x_cont[:, j] == v).any() for v in vals)
    for j in range(3):
        vals = out_cat[mask[:, 7 + j], j]
        assert all((x_cat[:, j] == v).any() for v in vals)


def test_each_feature_is_chosen_about_equally_often():
    x_cont, x_cat = _train_columns(n_cont=10, n_cat=0)
    corrupt = TabularCorruptor(x_cont=x_cont, x_cat=torch.zeros(50, 0, dtype=torch.long), rate=0.3)
    _, _, mask = corrupt(x_cont[:1].repeat(5000, 1), torch.zeros(5000, 0, dtype=torch.long), torch.Generator().manual_seed(2))
    share = mask.float().mean(dim=0)
    assert torch.allclose(share, torch.full((10,), 0.3), atol=0.03)


def test_corruption_is_deterministic_given_the_generator():
    x_cont, x_cat = _train_columns()
    corrupt = TabularCorruptor(x_cont=x_cont, x_cat=x_cat, rate=0.3)
    a = corrupt(x_cont[:8], x_cat[:8], torch.Generator().manual_seed(3))
    b = corrupt(x_cont[:8], x_cat[:8], torch.Generator().manual_seed(3))
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_class_balanced_sampling_follows_the_weights():
    labels = np.array([0] * 950 + [1] * 50)
    w = sample_weights(labels, [0.5, 5.0])
    sampler = EpochSampler(n=len(labels), seed=0, weights=w)
    drawn = np.concatenate([labels[sampler.epoch(e)] for e in range(1, 11)])
    # expected positive share: 50*5 / (50*5 + 950*0.5) = 0.3448
    assert abs(drawn.mean() - 250 / 725) < 0.02
    assert len(sampler.epoch(1)) == 1000


def test_sampler_epochs_repeat_and_differ():
    sampler = EpochSampler(n=20, seed=5)
    assert np.array_equal(sampler.epoch(3), sampler.epoch(3))
    assert not np.array_equal(sampler.epoch(3), sampler.epoch(4))
    assert sorted(sampler.epoch(3)) == list(range(20))


@pytest.mark.parametrize("weighted", [False, True])
def test_ranks_split_one_epoch_like_distributed_sampler(weighted):
    n, world = 11, 3
    w = np.linspace(1, 2, n) if weighted else None
    single = EpochSampler(n=n, seed=9, weights=w).epoch(2)
    shards = [EpochSampler(n=n, seed=9, weights=w, rank=r, world_size=world).epoch(2) for r in range(world)]
    assert {len(s) for s in shards} == {4}
    interleaved = np.stack(shards, 1).reshape(-1)
    padded = np.concatenate([single, single[: 12 - n]])
    assert np.array_equal(interleaved, padded)


def test_batches_drop_a_trailing_single_sample():
    assert [len(b) for b in batches(np.arange(9), 4)] == [4, 4]
    assert [len(b) for b in batches(np.arange(10), 4)] == [4, 4, 2]


def test_bad_class_weights():
    with pytest.raises(ValueError, match="class_weights has 2"):
        sample_weights(np.array([0, 1, 2]), [1.0, 1.0])
