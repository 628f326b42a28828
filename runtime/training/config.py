"""Training configuration: one validated pydantic model plus the merge rule.

Precedence (lowest to highest): the defaults below, the spec's `train` section, CLI flags.
`extra="forbid"` makes a misspelt key an error instead of a silently ignored setting.
"""
from __future__ import annotations

import difflib
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# Learning rates used when `lr` is None: SGD and AdamW want very different magnitudes.
DEFAULT_LR = {"sgd": 0.01, "adamw": 1e-3}


class ConfigError(ValueError):
    """A train configuration that cannot be used; the message says which key and why."""


class TrainConfig(BaseModel):
    """Every knob of a training run. Field names double as spec `train` keys and CLI flags."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # schedule and optimisation
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float | None = Field(0.01, gt=0)
    optimizer: Literal["sgd", "adamw"] = "sgd"
    weight_decay: float = Field(5e-4, ge=0)
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)
    aux_weight: float = Field(0.3, ge=0)
    accumulate: int = Field(1, ge=1)

    # data
    val_fraction: float = Field(0.2, gt=0, lt=1)
    workers: int = Field(2, ge=0)
    image_size: int | None = Field(None, ge=8)
    cache_size: int = Field(256, ge=8)

    # augmentation (mirrors runtime.data.augment.AugmentConfig)
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    rotation: float = Field(90.0, ge=0, le=180)
    hflip: float = Field(0.5, ge=0, le=1)

    # reproducibility and hardware
    seed: int = Field(0, ge=0)
    deterministic: bool = False
    compile: bool = False
    # torch.compile's mode; "reduce-overhead" replays the step as CUDA graphs, which helps
    # when small batches leave the GPU waiting on kernel launches.
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    channels_last: bool | None = None
    amp: Literal["auto", "bf16", "off"] = "auto"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"

    @model_validator(mode="after")
    def _check_ranges(self) -> TrainConfig:
        """Cross-field checks pydantic's per-field constraints cannot express."""
        lo, hi = self.scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"scale must satisfy 0 < min <= max <= 1, got {self.scale}")
        lo, hi = self.ratio
        if not 0 < lo <= hi:
            raise ValueError(f"ratio must satisfy 0 < min <= max, got {self.ratio}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) is longer than the run "
                f"({self.epochs} epochs)"
            )
        return self

    def resolved_lr(self) -> float:
        """The learning rate to use: `lr`, or the optimizer's default when `lr` is None."""
        return self.lr if self.lr is not None else DEFAULT_LR[self.optimizer]

    def augment(self):
        """An `runtime.data.augment.AugmentConfig` built from the augmentation fields."""
        # Imported lazily so that config stays importable without the image stack.
        from ..data.augment import AugmentConfig

        return AugmentConfig(
            scale=tuple(self.scale), ratio=tuple(self.ratio),
            rotation=self.rotation, hflip=self.hflip,
        )


def _normalise_keys(values: dict[str, Any]) -> dict[str, Any]:
    """Accept `label-smoothing` as well as `label_smoothing` (CLI and spec spellings differ)."""
    return {str(k).replace("-", "_"): v for k, v in values.items()}


def _unknown_key_message(keys: list[str]) -> str:
    """Name each unknown key with its closest valid spelling, when there is one."""
    known = list(TrainConfig.model_fields)
    parts = []
    for key in keys:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        parts.append(f"'{key}'{hint}")
    return "unknown train setting " + ", ".join(parts) + f"; valid settings: {', '.join(known)}"


def merge_config(base: dict[str, Any] | None, overrides: dict[str, Any] | None) -> TrainConfig:
    """Build a TrainConfig: `overrides` (CLI) beat `base` (the spec's train section) beat defaults.

    Override values that are None are treated as "not given", because that is how an unset
    CLI option arrives; to clear `lr` or `grad_clip` put `null` in the spec instead.
    Raises ConfigError with a readable message (unknown keys get a "did you mean").
    """
    merged = _normalise_keys(base or {})
    merged.update({k: v for k, v in _normalise_keys(overrides or {}).items() if v is not None})
    unknown = sorted(set(merged) - set(TrainConfig.model_fields))
    if unknown:
        raise ConfigError(_unknown_key_message(unknown))
    try:
        return TrainConfig(**merged)
    except ValidationError as exc:
        raise ConfigError(_validation_message(exc)) from exc


def _validation_message(exc: ValidationError) -> str:
    """One line per problem: `train.key: what is wrong (got value)`."""
    lines = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        name = f"train.{where}" if where else "train"
        got = err.get("input")
        shown = f" (got {got!r})" if where and not isinstance(got, dict) else ""
        lines.append(f"{name}: {err['msg']}{shown}")
    return "invalid train configuration:\n  " + "\n  ".join(lines)
