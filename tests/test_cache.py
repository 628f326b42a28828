"""archc's on-disk parse cache (archc/compiler/cache.py): a hit gives the very IR a parse gives, and
nothing the result depends on (text, limits, archc's own files) can make it stale."""
from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import archc
from archc.compiler import cache, ir, limits
from archc.compiler.diagnostics import Diagnostics
from archc.compiler.sources import parse_source, parse_source_cached

SPEC = """\
network tiny(c=8):
    input 3x32x32
    conv3-{c}  relu
    concat:
        wide: conv3-{c}
        narrow: conv1-{c}
    global-avgpool  flatten  FC-2
"""


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """A cache root of this test's own."""
    root = tmp_path / "cache"
    monkeypatch.setenv("ARCHC_CACHE", str(root))
    monkeypatch.delenv("ARCHC_NO_CACHE", raising=False)
    return root


def entries(root: Path) -> list[Path]:
    return sorted((root / "specs").glob("*.pickle")) if (root / "specs").is_dir() else []


def write(tmp_path: Path, text: str, name: str = "tiny.arch") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_hit_gives_the_same_ir_as_a_parse(home, tmp_path):
    path = write(tmp_path, SPEC)
    first = parse_source_cached(SPEC, str(path), Diagnostics())
    assert len(entries(home)) == 1
    hit = parse_source_cached(SPEC, str(path), Diagnostics())
    fresh = parse_source(SPEC, str(path), Diagnostics())
    assert hit is not first
    assert hit.model_dump() == fresh.model_dump() == first.model_dump()  # spans included


def test_check_and_build_use_it_and_agree(home, tmp_path):
    path = write(tmp_path, SPEC)
    cold = archc.check(path)
    assert len(entries(home)) == 1
    warm = archc.check(path)
    assert cold.ok and warm.ok
    assert warm.network.n_params == cold.network.n_params
    assert [layer.out_shape for layer in archc.compiler.graph.layers(warm.network.root)] == [
        layer.out_shape for layer in archc.compiler.graph.layers(cold.network.root)]


def test_an_edit_is_never_served_stale(home, tmp_path):
    path = write(tmp_path, SPEC)
    assert archc.check(path).network.n_params > 0
    # the same length, so only the text can tell the two apart
    path.write_text(SPEC.replace("FC-2", "FC-3"))
    assert archc.check(path).network.output_shape == (3,)
    path.write_text(SPEC)
    assert archc.check(path).network.output_shape == (2,)


def test_the_limits_in_force_are_part_of_the_key(home, tmp_path):
    path = write(tmp_path, SPEC)
    assert archc.check(path).ok
    with limits.override(depth=1):  # the parser refuses this nesting now
        result = archc.check(path)
    assert [d.code for d in result.diagnostics if d.is_error] == ["E205"]
    assert archc.check(path).ok


@pytest.mark.parametrize("slip,code", [
    ("relu )", "E001"),  # a syntax error: no IR at all
    ("relu conv3-{c +}", "E109"),  # IR, and an error found while building it
])
def test_a_parse_with_diagnostics_is_not_stored(home, tmp_path, slip, code):
    path = write(tmp_path, SPEC.replace("relu", slip))
    for _ in range(2):  # the second run reports the error again, from a parse
        assert code in {d.code for d in archc.check(path).diagnostics}
    assert entries(home) == []


@pytest.mark.parametrize("damage", [b"", b"not a pickle", pickle.dumps(["a list"])[:-1],
                                    pickle.dumps({"a": "dict"})])
def test_a_damaged_or_foreign_entry_is_a_miss(home, tmp_path, damage):
    path = write(tmp_path, SPEC)
    archc.check(path)
    [entry] = entries(home)
    entry.write_bytes(damage)
    result = archc.check(path)
    assert result.ok and result.network.output_shape == (2,)
    if damage != pickle.dumps({"a": "dict"}):  # unreadable entries are removed and rewritten
        assert entry.read_bytes() != damage


def test_turned_off_by_the_environment(home, tmp_path, monkeypatch):
    monkeypatch.setenv("ARCHC_NO_CACHE", "1")
    assert archc.check(write(tmp_path, SPEC)).ok
    assert entries(home) == []


