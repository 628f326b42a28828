"""A run folder's records, validated on load: `record.json` and `hparams.json`.

A run folder is the user's to edit, copy or damage. Whatever reads it (resume, eval,
predict, submit, export) gets the records through `read_record` and `read_hparams`, so a
wrong type or an impossible class list (a duplicate, an empty name, a string where a list
belongs) is one line naming the file and the field, never an internal error and never a
prediction under the wrong names.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from runtime.training.config import TrainConfig


class RecordError(ValueError):
    """A run-folder record that is missing, not JSON, or not of the shape archc wrote."""


class RunRecord(BaseModel):
    """The fields of record.json that archc reads back; the provenance beside them is kept
    but not interpreted."""

    model_config = ConfigDict(extra="allow", strict=True)

    classes: list[str] = Field(min_length=1)
    network: str | None = None
    variant: str | None = None
    data_path: str | None = None
    spec_path: str | None = None

    @field_validator("classes")
    @classmethod
    def _distinct_names(cls, classes: list[str]) -> list[str]:
        if any(not name.strip() for name in classes):
            raise ValueError("a class name is empty")
        seen: set[str] = set()
        for name in classes:
            if name in seen:
                raise ValueError(f"class `{name}` is listed twice")
            seen.add(name)
        return classes


class HParams(BaseModel):
    """hparams.json: the training configuration and the spec parameters of the run."""

    model_config = ConfigDict(extra="forbid")

    train: TrainConfig
    params: dict[str, Any] = Field(default_factory=dict)
    # the LR range test's choice (runtime/training/lrfind.py), when it ran
    lr_finder: dict[str, Any] | None = None


def read_record(run_dir: Path | str) -> dict[str, Any]:
    """RUN/record.json as a dict, validated (`RecordError` in one line otherwise)."""
    path = Path(run_dir) / "record.json"
    data = _json(path)
    _validated(RunRecord, data, path)
    return data


def read_hparams(run_dir: Path | str) -> tuple[TrainConfig, dict[str, Any]]:
    """(TrainConfig, spec parameters) from RUN/hparams.json, validated."""
    path = Path(run_dir) / "hparams.json"
    hparams = _validated(HParams, _json(path), path)
    return hparams.train, dict(hparams.params)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"{path.parent} is not a run folder ({path.name} is missing)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordError(f"cannot read {path}: {exc}") from None
    except ValueError as exc:
        raise RecordError(f"{path} is not valid JSON: {exc}") from None


def _validated(model: type[BaseModel], data: Any, path: Path):
    """`data` as `model`, or a RecordError naming the first bad field in one line."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the file"
        message = first["msg"].removeprefix("Value error, ")
        more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
        raise RecordError(f"{path} was edited or damaged: `{where}`: {message}{more}") from None
