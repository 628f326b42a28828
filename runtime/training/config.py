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
# Weight decay when `weight_decay` is None: AdamW's decay is decoupled from the gradient,
# so it wants a value about a hundred times SGD's.
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 0.05}


class ConfigError(ValueError):
    """A train configuration that cannot be used; the message says which key and why."""


class TrainConfig(BaseModel):
    """Every knob of a training run. Field names double as spec `train` keys and CLI flags."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # schedule and optimisation
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(64, ge=1, le=65536)
    # "auto": an LR range test before training picks it (runtime/lrfind.py)
    lr: float | Literal["auto"] | None = Field(0.01)
    # "auto": SGD-Nesterov unless the LR range test finds that SGD cannot descend (lrfind.py)
    optimizer: Literal["sgd", "adamw", "auto"] = "sgd"
    nesterov: bool = True
    weight_decay: float | None = Field(5e-4, ge=0)
    schedule: Literal["cosine", "onecycle", "constant"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    grad_clip: float | None = Field(None, gt=0)
    aux_weight: float = Field(0.3, ge=0)
    accumulate: int = Field(1, ge=1)
    # the recipe whose defaults this configuration started from (runtime/recipes.py)
    recipe: str | None = None

    # regularisers
    ema: float | None = Field(None, gt=0, lt=1)  # decay of an exponential moving average
    mixup: float = Field(0.0, ge=0)  # Beta(a, a) concentration; 0 is off
    cutmix: float = Field(0.0, ge=0)
    randaugment: tuple[int, int] | None = None  # (N ops, magnitude M of 0..30)
    trivialaugment: bool = False

    # fine-tuning: the backbone trains at lr * backbone_lr_scale, frozen (BN in eval) for
    # the first freeze_epochs epochs
    freeze_epochs: int = Field(0, ge=0)
    backbone_lr_scale: float = Field(1.0, gt=0, le=1)

    # data
    val_fraction: float = Field(0.2, gt=0, lt=1)
    workers: int = Field(2, ge=0)
    # upper bounds refuse, before anything is allocated, sizes no image set needs: a
    # 1,000,000-px cache side or a 10^7-image batch would only exhaust memory or disk
    image_size: int | None = Field(None, ge=8, le=4096)
    cache_size: int = Field(256, ge=8, le=4096)

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
        if isinstance(self.lr, float) and self.lr <= 0:
            raise ValueError(f"lr must be greater than 0 or \"auto\", got {self.lr}")
        if self.randaugment is not None and not (
                self.randaugment[0] >= 1 and 0 <= self.randaugment[1] <= 30):
            raise ValueError(f"randaugment is N,M with N >= 1 and 0 <= M <= 30, "
                             f"got {self.randaugment}")
        if self.randaugment is not None and self.trivialaugment:
            raise ValueError("choose randaugment or trivialaugment, not both")
        if self.warmup_epochs > self.epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) is longer than the run "
                f"({self.epochs} epochs)"
            )
        return self

    def resolved_optimizer(self) -> str:
        """The optimizer to build: `optimizer`, with "auto" (not settled by an LR test) as SGD."""
        return "sgd" if self.optimizer == "auto" else self.optimizer

    def resolved_lr(self) -> float:
        """The learning rate to use: `lr`, or the optimizer's default when `lr` is None.

        "auto" must have been replaced by the LR range test's choice before this is asked."""
        if self.lr == "auto":
            raise ValueError("lr is still \"auto\": run the LR range test first")
        return self.lr if self.lr is not None else DEFAULT_LR[self.resolved_optimizer()]

    def resolved_weight_decay(self) -> float:
        """`weight_decay`, or the optimizer's default when it is None."""
        if self.weight_decay is not None:
            return self.weight_decay
        return DEFAULT_WEIGHT_DECAY[self.resolved_optimizer()]

    def augment(self):
        """An `runtime.data.augment.AugmentConfig` built from the augmentation fields."""
        # Imported lazily so that config stays importable without the image stack.
        from ..data.augment import AugmentConfig

        return AugmentConfig(
            scale=tuple(self.scale), ratio=tuple(self.ratio),
            rotation=self.rotation, hflip=self.hflip,
            randaugment=tuple(self.randaugment) if self.randaugment else None,
            trivialaugment=self.trivialaugment,
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


def merge_config(base: dict[str, Any] | None, overrides: dict[str, Any] | None,
                 default_recipe: str | None = None) -> TrainConfig:
    """Build a TrainConfig: `overrides` (CLI) beat `base` (the spec's train section) beat the
    recipe's settings beat the defaults.

    The recipe is `overrides["recipe"]`, else `base["recipe"]`, else `default_recipe`; with
    none of them there is no recipe layer (the defaults below are the plain ones).

    Override values that are None are treated as "not given", because that is how an unset
    CLI option arrives; to clear `lr` or `grad_clip` put `null` in the spec instead.
    Raises ConfigError with a readable message (unknown keys get a "did you mean").
    """
    given = _normalise_keys(base or {})
    given.update({k: v for k, v in _normalise_keys(overrides or {}).items() if v is not None})
    name = given.get("recipe", default_recipe)
    merged = {**_recipe_settings(name), **given} if name is not None else given
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


def _recipe_settings(name: str) -> dict[str, Any]:
    """The settings of recipe `name` (its name included); ConfigError naming the known ones."""
    from .recipes import RECIPES

    recipe = RECIPES.get(str(name))
    if recipe is None:
        close = difflib.get_close_matches(str(name), list(RECIPES), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(f"unknown recipe '{name}'{hint}; recipes: {', '.join(RECIPES)}")
    return {**recipe.settings, "recipe": recipe.name}
