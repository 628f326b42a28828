"""`archc runs [DIR]`: one row per run folder under DIR, to answer "which network is best".

A row comes from files every run writes: record.json (network, parameters, MACs, init),
hparams.json (recipe), metrics.jsonl (best validation accuracy and its log loss, epochs,
wall time, images/s). A run that predates `record.json["model"]` gets its parameters and
MACs by checking its own spec.arch again.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ..training.metrics import read_records


@dataclass
class RunRow:
    """One run's line of the table."""

    run: str
    network: str
    params: int | None
    macs: int | None
    best_val_acc: float | None
    best_val_logloss: float | None
    epochs: int
    wall_s: float
    images_per_s: float | None
    recipe: str
    init: str


COLUMNS = {  # field -> table heading
    "run": "run", "network": "network", "params": "params", "macs": "MACs",
    "best_val_acc": "best val acc", "best_val_logloss": "val log loss", "epochs": "epochs",
    "wall_s": "wall time", "images_per_s": "img/s", "recipe": "recipe", "init": "init",
}


def find_runs(root: Path) -> list[Path]:
    """Run folders (holding record.json) at `root` itself or below it, sorted by path."""
    root = Path(root)
    if (root / "record.json").exists():
        return [root]
    return sorted(p.parent for p in root.rglob("record.json"))


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _model_size(run_dir: Path, record: dict[str, Any], params: dict[str, Any]):
    """(parameters, MACs) from record.json, else by checking the run's spec again."""
    model = record.get("model") or {}
    if "params" in model:
        return model["params"], model.get("macs")
    try:
        import archc

        result = archc.check(run_dir / "spec.arch", params, network=record.get("network"))
        net = result.network
        return (net.n_params, net.inference_macs) if net is not None else (None, None)
    except Exception:  # noqa: BLE001 - an old or damaged run only loses these two cells
        return None, None


def read_run(run_dir: Path, root: Path | None = None) -> RunRow:
    """The table row of one run folder."""
    record = _json(run_dir / "record.json")
    hparams = _json(run_dir / "hparams.json")
    records = read_records(run_dir)
    scored = [r for r in records if isinstance(r.get("val_acc"), (int, float))]
    best = max(scored, key=lambda r: r["val_acc"], default=None)  # first of equals wins
    speeds = [r["images_per_s"] for r in records if isinstance(r.get("images_per_s"), float)]
    n_params, macs = _model_size(run_dir, record, hparams.get("params", {}))
    name = str(run_dir.relative_to(root)) if root is not None and run_dir != root else str(
        run_dir.name)
    return RunRow(
        run=name,
        network=record.get("network") or "?",
        params=n_params,
        macs=macs,
        best_val_acc=best["val_acc"] if best else None,
        best_val_logloss=best.get("val_logloss") if best else None,
        epochs=len(records),
        wall_s=sum(r.get("epoch_time") or 0.0 for r in records),
        images_per_s=sum(speeds) / len(speeds) if speeds else None,
        recipe=(hparams.get("train") or {}).get("recipe") or "-",
        init=(record.get("model") or {}).get("init") or "random",
    )


def table(root: Path) -> list[RunRow]:
    """Every run's row under `root`, best validation accuracy first."""
    rows = [read_run(d, Path(root)) for d in find_runs(Path(root))]
    return sorted(rows, key=lambda r: -(r.best_val_acc if r.best_val_acc is not None else -1))


def cells(row: RunRow) -> list[str]:
    """A row as display strings."""
    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    minutes, seconds = divmod(int(round(row.wall_s)), 60)
    return [row.run, row.network, num(row.params, ","),
            "-" if row.macs is None else f"{row.macs / 1e6:,.1f} M",
            num(row.best_val_acc, ".4f"), num(row.best_val_logloss, ".4f"), str(row.epochs),
            f"{minutes}:{seconds:02d}", num(row.images_per_s, ",.0f"), row.recipe, row.init]


def markdown(rows: list[RunRow]) -> str:
    """A GitHub-flavoured Markdown table (the lecture's table format)."""
    head = list(COLUMNS.values())
    right = {"params", "MACs", "best val acc", "val log loss", "epochs", "wall time", "img/s"}
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---:" if h in right else "---" for h in head) + "|"]
    lines += ["| " + " | ".join(cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_text(rows: list[RunRow]) -> str:
    """Plain numbers, one run per line, for a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[f.name for f in fields(RunRow)],
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    return buffer.getvalue()


def plot(rows: list[RunRow], path: Path, force: bool = False) -> Path:
    """Best validation accuracy against MACs (log scale), one labelled point per run, written
    to `path` as an output the user named (`archc.write_output`: atomic, and refused over a
    run's own file or a file archc did not write unless `force`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    import archc

    fig = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    shown = [r for r in rows if r.macs and r.best_val_acc is not None]
    for r in shown:
        assert r.macs is not None and r.best_val_acc is not None  # as `shown` selects
        ax.plot([r.macs / 1e6], [r.best_val_acc], "o")
        ax.annotate(r.network, (r.macs / 1e6, r.best_val_acc), textcoords="offset points",
                    xytext=(4, 4), fontsize=8)
    if shown:
        ax.set_xscale("log")
    ax.set_xlabel("MACs per image (millions)")
    ax.set_ylabel("best validation accuracy")
    ax.set_title("accuracy against compute")
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.12, right=0.97, bottom=0.12, top=0.92)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png" if path.suffix.lower() != ".svg" else "svg", dpi=100)
    return archc.write_output(path, buffer.getvalue(), force=force)
