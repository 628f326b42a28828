"""Helpers for the hostile-input suite: run the real `archc` CLI as a user would, in a
subprocess under `resource` limits, and check that a failure is one clean line.

The limits make a hang or a memory blow-up fail the test as a behaviour (the process is
killed by the kernel) rather than by timing: RLIMIT_AS caps the address space, RLIMIT_CPU
the CPU seconds, and a wall-clock timeout (a few times the CPU limit) catches a sleep.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_ARCHC = Path(sys.executable).with_name("archc")


def archc_command() -> list[str]:
    """The installed `archc` console script, or `python -m archc` where none is installed."""
    return [str(_ARCHC)] if _ARCHC.exists() else [sys.executable, "-m", "archc"]


def _limits(mem_mb: int, cpu_s: int, file_bytes: int | None = None):
    """A preexec function that caps the child's address space and CPU time, and with
    `file_bytes` the size of any file it writes (a write past it fails with EFBIG: Python
    ignores SIGXFSZ), which interrupts a write as a full disk would."""

    def apply() -> None:
        memory = mem_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
        if file_bytes is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))

    return apply


def run_archc(
    *args: str | os.PathLike,
    cwd: str | os.PathLike | None = None,
    input: str | None = None,
    mem_mb: int = 1500,
    cpu_s: int = 60,
    env: dict[str, str] | None = None,
    file_bytes: int | None = None,
) -> subprocess.CompletedProcess:
    """Run the real `archc` CLI with `args` under memory and CPU limits; never raises for a
    nonzero exit (`file_bytes`: see `_limits`). Output is text. A process killed by a limit
    shows as a negative (signal) or nonzero returncode, which `assert_one_line_error`
    rejects."""
    child_env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "100"}
    child_env.update(env or {})
    return subprocess.run(
        [*archc_command(), *map(str, args)],
        cwd=cwd,
        input=input,
        capture_output=True,
        text=True,
        errors="replace",
        env=child_env,
        preexec_fn=_limits(mem_mb, cpu_s, file_bytes),
        timeout=cpu_s * 3,
    )


def error_lines(stderr: str) -> list[str]:
    """The headline lines of errors (`error: ...` or `error[E123]: ...`) in stderr."""
    return [line for line in stderr.splitlines() if line.startswith("error")]


def assert_one_line_error(proc: subprocess.CompletedProcess, code: int | None = None) -> str:
    """Assert that `proc` failed cleanly: a nonzero exit (exactly `code` when given, never a
    signal), no traceback, and exactly one error headline in stderr. Returns that line."""
    detail = (
        f"exit {proc.returncode}\nstdout:\n{proc.stdout[-2000:]}\nstderr:\n{proc.stderr[-4000:]}"
    )
    assert proc.returncode > 0, detail
    if code is not None:
        assert proc.returncode == code, detail
    assert "Traceback" not in proc.stderr, detail
    assert "Traceback" not in proc.stdout, detail
    headlines = error_lines(proc.stderr)
    assert len(headlines) == 1, detail
    return headlines[0]


def tree_state(root: str | os.PathLike) -> dict[str, str]:
    """Every file under `root` with a digest of its content, mode and size: compare two calls
    to assert that a command changed nothing on disk."""
    state: dict[str, str] = {}
    for path in sorted(Path(root).rglob("*")):
        if path.is_symlink():
            state[str(path)] = "link:" + os.readlink(path)
        elif path.is_file():
            stat = path.stat()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            state[str(path)] = f"{stat.st_mode:o}:{stat.st_size}:{digest}"
        elif path.is_dir():
            state[str(path)] = "dir"
    return state


def location(stderr: str) -> str | None:
    """The `file:line:col` of the first ` --> ` line of a rendered diagnostic, if any."""
    for line in stderr.splitlines():
        if line.lstrip().startswith("--> "):
            return line.lstrip()[4:].strip()
    return None


def assert_spec_error(proc: subprocess.CompletedProcess, code: str, where: str) -> str:
    """Assert that `proc` reported exactly one error, diagnostic `code`, located at `where`
    (a `file:line` or `file:line:col` prefix), exit 1, no traceback. Returns the headline."""
    headline = assert_one_line_error(proc, 1)
    assert headline.startswith(f"error[{code}]"), proc.stderr
    assert (location(proc.stderr) or "").startswith(where), proc.stderr
    return headline
