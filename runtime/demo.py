"""`make demo`: the main job end to end on embedded defaults, on the CPU, in a few minutes.

It makes a synthetic Dogs-vs-Cats dataset, checks, compiles and draws real specs, trains
the width-reduced ResNet of examples/mini_resnet.arch at 64×64, then evaluates it and
writes a Kaggle submission. Every step is the `archc` command a user would type.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def step(title: str, *args: str) -> None:
    """Print and run one `archc` command; stop the demo if it fails."""
    cmd = [sys.executable, "-m", "archc", *args]
    print(f"\n== {title}\n$ archc {shlex.join(args)}", flush=True)
    started = time.perf_counter()
    code = subprocess.call(cmd, cwd=ROOT)
    if code != 0:
        sys.exit(f"demo step failed (exit {code}): archc {shlex.join(args)}")
    print(f"   ({time.perf_counter() - started:.1f}s)", flush=True)


def main() -> None:
    """Run the demo into --out (default demo/)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo", help="folder for everything the demo writes")
    parser.add_argument("--n", type=int, default=1200, help="synthetic training images")
    parser.add_argument("--epochs", type=int, default=8)
    opts = parser.parse_args()
    out = Path(opts.out)
    os.environ.setdefault("ARCHC_CACHE", str((ROOT / out / "cache").resolve()))
    data = out / "data"
    run = out / "run"
    if not (data / "train").exists():
        step(
            "1. synthetic Dogs-vs-Cats data (real JPEGs, Kaggle layout)",
            "data",
            "synth",
            str(data),
            "--n",
            str(opts.n),
            "--test",
            "100",
        )
    if not (out / "holdout" / "train").exists():
        step(
            "1b. a held-out labelled set from another seed",
            "data",
            "synth",
            str(out / "holdout"),
            "--n",
            "200",
            "--seed",
            "1",
        )
    step("2. check a spec: shapes, parameters, valid input sizes", "check", "specs/resnet34.arch")
    step(
        "3. compile it: layer table + standalone PyTorch source",
        "compile",
        "specs/resnet34.arch",
        "-o",
        str(out / "resnet34.py"),
    )
    step("4. draw GoogLeNet", "graph", "specs/googlenet.arch", "-o", str(out / "googlenet.svg"))
    train = [
        "train",
        "examples/mini_resnet.arch",
        "--data",
        str(data / "train"),
        "--epochs",
        str(opts.epochs),
        "--workers",
        "2",
    ]
    if (run / "last.json").exists():
        train += ["--resume", str(run)]  # idempotent: a second demo continues the same run
    else:
        train += ["--run", str(run)]
    step("5. train a width-reduced ResNet-18 at 64×64 on the CPU", *train)
    step(
        "6. evaluate it on the held-out set",
        "eval",
        str(run),
        "--data",
        str(out / "holdout" / "train"),
    )
    step(
        "7. Kaggle submission for the unlabelled test1/",
        "submit",
        str(run),
        "--test",
        str(data / "test1"),
        "-o",
        str(out / "submission.csv"),
    )
    print(f"\nDone. The trained model, metrics.jsonl/csv and curves.png are in {run}/.")


if __name__ == "__main__":
    main()
