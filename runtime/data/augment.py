"""Batched, device-agnostic image augmentation on uint8 batches (B, S, S, 3).

`train_batch` = RandomResizedCrop(out) + RandomRotation(deg, fill 0) + RandomHorizontalFlip +
ToTensor + Normalize, like the classic torchvision pipeline, but as ONE batched op: each sample's
crop box, rotation and flip are composed into a 2x3 affine matrix, and a single
``affine_grid`` + ``grid_sample`` (bilinear, zero padding) produces the whole batch. All random
parameters are drawn on the CPU from the given ``torch.Generator``, so a seeded generator gives the
same pixels on any device (up to float rounding).

Conventions (pinned by the tests):
  * A positive angle rotates the image content counter-clockwise as displayed (row 0 at the top),
    like torchvision's ``RandomRotation``/``TF.rotate``; a rotation of exactly +90 degrees equals
    ``torch.rot90(x, k=1, dims=(-2, -1))`` of the unrotated output.
  * Order of operations on the image: crop+resize, then rotate about the centre, then flip.
    Pixels that the rotation brings in from outside the cropped square are 0 before
    normalisation, exactly like RandomRotation (fill 0) after RandomResizedCrop.
  * When the input is more than 2x larger than ``out_size``, it is first downscaled (antialiased)
    to ``2 * out_size`` so bilinear sampling does not alias; crops are therefore taken from a
    ``2 * out_size`` image in that case.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class AugmentConfig:
    """Training augmentation. ``rotation`` is either a max angle ``d`` in degrees (uniform in
    [-d, d], like ``RandomRotation(d)``) or an explicit ``(lo, hi)`` range. ``hflip`` is the flip
    probability. ``scale``/``ratio`` are RandomResizedCrop's area-fraction and aspect ranges."""

    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    rotation: float | tuple[float, float] = 90.0
    hflip: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # an automatic augmentation policy applied to each uint8 image before the crop:
    # RandAugment (N ops at magnitude M of 0..30) or TrivialAugment; None is off
    randaugment: tuple[int, int] | None = None
    trivialaugment: bool = False

    def policy(self):
        """The torchvision v2 policy transform, or None."""
        if self.randaugment is None and not self.trivialaugment:
            return None
        from torchvision.transforms import v2

        if self.trivialaugment:
            return v2.TrivialAugmentWide()
        n, m = self.randaugment
        return v2.RandAugment(num_ops=int(n), magnitude=int(m))

    def rotation_range(self) -> tuple[float, float]:
        r = self.rotation
        if isinstance(r, (tuple, list)):
            lo, hi = float(r[0]), float(r[1])
        else:
            lo, hi = -abs(float(r)), abs(float(r))
        if lo > hi:
            raise ValueError(f"rotation range {r!r} is empty")
        return lo, hi


def _check_u8(images_u8: Tensor) -> None:
    if images_u8.dim() != 4 or images_u8.shape[-1] != 3:
        raise ValueError(f"expected a (B, H, W, 3) batch, got shape {tuple(images_u8.shape)}")
    if images_u8.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {images_u8.dtype}")


def _normalise_(x: Tensor, cfg: AugmentConfig) -> Tensor:
    """In place: x holds 0..255 values; returns (x / 255 - mean) / std as one multiply-add."""
    std = torch.tensor(cfg.std, dtype=torch.float64)
    mean = torch.tensor(cfg.mean, dtype=torch.float64)
    a = (1.0 / (255.0 * std)).to(x.dtype).view(1, 3, 1, 1).to(x.device)
    b = (-mean / std).to(x.dtype).view(1, 3, 1, 1).to(x.device)
    return x.mul_(a).add_(b)


