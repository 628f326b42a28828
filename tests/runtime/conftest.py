"""Shared fixtures for the training-core tests: a tiny image set, a tiny model, loaders, configs.

The plain functions here are also loaded by path from the subprocess scripts that the
signal/kill tests start, so keep them importable without pytest's machinery.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

from runtime.data.augment import AugmentConfig
from runtime.data.folders import ImageSet, stratified_split
from runtime.data.loader import BatchLoader
from runtime.training.config import TrainConfig

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]


def make_imageset(n: int = 64, size: int = 40, seed: int = 0) -> ImageSet:
    """n noisy images; class 1 has a bright square in the middle, so the task is learnable."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n, dtype=np.int64) % 2
    images = rng.integers(0, 90, size=(n, size, size, 3), dtype=np.uint8)
    lo, hi = size // 4, size - size // 4
    images[labels == 1, lo:hi, lo:hi, :] = 230
    return ImageSet(images=images, labels=labels, classes=["dark", "square"], skipped=[])


class TinyNet(nn.Module):
    """conv-bn-relu-pool-dropout-fc. Options: auxiliary heads, a NaN after `nan_after` training
    forwards, and a per-forward sleep that makes epochs slow enough to signal mid-epoch."""

    def __init__(self, aux: int = 0, nan_after: int | None = None, delay: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Dropout(0.2),  # draws from torch's global RNG, so resume must restore it
        )
        self.fc = nn.Linear(8, 2)
        self.aux = nn.ModuleList(nn.Linear(8, 2) for _ in range(aux))
        self.nan_after, self.delay, self.calls = nan_after, delay, 0

    def forward(self, x):
        if self.delay and self.training:
            time.sleep(self.delay)
        feats = self.body(x)
        out = self.fc(feats)
        if self.training:
            self.calls += 1
            if self.nan_after is not None and self.calls > self.nan_after:
                out = out * float("nan")
            if len(self.aux):
                return (out, *(head(feats) for head in self.aux))
        return out


def make_loaders(images: ImageSet, config: TrainConfig, out_size: int = 16):
    """Train/val BatchLoaders over a stratified split (mild crops so the square stays visible)."""
    train_idx, val_idx = stratified_split(images.labels, config.val_fraction, seed=config.seed)
    aug = AugmentConfig(scale=(0.6, 1.0), rotation=15.0, hflip=0.5)
    common = {"batch_size": config.batch_size, "out_size": out_size, "aug": aug,
              "seed": config.seed}
    train = BatchLoader(images, train_idx, train=True, prefetch=False, **common)
    val = BatchLoader(images, val_idx, train=False, prefetch=False, **common)
    return train, val


def small_config(**overrides) -> TrainConfig:
    """A fast, deterministic CPU configuration for the tiny problem."""
    values = {"epochs": 4, "batch_size": 16, "lr": 0.05, "device": "cpu", "deterministic": True,
              "val_fraction": 0.25, "warmup_epochs": 0.5}
    values.update(overrides)
    return TrainConfig(**values)


def state_equal(a: dict, b: dict) -> bool:
    """Every tensor bit-identical (same keys, torch.equal)."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="session")
def reference(tmp_path_factory):
    """Uninterrupted runs of the tiny problem, computed once per session and shared read-only:
    `reference(epochs=4)` -> (run_dir, FitResult)."""
    from runtime.training.loop import fit

    cache = {}

    def get(**overrides):
        key = tuple(sorted(overrides.items()))
        if key not in cache:
            run_dir = tmp_path_factory.mktemp("reference")
            config = small_config(**overrides)
            train, val = make_loaders(make_imageset(), config)
            result = fit(TinyNet, train, val, config, run_dir, console=Console(quiet=True))
            cache[key] = (run_dir, result)
        return cache[key]

    return get


@pytest.fixture
def quiet() -> Console:
    return Console(quiet=True)


@pytest.fixture
def tiny():
    """Namespace-like access to the helpers for tests (conftest is not importable by name)."""

    class Helpers:
        make_imageset = staticmethod(make_imageset)
        make_loaders = staticmethod(make_loaders)
        small_config = staticmethod(small_config)
        state_equal = staticmethod(state_equal)
        TinyNet = TinyNet
        conftest_path = HERE
        repo = REPO

    return Helpers
