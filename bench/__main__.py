"""`make bench` / `python -m bench [check|model|data|gpu|infer] [--quick]`: every benchmark, as
ratios against baselines measured in the same run. Writes the raw figures to
bench/results/results.json and the table to bench/results/results.md, and prints the table.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import sys
import time
from pathlib import Path

SUITES = {
    "check": "bench.bench_check",  # (a) cold check vs import torch, (e) check-time scaling
    "model": "bench.bench_model",  # (b) build vs torchvision, (c) train step vs torchvision
    "data": "bench.bench_data",  # (d) data pipeline vs ImageFolder + PIL + transforms
    "gpu": "bench.bench_gpu",  # ResNet-34 images/s with bf16/channels_last/compile on/off
    "lsp": "bench.bench_lsp",  # language-server answers on a 2,000-block spec (≤ 100 ms)
    "infer": "bench.bench_infer",  # (i) engines and int8 vs torchvision eager, (s) submit
}


def machine() -> dict:
    """What the numbers were measured on."""
    import os

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except ImportError:  # pragma: no cover
        pass
    return info


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """The suites and options; `--help` prints the usage and exits before anything runs."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Every benchmark (or the SUITEs named), as ratios against baselines "
                    "measured in the same run; writes bench/results/results.json and "
                    "results.md and prints the table.")
    parser.add_argument("suites", nargs="*", metavar="SUITE",
                        help=f"one of {', '.join(SUITES)} (default: all of them)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer sizes and repeats: a smoke run, not figures to report")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    """Run the suites named on the command line (default: all). A missed target is reported,
    not an error: timings on a shared machine are noisy, and the table says which missed."""
    from bench.report import markdown, text

    arguments = parse_arguments(argv)
    quick = arguments.quick
    names = arguments.suites or list(SUITES)
    unknown = sorted(set(names) - set(SUITES))
    if unknown:
        print(f"unknown suite {', '.join(unknown)}; choose from {', '.join(SUITES)}")
        return 2
    command = "python -m bench " + " ".join(argv)
    results: dict = {"machine": machine(), "command": command.strip()}
    rows = []
    for name in names:
        print(f"== {name}", flush=True)
        module = importlib.import_module(SUITES[name])
        results[name] = module.run(quick=quick)
        rows += module.rows(results[name])
        print(json.dumps(results[name], indent=2, default=str), flush=True)
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "results.md").write_text(markdown(rows, results["machine"], results["command"]))
    print(text(rows))
    judged = [row for row in rows if row.holds is not None]
    missed = [f"{row.id} ({row.what})" for row in judged if not row.holds]
    print(f"targets: {len(judged) - len(missed)} of {len(judged)} hold"
          + (f"; missed: {'; '.join(missed)}" if missed else ""))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
