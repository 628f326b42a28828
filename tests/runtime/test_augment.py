"""runtime.data.augment: batched crop/rotate/flip/normalise checked against exact oracles."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torchvision.transforms import RandomResizedCrop

from runtime.data.augment import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    apply_params,
    eval_batch,
    sample_params,
    train_batch,
)

IDENTITY = {"scale": (1.0, 1.0), "ratio": (1.0, 1.0), "rotation": 0.0, "hflip": 0.0}


def smooth_batch(b: int, s: int, seed: int = 0) -> torch.Tensor:
    """(b, s, s, 3) uint8 with smooth content, so interpolation differences stay small."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(b, 3, 6, 6, generator=g)
    x = F.interpolate(low, size=(s, s), mode="bicubic", align_corners=False).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def normalise(x01: torch.Tensor) -> torch.Tensor:
    m = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    s = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x01 - m) / s


def test_shapes_and_dtypes():
    x = torch.randint(0, 256, (5, 40, 40, 3), dtype=torch.uint8)
    cfg = AugmentConfig()
    y = train_batch(x, 32, cfg, torch.Generator().manual_seed(0))
    assert y.shape == (5, 3, 32, 32) and y.dtype == torch.float32 and y.is_contiguous()
    e = eval_batch(x, 24, cfg)
    assert e.shape == (5, 3, 24, 24) and e.dtype == torch.float32
    assert torch.isfinite(y).all() and torch.isfinite(e).all()
    with pytest.raises(ValueError):
        train_batch(x.float(), 32, cfg)
    with pytest.raises(ValueError):
        eval_batch(x.permute(0, 3, 1, 2), 32, cfg)


def test_defaults_match_the_lecture_pipeline():
    cfg = AugmentConfig()
    assert cfg.scale == (0.08, 1.0) and cfg.rotation == 90.0 and cfg.hflip == 0.5
    assert cfg.ratio == pytest.approx((3 / 4, 4 / 3))
    assert cfg.rotation_range() == (-90.0, 90.0)
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)


def test_eval_of_a_constant_image_is_the_normalised_constant():
    x = torch.empty(2, 50, 50, 3, dtype=torch.uint8)
    x[..., 0], x[..., 1], x[..., 2] = 200, 100, 30
    y = eval_batch(x, 32, AugmentConfig())
    rgb = torch.tensor([200, 100, 30]) / 255
    expect = (rgb - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(y, expect.view(1, 3, 1, 1).expand_as(y), atol=1e-5, rtol=0)


def test_eval_matches_torchvision_resize_and_normalize():
    x = smooth_batch(3, 48)
    y = eval_batch(x, 32, AugmentConfig())
    ref = TF.resize(x.permute(0, 3, 1, 2), [32, 32], antialias=True).float() / 255
    # torchvision rounds to uint8 after resizing a uint8 tensor: allow half a grey level
    torch.testing.assert_close(y, normalise(ref), atol=0.6 / 255 / 0.224, rtol=0)


def test_identity_config_equals_eval():
    x = smooth_batch(4, 32)
    cfg = AugmentConfig(**IDENTITY)
    y = train_batch(x, 32, cfg, torch.Generator().manual_seed(1))
    torch.testing.assert_close(y, eval_batch(x, 32, cfg), atol=1e-4, rtol=0)
    # downscaling (with the anti-alias pre-filter for > 2x) stays close to eval's resize
    big = smooth_batch(4, 96)
    for out in (64, 40, 24):
        d = (train_batch(big, out, cfg) - eval_batch(big, out, cfg)).abs()
        assert d.mean() < 0.02 and d.max() < 0.15, out


def test_hflip_equals_flipping_the_eval_output():
    x = smooth_batch(3, 32, seed=2)
    cfg = AugmentConfig(**{**IDENTITY, "hflip": 1.0})
    y = train_batch(x, 32, cfg)
    torch.testing.assert_close(y, torch.flip(eval_batch(x, 32, cfg), dims=(-1,)), atol=1e-4, rtol=0)


def test_rotation_plus_90_equals_rot90_counter_clockwise():
    """Convention: a positive angle turns the content counter-clockwise as displayed, like
    torchvision; +90 degrees == torch.rot90(k=1, dims=(-2, -1)), -90 == k=-1."""
    x = torch.randint(0, 256, (3, 20, 20, 3), dtype=torch.uint8)  # exact: no smoothness needed
    ev = eval_batch(x, 20, AugmentConfig(**IDENTITY))
    for angle, k in ((90.0, 1), (-90.0, -1), (180.0, 2)):
        cfg = AugmentConfig(**{**IDENTITY, "rotation": (angle, angle)})
        y = train_batch(x, 20, cfg)
        torch.testing.assert_close(y, torch.rot90(ev, k=k, dims=(-2, -1)), atol=1e-4, rtol=0)


def test_arbitrary_rotation_matches_torchvision_rotate():
    x = smooth_batch(2, 40, seed=3)
    x01 = x.permute(0, 3, 1, 2).float() / 255
    for angle in (30.0, -50.0):
        cfg = AugmentConfig(**{**IDENTITY, "rotation": (angle, angle)})
        y = train_batch(x, 40, cfg)
        bilinear = TF.InterpolationMode.BILINEAR
        ref = normalise(TF.rotate(x01, angle, interpolation=bilinear, fill=0))
        wrong = normalise(TF.rotate(x01, -angle, interpolation=bilinear, fill=0))
        err = (y - ref).abs()
        assert err.median() < 1e-3 and err.mean() < 0.05, angle  # differences only at the border
        assert (y - wrong).abs().mean() > 10 * err.mean()
        # the rotated-in corners are zero fill before normalisation
        zero = normalise(torch.zeros(1, 3, 1, 1))[:, :, 0, 0]
        torch.testing.assert_close(y[:, :, 0, 0], zero.expand(2, 3))


def test_crop_box_is_a_random_resized_crop():
    cfg = AugmentConfig(rotation=0.0, hflip=0.0)
    theta = sample_params(4000, 64, 64, cfg, torch.Generator().manual_seed(0)).double()
    sx, sy, tx, ty = theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2]
    assert (theta[:, 0, 1] == 0).all() and (theta[:, 1, 0] == 0).all()
    # box inside the image, area fraction within scale, aspect within ratio
    assert (tx.abs() + sx <= 1 + 1e-6).all() and (ty.abs() + sy <= 1 + 1e-6).all()
    area = sx * sy
    assert area.min() >= 0.08 - 1e-6 and area.max() <= 1 + 1e-6
    aspect = sx / sy
    assert aspect.min() >= 3 / 4 - 1e-6 and aspect.max() <= 4 / 3 + 1e-6
    # same area distribution as torchvision's RandomResizedCrop.get_params (which rejects large
    # boxes of non-square aspect, hence a mean below the 0.54 of a uniform area)
    torch.manual_seed(0)
    img = torch.zeros(3, 64, 64)
    ref = []
    for _ in range(2000):
        _, _, h, w = RandomResizedCrop.get_params(img, [0.08, 1.0], [3 / 4, 4 / 3])
        ref.append(h * w / 64**2)
    ref = torch.tensor(ref, dtype=torch.float64)
    assert area.mean() == pytest.approx(ref.mean(), abs=0.025)
    assert area.std() == pytest.approx(ref.std(), abs=0.025)
    assert tx.std() > 0.1 and ty.std() > 0.1  # positions vary


