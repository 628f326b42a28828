"""Training recipes: named sets of defaults that a spec's `train:` section and the CLI override.

A recipe is a row of `RECIPES` (name -> `Recipe`); `runtime.config.merge_config` layers its
settings between TrainConfig's plain defaults and the spec. `archc train` picks `finetune`
when `--init` is given and `from-scratch` otherwise; `--recipe NAME` (or `recipe = "NAME"` in
the spec's train section) chooses another. docs/training.md explains each one and why.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """A named set of TrainConfig defaults, with one line saying what it is for."""

    name: str
    summary: str
    settings: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            "from-scratch",
            "random initialisation: LR range test, 1 warm-up epoch, cosine, label smoothing 0.1; "
            "SGD-Nesterov unless the range test finds SGD cannot descend, then AdamW",
            {
                "lr": "auto",
                "optimizer": "auto",
                "weight_decay": None,  # 5e-4 for SGD, 0.05 for AdamW
                "schedule": "cosine",
                "warmup_epochs": 1.0,
                "label_smoothing": 0.1,
            },
        ),
        Recipe(
            "finetune",
            "pretrained weights (--init): the head trains at the range test's LR, the backbone "
            "at a tenth of it and frozen (batch norm in eval) for the first epoch",
            {
                "lr": "auto",
                "optimizer": "sgd",
                "weight_decay": None,
                "schedule": "cosine",
                "warmup_epochs": 0.0,
                "label_smoothing": 0.1,
                "freeze_epochs": 1,
                "backbone_lr_scale": 0.1,
            },
        ),
        Recipe(
            "lecture",
            "the lecture era's plain recipe (archc's old default): SGD, momentum 0.9, lr 0.01, "
            "weight decay 5e-4, cosine, no warm-up, no label smoothing",
            {
                "lr": 0.01,
                "optimizer": "sgd",
                "nesterov": False,
                "weight_decay": 5e-4,
                "schedule": "cosine",
                "warmup_epochs": 0.0,
                "label_smoothing": 0.0,
            },
        ),
    )
}


def default_recipe(init: str | None) -> str:
    """The recipe used when none is named: `finetune` from pretrained weights, else
    `from-scratch`."""
    return "finetune" if init else "from-scratch"
