"""Benchmarks of the checker: (a) cold `archc check` against `import torch`, and (e) check
time against spec size, which should grow linearly.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from bench.report import Row

ROOT = Path(__file__).resolve().parents[1]


def _cold(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def cold_check(repeats: int = 5) -> dict:
    """(a) Cold `archc check specs/resnet152.arch` against `import torch`, each a new process.

    The two commands alternate so that machine load affects both alike. The target is judged
    on the fastest run of each (as `timeit` advises: on this shared machine a run takes either
    its own time or that plus someone else's, and the minimum is the former); the ratio of
    medians is reported beside it.
    """
    check = [sys.executable, "-m", "archc", "check", "specs/resnet152.arch"]
    torch = [sys.executable, "-c", "import torch"]
    _cold(check), _cold(torch)  # warm the OS file cache and lark's grammar cache
    a, b = [], []
    for _ in range(repeats):
        a.append(_cold(check))
        b.append(_cold(torch))
    ratio = min(a) / min(b)
    return {
        "check_s": min(a),
        "import_torch_s": min(b),
        "ratio": ratio,
        "median_ratio": statistics.median(a) / statistics.median(b),
        "runs": repeats,
        "target": 0.15,
        "ok": ratio <= 0.15,
    }


def _spec(blocks: int) -> str:
    """A network of `blocks` distinct lines, each calling a small residual block."""
    lines = [
        "block unit(c):",
        "    add:",
        "        conv3-{c} bn relu conv3-{c} bn",
        "        shortcut",
        "    relu",
        "",
        "network big(num_classes=10):",
        "    input 3x32x32",
        "    stem: conv3-16",
    ]
    lines += [f"    b{i}: unit(16)" for i in range(blocks)]
    lines += ["    global-avgpool flatten", "    fc: FC-{num_classes}", ""]
    return "\n".join(lines)


def scaling(sizes=(10, 50, 100, 250, 500, 1000, 2000), repeats: int = 3) -> dict:
    """(e) In-process check time per spec size; linear growth keeps time/block flat."""
    import archc

    archc.check("warm.arch", text=_spec(10))
    rows = []
    for n in sizes:
        text = _spec(n)
        best = min(_timed(lambda: archc.check("big.arch", text=text)) for _ in range(repeats))
        rows.append({"blocks": n, "seconds": best, "ms_per_block": 1000 * best / n})
    per_block = [r["ms_per_block"] for r in rows if r["blocks"] >= 100]
    spread = max(per_block) / min(per_block)
    return {"rows": rows, "per_block_spread": spread, "ok": spread < 1.5}


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run(quick: bool = False) -> dict:
    """Both checker benchmarks."""
    return {
        "a_cold_check": cold_check(3 if quick else 7),
        "e_scaling": scaling((10, 100, 500) if quick else (10, 50, 100, 250, 500, 1000, 2000)),
    }


def rows(result: dict) -> list[Row]:
    """(a) and (e) as table rows."""
    a, e = result["a_cold_check"], result["e_scaling"]
    per_block = [r["ms_per_block"] for r in e["rows"] if r["blocks"] >= 100]
    largest = e["rows"][-1]["blocks"]
    return [
        Row("a", "cold `archc check specs/resnet152.arch` vs `python -c \"import torch\"`",
            f"{a['check_s']:.3f} s", f"{a['import_torch_s']:.3f} s", a["ratio"], "≤ 0.15",
            a["ok"], f"fastest of {a['runs']} interleaved runs, each a new process; ratio of "
            f"medians {a['median_ratio']:.3f}"),
        Row("e", f"check time per block, 100 to {largest:,} blocks (spread = max/min)",
            f"{min(per_block):.2f}–{max(per_block):.2f} ms/block", "", e["per_block_spread"],
            "< 1.5 (linear)", e["ok"], "in process, fastest of 3 per size"),
    ]
