"""Batched device augmentation: exact geometry, per-sample draws, probability of no change."""

import math

import pytest
import torch
import torch.nn.functional as F

from amfmedit.train.augment import ImageAugment, affine_matrices, augment_batch, preset


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(b=16, c=1, h=12, w=12, seed=0):
    return torch.randint(0, 256, (b, c, h, w), dtype=torch.uint8, generator=_gen(seed))


def test_same_seed_same_output_and_different_seed_differs():
    x = _images()
    aug = preset("pretrain", 1)
    a = augment_batch(x, aug, _gen(1))
    b = augment_batch(x, aug, _gen(1))
    c = augment_batch(x, aug, _gen(2))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_samples_in_a_batch_get_different_draws():
    x = _images(b=8).expand(8, -1, -1, -1)[:1].repeat(8, 1, 1, 1)  # the same image 8 times
    y = augment_batch(x, ImageAugment(p=1.0), _gen(3))
    assert len({tuple(t.flatten()[:20].tolist()) for t in y}) == 8


def test_identity_share_matches_probability():
    x = _images(b=4000, h=6, w=6)
    y = augment_batch(x, ImageAugment(p=0.95), _gen(4))
    unchanged = (y == x.float() / 255).flatten(1).all(dim=1).float().mean().item()
    assert abs(unchanged - 0.05) < 0.015


@pytest.mark.parametrize("stage,channels", [("pretrain", 1), ("pretrain", 3), ("finetune", 1), ("finetune", 3)])
def test_output_range_shape_dtype(stage, channels):
    x = _images(b=32, c=channels, h=16, w=20)
    y = augment_batch(x, preset(stage, channels), _gen(5))
    assert y.shape == x.shape and y.dtype == torch.float32
    assert y.min() >= 0 and y.max() <= 1


def test_flip_only_is_exact_mirror():
    x = _images(h=8, w=6)
    aug = ImageAugment(p=1.0, crop_scale=(1, 1), crop_ratio=(1, 1), rotation=0, hflip=1.0, brightness=0, contrast=0)
    y = augment_batch(x, aug, _gen())
    torch.testing.assert_close(y, x.float().flip(-1) / 255, atol=1e-6, rtol=0)


def test_quarter_turn_matrix_rotates_the_image():
    x = torch.rand(2, 1, 8, 8)
    one, zero = torch.ones(2), torch.zeros(2)
    theta = affine_matrices(one, one, zero, zero, torch.full((2,), math.pi / 2), one, 8, 8)
    y = F.grid_sample(x, F.affine_grid(theta, [2, 1, 8, 8], align_corners=False), align_corners=False)
    torch.testing.assert_close(y, torch.rot90(x, -1, (-2, -1)), atol=1e-5, rtol=0)


def test_crop_matrix_is_resized_crop_away_from_the_border():
    x = torch.rand(2, 1, 8, 8)
    one, zero = torch.ones(2), torch.zeros(2)
    theta = affine_matrices(one * 0.5, one * 0.5, -one * 0.5, -one * 0.5, zero, one, 8, 8)  # top-left quarter
    y = F.grid_sample(x, F.affine_grid(theta, [2, 1, 8, 8], align_corners=False), align_corners=False)
    ref = F.interpolate(x[..., :4, :4], size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(y[..., 1:-1, 1:-1], ref[..., 1:-1, 1:-1], atol=1e-5, rtol=0)


def test_brightness_scales_intensity():
    x = torch.full((64, 1, 4, 4), 100, dtype=torch.uint8)
    aug = ImageAugment(p=1.0, crop_scale=(1, 1), crop_ratio=(1, 1), rotation=0, hflip=0, brightness=0.5, contrast=0)
    y = augment_batch(x, aug, _gen(6))
    factors = y[:, 0, 0, 0] / (100 / 255)
    assert factors.min() >= 0.5 - 1e-5 and factors.max() <= 1.5 + 1e-5
    assert factors.std() > 0.1  # drawn per sample
    assert torch.allclose(y, y[:, :, :1, :1].expand_as(y))  # uniform images stay uniform


def test_rgb_grayscale_makes_channels_equal_for_some_samples():
    x = _images(b=200, c=3, h=6, w=6)
    aug = ImageAugment(p=1.0, crop_scale=(1, 1), crop_ratio=(1, 1), rotation=0, hflip=0, brightness=0,
                       contrast=0, grayscale_p=0.5)
    y = augment_batch(x, aug, _gen(7))
    gray = ((y[:, 0] - y[:, 1]).abs().amax(dim=(1, 2)) < 1e-6).float().mean().item()
    assert 0.35 < gray < 0.65


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError, match="crop_scale"):
        ImageAugment(crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="probability"):
        ImageAugment(p=1.5)
