"""`python -m bench.digits [--out DIR]`: the issue-22 acceptance check on data no one here
made. scikit-learn's 8x8 digits (bundled with scikit-learn, nothing downloads) are written as
PNG class folders, and `archc train bench/digits.arch` runs with no --lr, --batch-size or
schedule flags, 8 epochs on the CPU. Passes (exit 0) when the best validation accuracy is at
least 0.98. Needs the dev extra (scikit-learn).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.98


def export_digits(folder: Path) -> int:
    """Write every digit as folder/<digit>/<index>.png (8x8 greyscale); returns the count."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        target = folder / str(label) / f"{i:04d}.png"
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        grey = np.clip(pixels * (255 / 16), 0, 255).astype(np.uint8)  # values 0..16
        Image.fromarray(grey, mode="L").save(target)
    return len(digits.target)


def main() -> int:
    """Export, train with the defaults, report the best validation accuracy."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="bench/results/digits", help="data and run folder")
    opts = parser.parse_args()
    out = Path(opts.out)
    n = export_digits(out / "data")
    run = out / f"run-{time.strftime('%Y%m%d-%H%M%S')}"
    env = {**os.environ, "ARCHC_CACHE": os.environ.get("ARCHC_CACHE", str(out / "cache"))}
    command = [sys.executable, "-m", "archc", "train", str(ROOT / "bench" / "digits.arch"),
               "--data", str(out / "data"), "--run", str(run)]
    print(f"{n} digits in {out / 'data'}\n$ archc {' '.join(command[3:])}", flush=True)
    started = time.perf_counter()
    code = subprocess.call(command, env=env)
    if code != 0:
        print(f"training failed (exit {code})")
        return code
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    best = max(r["val_acc"] for r in records)
    chosen = json.loads((run / "record.json").read_text()).get("lr_finder", {})
    print(f"best val accuracy {best:.4f} in {len(records)} epochs "
          f"({time.perf_counter() - started:.0f} s; LR range test chose "
          f"{chosen.get('optimizer')} lr {chosen.get('lr', float('nan')):.3g}); "
          f"target {TARGET}: {'PASS' if best >= TARGET else 'FAIL'}")
    return 0 if best >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