def _to_float(images_u8: Tensor) -> Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 with values 0..255, contiguous NCHW.
    (Dividing by 255 is folded into the normalisation; zero padding stays zero either way.)"""
    return images_u8.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)


def sample_params(n: int, height: int, width: int, cfg: AugmentConfig,
                  generator: torch.Generator | None = None) -> Tensor:
    """Draw ``n`` augmentations as affine matrices (n, 2, 3) float32 on the CPU.

    The matrices map output coordinates to input coordinates in ``affine_grid``'s normalised
    [-1, 1] space (align_corners=False), composed as flip -> rotation -> crop. The crop box follows
    torchvision's RandomResizedCrop sampling (10 tries of area ~ U(scale) * H * W and log-uniform
    aspect, then the central fallback), but with continuous (sub-pixel) box positions.
    Draws are made per sample row, so row i depends only on the generator state and i.
    """
    g = generator
    f64: dict[str, Any] = {"dtype": torch.float64}
    tries = 10
    # all draws happen up front with fixed shapes, so the stream is independent of the outcome
    u_area = torch.rand(n, tries, generator=g, **f64)
    u_ratio = torch.rand(n, tries, generator=g, **f64)
    u_x = torch.rand(n, generator=g, **f64)
    u_y = torch.rand(n, generator=g, **f64)
    u_rot = torch.rand(n, generator=g, **f64)
    u_flip = torch.rand(n, generator=g, **f64)

    H, W = float(height), float(width)
    area = H * W
    s_lo, s_hi = cfg.scale
    r_lo, r_hi = math.log(cfg.ratio[0]), math.log(cfg.ratio[1])
    target = area * (s_lo + (s_hi - s_lo) * u_area)
    aspect = torch.exp(r_lo + (r_hi - r_lo) * u_ratio)
    cw = torch.sqrt(target * aspect)
    ch = torch.sqrt(target / aspect)
    ok = (cw <= W + 1e-9) & (ch <= H + 1e-9) & (cw > 0) & (ch > 0)
    first = torch.argmax(ok.to(torch.int8), dim=1)  # first valid try (0 if none)
    any_ok = ok.any(dim=1)
    cw = cw.gather(1, first[:, None])[:, 0]
    ch = ch.gather(1, first[:, None])[:, 0]
    # fallback: central crop of the whole image, aspect clamped into the ratio range
    in_ratio = W / H
    if in_ratio < cfg.ratio[0]:
        fw, fh = W, W / cfg.ratio[0]
    elif in_ratio > cfg.ratio[1]:
        fw, fh = H * cfg.ratio[1], H
    else:
        fw, fh = W, H
    cw = torch.where(any_ok, cw, torch.full_like(cw, fw)).clamp(max=W)
    ch = torch.where(any_ok, ch, torch.full_like(ch, fh)).clamp(max=H)
    cx = cw / 2 + (W - cw) * torch.where(any_ok, u_x, torch.full_like(u_x, 0.5))
    cy = ch / 2 + (H - ch) * torch.where(any_ok, u_y, torch.full_like(u_y, 0.5))

    lo, hi = cfg.rotation_range()
    theta = torch.deg2rad(lo + (hi - lo) * u_rot)
    flip = torch.where(u_flip < cfg.hflip, -1.0, 1.0).to(torch.float64)

    # out -> (flip) -> rotated frame -> (inverse rotation) -> crop frame -> (scale+shift) -> input.
    # In y-down coordinates, rotating content counter-clockwise by t maps a source point s to
    # d = [[c, s], [-s, c]] s, so the inverse used for sampling is [[c, -s], [s, c]].
    c, s = torch.cos(theta), torch.sin(theta)
    sx, sy = cw / W, ch / H
    tx, ty = 2 * cx / W - 1, 2 * cy / H - 1
    mat = torch.zeros(n, 2, 3, dtype=torch.float64)
    mat[:, 0, 0] = sx * c * flip
    mat[:, 0, 1] = -sx * s
    mat[:, 0, 2] = tx
    mat[:, 1, 0] = sy * s * flip
    mat[:, 1, 1] = sy * c
    mat[:, 1, 2] = ty
    return mat.to(torch.float32)


def _prefilter(x: Tensor, out_size: int) -> Tensor:
    h, w = x.shape[-2:]
    if max(h, w) > 2 * out_size:
        k = 2 * out_size / max(h, w)
        size = (max(1, round(h * k)), max(1, round(w * k)))
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x


def apply_params(images_u8: Tensor, theta: Tensor, out_size: int, cfg: AugmentConfig) -> Tensor:
    """Warp a uint8 batch (B, H, W, 3) with per-sample affine ``theta`` (B, 2, 3) -> normalised
    float32 (B, 3, out_size, out_size) on the images' device."""
    _check_u8(images_u8)
    if theta.shape != (images_u8.shape[0], 2, 3):
        raise ValueError(f"theta must be ({images_u8.shape[0]}, 2, 3), got {tuple(theta.shape)}")
    x = _prefilter(_to_float(images_u8), out_size)
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, [x.shape[0], 3, out_size, out_size], align_corners=False)
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return _normalise_(y, cfg)


def train_batch(images_u8: Tensor, out_size: int, cfg: AugmentConfig,
                generator: torch.Generator | None = None) -> Tensor:
    """Random resized crop + rotation + horizontal flip + normalise, batched.

    images_u8: (B, S, S, 3) uint8 on any device. Returns (B, 3, out_size, out_size) float32 on
    the same device. Randomness comes from ``generator`` (a CPU generator; None = global RNG).
    """
    _check_u8(images_u8)
    b, h, w, _ = images_u8.shape
    theta = sample_params(b, h, w, cfg, generator)
    return apply_params(images_u8, theta, out_size, cfg)


def eval_batch(images_u8: Tensor, out_size: int, cfg: AugmentConfig) -> Tensor:
    """Resize (short side, antialiased bilinear) + centre crop to out_size, then normalise.
    images_u8: (B, H, W, 3) uint8 -> (B, 3, out_size, out_size) float32, same device."""
    _check_u8(images_u8)
    x = _to_float(images_u8)
    h, w = x.shape[-2:]
    if (h, w) != (out_size, out_size):
        k = out_size / min(h, w)
        nh, nw = max(out_size, round(h * k)), max(out_size, round(w * k))
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
        top, left = (nh - out_size) // 2, (nw - out_size) // 2
        x = x[:, :, top: top + out_size, left: left + out_size]
    return _normalise_(x.contiguous(), cfg)


def apply_policy(images_u8: Tensor, policy, seed: int) -> Tensor:
    """RandAugment / TrivialAugment on each image of a uint8 batch (B, H, W, 3), one draw per
    image, from torch's generator seeded with `seed` (forked: the global stream is untouched)."""
    _check_u8(images_u8)
    x = images_u8.permute(0, 3, 1, 2)  # (B, 3, H, W): what the policy expects
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out = torch.stack([policy(img) for img in x])
    return out.permute(0, 2, 3, 1).contiguous()  # (B, H, W, 3)