def test_rotation_and_flip_distribution():
    cfg = AugmentConfig(scale=(1.0, 1.0), ratio=(1.0, 1.0))
    theta = sample_params(4000, 32, 32, cfg, torch.Generator().manual_seed(1)).double()
    flip = torch.sign(theta[:, 0, 0] * theta[:, 1, 1] - theta[:, 0, 1] * theta[:, 1, 0]) < 0
    assert 0.45 < flip.double().mean() < 0.55
    ang = torch.atan2(theta[:, 1, 0] * torch.where(flip, -1.0, 1.0), theta[:, 1, 1])
    deg = torch.rad2deg(ang)
    assert deg.min() >= -90 - 1e-3 and deg.max() <= 90 + 1e-3
    assert deg.min() < -80 and deg.max() > 80
    assert abs(deg.mean()) < 5


def test_seeded_generator_is_deterministic():
    x = torch.randint(0, 256, (6, 36, 36, 3), dtype=torch.uint8)
    cfg = AugmentConfig()
    a = train_batch(x, 28, cfg, torch.Generator().manual_seed(7))
    b = train_batch(x, 28, cfg, torch.Generator().manual_seed(7))
    c = train_batch(x, 28, cfg, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    # samples of one batch get different augmentations
    one = x[:1].expand(6, -1, -1, -1).contiguous()
    same = train_batch(one, 28, cfg, torch.Generator().manual_seed(7))
    assert not torch.allclose(same[0], same[1])


def test_params_row_i_is_a_prefix_property_of_a_fixed_size_draw():
    """apply_params on a subset of rows reproduces those rows of the full batch (what the
    loader relies on to shard a global batch across ranks)."""
    x = torch.randint(0, 256, (8, 30, 30, 3), dtype=torch.uint8)
    cfg = AugmentConfig()
    theta = sample_params(8, 30, 30, cfg, torch.Generator().manual_seed(3))
    full = apply_params(x, theta, 24, cfg)
    part = apply_params(x[4:], theta[4:], 24, cfg)
    torch.testing.assert_close(part, full[4:], atol=1e-5, rtol=0)


def test_global_rng_used_without_generator():
    x = torch.randint(0, 256, (2, 16, 16, 3), dtype=torch.uint8)
    torch.manual_seed(0)
    a = train_batch(x, 16, AugmentConfig())
    torch.manual_seed(0)
    b = train_batch(x, 16, AugmentConfig())
    assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():  # pragma: no cover - runs where a GPU exists
    x = torch.randint(0, 256, (4, 48, 48, 3), dtype=torch.uint8)
    cfg = AugmentConfig()
    cpu = train_batch(x, 32, cfg, torch.Generator().manual_seed(0))
    gpu = train_batch(x.cuda(), 32, cfg, torch.Generator().manual_seed(0))
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-3, rtol=0)
    torch.testing.assert_close(eval_batch(x.cuda(), 32, cfg).cpu(), eval_batch(x, 32, cfg),
                               atol=1e-4, rtol=0)