def test_a_directory_others_can_write_is_not_trusted(home, tmp_path):
    specs = home / "specs"
    specs.mkdir(parents=True)
    specs.chmod(0o777)  # anyone could plant a pickle here
    assert cache.private_dir("specs") is None
    assert archc.check(write(tmp_path, SPEC)).ok
    assert entries(home) == []


def test_an_unusable_root_only_means_no_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ARCHC_CACHE", str(blocker))
    assert cache.private_dir("specs") is None
    result = subprocess.run([sys.executable, "-m", "archc", "check", str(write(tmp_path, SPEC))],
                            capture_output=True, text=True, env={**os.environ})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK tiny")


def test_an_editor_buffer_is_not_stored(home, tmp_path):
    path = write(tmp_path, SPEC)
    assert archc.check(path, text=SPEC.replace("FC-2", "FC-5")).network.output_shape == (5,)
    assert entries(home) == []


def test_it_stays_bounded(home, tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "MAX_ENTRIES", 6)
    for n in range(10):
        archc.check(write(tmp_path, SPEC.replace("FC-2", f"FC-{n + 2}")))
    assert 3 <= len(entries(home)) <= 6


def test_archc_s_own_files_are_in_the_key(home, tmp_path, monkeypatch):
    path = write(tmp_path, SPEC)
    cache.archc_fingerprint.cache_clear()  # as the files are now
    before = cache.spec_key(str(path), SPEC)
    cache.archc_fingerprint.cache_clear()
    parser = Path(archc.__file__).parent / "compiler" / "parse.py"
    stamp = parser.stat()
    try:  # an edited parser (a new mtime) must not read entries the old one wrote
        os.utime(parser, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1_000_000_000))
        assert cache.spec_key(str(path), SPEC) != before
    finally:
        os.utime(parser, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        cache.archc_fingerprint.cache_clear()
    assert cache.spec_key(str(path), SPEC) == before


def test_yaml_specs_are_cached_too(home, tmp_path):
    from archc.compiler.yamlspec import dump_yaml

    spec = parse_source(SPEC, "tiny.arch", Diagnostics())
    path = write(tmp_path, dump_yaml(spec), "tiny.yaml")
    assert archc.check(path).ok
    assert len(entries(home)) == 1
    assert archc.check(path).network.output_shape == (2,)


def test_the_entry_is_the_ir_class():
    assert cache.load(Path("/nonexistent-archc-dir"), "0" * 64, ir.SpecFile) is None


def test_without_a_home_directory_it_is_still_absolute(monkeypatch):
    monkeypatch.delenv("ARCHC_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(os.path, "expanduser", lambda path: path)  # `~` stays `~`
    assert cache.root().is_absolute()  # never a folder called `~` wherever archc runs


def test_it_stays_within_its_bytes(home, tmp_path, monkeypatch):
    path = write(tmp_path, SPEC)
    archc.check(path)
    [entry] = entries(home)
    size = entry.stat().st_size
    monkeypatch.setattr(cache, "MAX_BYTES", 4 * size)  # room for four such entries
    for n in range(8):
        archc.check(write(tmp_path, SPEC.replace("FC-2", f"FC-{n + 3}")))
    assert sum(e.stat().st_size for e in entries(home)) <= 4.2 * size
    monkeypatch.setattr(cache, "MAX_BYTES", size)  # an entry over an eighth is not kept
    before = set(entries(home))
    archc.check(write(tmp_path, SPEC.replace("FC-2", "FC-99")))
    assert set(entries(home)) <= before


def test_a_writer_killed_before_its_rename_leaves_nothing_for_long(home, tmp_path):
    archc.check(write(tmp_path, SPEC))
    specs = home / "specs"
    stale, fresh = specs / "stale.tmp", specs / "fresh.tmp"
    for left in (stale, fresh):
        left.write_bytes(b"half an entry")
    os.utime(stale, (0, 0))  # written long ago
    archc.check(write(tmp_path, SPEC.replace("FC-2", "FC-4")))  # a miss: a store prunes
    assert not stale.exists() and fresh.exists()  # a writer may still be renaming this one
