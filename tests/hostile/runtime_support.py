"""Shared pieces of the runtime half of the hostile suite: a tiny real JPEG dataset, the tiny
spec, and `archc train` run as a user would (under the suite's resource limits)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from runtime.data.synth import write_synthetic

from .conftest import REPO, run_archc

TINY = REPO / "tests" / "fixtures" / "tiny.arch"
#: small images keep decoding cheap; the tiny spec trains at 32 px
SMALL = ((40, 64), (36, 56))
#: torch maps a lot of address space at import; training a tiny net stays far below this
TRAIN_MEM_MB = 4000


def dataset(root: Path, n: int = 12, seed: int = 0) -> Path:
    """A Kaggle-style train/ folder of `n` real JPEGs (half cats, half dogs); returns train/."""
    return write_synthetic(root, n=n, seed=seed, size=SMALL) / "train"


def archc_env(tmp_path: Path) -> dict[str, str]:
    """A private image cache, so tests never share or pollute ~/.cache."""
    return {"ARCHC_CACHE": str(tmp_path / "cache")}


def train(tmp_path: Path, data: Path, run: Path | None, *args: str | Path,
          spec: Path = TINY, cwd: Path | None = None,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`archc train SPEC --data DATA [--run RUN] --epochs 1 --batch-size 4 ARGS` in a subprocess."""
    run_args = ["--run", run] if run is not None else []
    return run_archc("train", spec, "--data", data, *run_args, "--epochs", "1",
                     "--batch-size", "4", *args, cwd=cwd,
                     env={**archc_env(tmp_path), **(env or {})},
                     mem_mb=TRAIN_MEM_MB, cpu_s=120)


def records(run: Path) -> list[dict]:
    """The epoch records in a run's metrics.jsonl."""
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def output(proc: subprocess.CompletedProcess) -> str:
    """Both streams, for failure messages and searches."""
    return f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
