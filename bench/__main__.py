"""`make bench` / `python -m bench [--quick]`: every benchmark, as ratios against baselines
measured in the same run. Writes bench/results/results.json and bench/results/results.md.
"""

from __future__ import annotations

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


def main(argv: list[str]) -> None:
    """Run the suites named on the command line (default: all)."""
    quick = "--quick" in argv
    names = [a for a in argv if not a.startswith("-")] or list(SUITES)
    results = {"machine": machine(), "command": "python -m bench " + " ".join(argv)}
    for name in names:
        print(f"== {name}", flush=True)
        try:
            module = importlib.import_module(SUITES[name])
        except ImportError as exc:
            results[name] = {"error": f"not available: {exc}"}
            continue
        results[name] = module.run(quick=quick)
        print(json.dumps(results[name], indent=2, default=str), flush=True)
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"wrote {out / 'results.json'}")


if __name__ == "__main__":
    main(sys.argv[1:])
