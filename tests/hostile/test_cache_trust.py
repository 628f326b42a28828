"""Issue 24, class 1: no code from a cache. Another local user races the victim's real
`archc check` (a second process flipping a symlink), or plants entries, pickles and folders
where archc keeps its caches; no code of theirs ever runs and the network never changes."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import REPO, run_archc

SPEC = "network tiny:\n    input 3x32x32\n    conv3-8 relu\n    global-avgpool flatten FC-2\n"


class _Payload:
    """Unpickling this creates the marker file: proof that the attacker's code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _spec_with_imports(folder: Path, count: int) -> tuple[Path, list[Path]]:
    """A spec importing `count` files: each file read is one more entry archc looks up, one
    more chance for a race to land."""
    files = []
    for n in range(count):
        files.append(folder / f"lib{n}.arch")
        files[-1].write_text(f"block b{n}:\n    conv3-8 relu\n")
    spec = folder / "tiny.arch"
    spec.write_text("".join(f'import "lib{n}.arch"\n' for n in range(count)) + SPEC)
    return spec, [spec, *files]


def _plant(folder: Path, specs_read: list[Path], marker: Path) -> None:
    """An attacker's cache folder: a pickle under every name archc ever read an entry by
    (each file's key, as archc before issue 24 named it `.pickle` and as it names it now)."""
    from archc.compiler import cache

    specs = folder / "specs"
    specs.mkdir(parents=True)
    evil = pickle.dumps(_Payload(str(marker)))
    for spec in specs_read:
        key = cache.spec_key(str(spec), spec.read_text())
        for name in (f"{key}.pickle", f"{key}.json"):
            (specs / name).write_bytes(evil)
    specs.chmod(0o777)  # another user's folder, open to them: the victim must not trust it
    folder.chmod(0o777)


_FLIPPER = textwrap.dedent("""\
    import os, sys, time
    link, good, evil, stop = sys.argv[1:]
    flip = 0
    while not os.path.exists(stop):
        target = evil if flip % 2 else good
        os.symlink(target, link + ".new")
        os.replace(link + ".new", link)  # atomic: the link always exists, now here, now there
        flip += 1
    print(flip)
""")


def test_a_symlink_flipped_during_check_never_runs_the_attackers_pickle(tmp_path):
    """The attacker flips the victim's cache folder (a symlink, as a shared machine's
    `~/.cache` may be) between the victim's own folder, which passes every check, and theirs,
    holding pickles under this spec's key, while the victim runs `archc check` again and
    again. Before issue 24 the folder was checked by path and entries opened by path: a
    flip between the two loaded the attacker's pickle within a few runs."""
    spec, files = _spec_with_imports(tmp_path, 8)
    marker = tmp_path / "attacker-code-ran"
    good, evil, link = tmp_path / "good", tmp_path / "evil", tmp_path / "cache"
    good.mkdir(mode=0o700)
    _plant(evil, files, marker)
    os.symlink(good, link)
    stop = tmp_path / "stop"
    flipper = subprocess.Popen(
        [sys.executable, "-c", _FLIPPER, str(link), str(good), str(evil), str(stop)],
        stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.2)
        for run in range(12):
            proc = run_archc("check", spec, env={"ARCHC_CACHE": str(link)}, cwd=tmp_path)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.startswith("OK tiny: 3×32×32 → 2"), proc.stdout
            assert not marker.exists(), f"the attacker's pickle ran as the victim (run {run})"
    finally:
        stop.touch()
        flips = int(flipper.communicate(timeout=30)[0] or 0)
    assert flips > 100  # the race really ran alongside the checks
    assert not marker.exists()


def test_a_pickle_planted_in_the_cache_is_never_loaded(tmp_path):
    """Even in the victim's own folder (say it was writable once), a pickle under the
    entry's name is a miss: entries are JSON behind a checksum."""
    spec, files = _spec_with_imports(tmp_path, 2)
    marker = tmp_path / "attacker-code-ran"
    root = tmp_path / "cache"
    _plant(root, files, marker)
    for folder in (root, root / "specs"):
        folder.chmod(0o700)  # the victim's own, private again
    for _ in range(2):
        proc = run_archc("check", spec, env={"ARCHC_CACHE": str(root)}, cwd=tmp_path)
        assert proc.returncode == 0 and proc.stdout.startswith("OK tiny: 3×32×32 → 2"), proc
    assert not marker.exists()


@pytest.mark.parametrize("no_cache", ["0", "1"])
def test_a_pickle_planted_as_the_grammar_is_never_loaded(tmp_path, no_cache):
    """The grammar cache was lark's pickle, read even with ARCHC_NO_CACHE=1: a pickle under
    any name in grammar/ (a lark cache file with a valid first line included) never runs."""
    root = tmp_path / "cache"
    grammar = root / "grammar"
    grammar.mkdir(parents=True, mode=0o700)
    root.chmod(0o700)
    marker = tmp_path / "attacker-code-ran"
    evil = pickle.dumps(_Payload(str(marker)))
    text = (REPO / "archc" / "compiler" / "grammar.lark").read_text()
    # where archc before issue 24 had lark keep it, and where archc keeps it now
    names = [f"grammar-start+expr-{_sha(text)[:16]}.lark", *_grammar_entry_names(text)]
    for name in names:
        (grammar / name).write_bytes(b"0" * 64 + b"\n" + evil)
    spec = tmp_path / "tiny.arch"
    spec.write_text(SPEC)
    proc = run_archc("check", spec, env={"ARCHC_CACHE": str(root), "ARCHC_NO_CACHE": no_cache},
                     cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not marker.exists()


def _grammar_entry_names(text: str) -> list[str]:
    """The name of the grammar's entry in today's cache (none before issue 24)."""
    import lark

    from archc.compiler import cache, parse

    if not hasattr(parse, "_OPTIONS"):
        return []
    options = repr(sorted(parse._OPTIONS.items()))
    return [f"{cache.data_key(cache.FORMAT, lark.__version__, text, options)}{cache.SUFFIX}"]


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()


def test_a_relative_home_is_not_a_shared_temporary_folder(tmp_path):
    """With HOME=relative, archc made its cache in <tmp>/archc-cache-UID, a folder another
    user could create first (and did: full of their entries)."""
    import tempfile

    shared = Path(tempfile.gettempdir()) / f"archc-cache-{os.getuid()}"
    if shared.exists():
        pytest.skip(f"{shared} exists on this machine")
    spec = tmp_path / "tiny.arch"
    spec.write_text(SPEC)
    env = {"HOME": "relative-home", "ARCHC_CACHE": "", "XDG_CACHE_HOME": ""}
    try:
        proc = run_archc("check", spec, env=env, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert not shared.exists()
        assert not (tmp_path / "relative-home").exists()
    finally:
        if shared.exists():
            subprocess.run(["rm", "-rf", str(shared)], check=False)
