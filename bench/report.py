"""The benchmark table: every suite turns its results into `Row`s, rendered once here as
Markdown (bench/results/results.md) and as text on the console."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One figure: archc's number, the baseline's, their ratio and whether the target holds."""

    id: str  # the letter (a–e) or the suite
    what: str
    archc: str
    baseline: str
    ratio: float | None
    target: str
    holds: bool | None  # None: a figure without a target
    note: str = ""

    def cells(self) -> list[str]:
        """The row as table cells."""
        ratio = "" if self.ratio is None else f"{self.ratio:.3g}"
        holds = "" if self.holds is None else "yes" if self.holds else "NO"
        return [self.id, self.what, self.archc, self.baseline, ratio, self.target, holds,
                self.note]


HEADER = ["", "what", "archc", "baseline", "ratio", "target", "holds", "note"]


def markdown(rows: list[Row], machine: dict, command: str) -> str:
    """A Markdown page: the machine, the command, then the table."""
    lines = [
        "# Benchmark results",
        "",
        f"Machine: {describe(machine)}",
        f"Command: `{command}`",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "---|" * len(HEADER),
    ]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row.cells()) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def describe(machine: dict) -> str:
    """`bench.__main__.machine()` as one line: what the numbers were measured on."""
    gpu = machine.get("gpu") or "no GPU"
    return (f"{machine.get('cpus')} CPUs, {gpu}; Python {machine.get('python')}, torch "
            f"{machine.get('torch')}; {machine.get('platform')}; {machine.get('date')}")


def text(rows: list[Row]) -> str:
    """The same table, aligned for a terminal."""
    table = [HEADER] + [row.cells() for row in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table)
