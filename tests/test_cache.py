"""archc's on-disk parse cache (archc/compiler/cache.py): a hit gives the very IR a parse gives, and
nothing the result depends on (text, limits, archc's own files) can make it stale."""
from __future__ import annotations

import os
import pickle
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import archc
from archc.compiler import cache, limits
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
    return sorted((root / "specs").glob("*.json")) if (root / "specs").is_dir() else []


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


def _flip(data: bytes, where: int) -> bytes:
    return data[:where] + bytes([data[where] ^ 0x04]) + data[where + 1:]


def _old_schema(data: bytes) -> bytes:
    """The entry as an archc whose IR named a field differently would have written it, sealed
    properly: only decoding can tell."""
    key, payload = data.split(b" ")[1].decode(), data.partition(b"\n")[2]
    return cache.seal(key, payload.replace(b'"callee":', b'"kind":'))


@pytest.mark.parametrize("damage", [
    lambda data: b"",
    lambda data: b"not an entry",
    lambda data: data[: len(data) // 2],  # truncated
    lambda data: _flip(data, len(data) // 2),  # one bit in the payload
    lambda data: _flip(data, len(data) - 3),
    lambda data: _flip(data, 20),  # one bit in the header's key
    lambda data: pickle.dumps({"a": "dict"}),  # archc before 0.2 wrote pickles
    _old_schema,
], ids=["empty", "junk", "truncated", "flipped-middle", "flipped-end", "flipped-header",
        "pickle", "old-schema"])
def test_a_damaged_or_foreign_entry_is_a_miss(home, tmp_path, damage):
    path = write(tmp_path, SPEC)
    archc.check(path)
    [entry] = entries(home)
    damaged = damage(entry.read_bytes())
    entry.write_bytes(damaged)
    result = archc.check(path)
    assert result.ok and result.network.output_shape == (2,) and result.network.n_params > 0
    assert entry.read_bytes() != damaged  # removed and rewritten from a parse
    assert cache.unseal(entry.name[:-5], entry.read_bytes()) is not None


def test_another_specs_entry_under_this_key_is_a_miss(home, tmp_path):
    """Filed under this spec's name, a valid entry of another spec (FC-7) must not give
    another network: its header names the key it was written for."""
    path = write(tmp_path, SPEC)
    other = write(tmp_path, SPEC.replace("FC-2", "FC-7"), "other.arch")
    archc.check(path)
    archc.check(other)
    mine, theirs = (home / "specs" / f"{cache.spec_key(str(p), p.read_text())}.json"
                    for p in (path, other))
    mine.write_bytes(theirs.read_bytes())
    assert archc.check(path).network.output_shape == (2,)


def test_an_entry_that_is_a_link_is_not_followed(home, tmp_path):
    path = write(tmp_path, SPEC)
    archc.check(path)
    [entry] = entries(home)
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_bytes(entry.read_bytes())
    entry.unlink()
    entry.symlink_to(elsewhere)
    assert cache.private_dir("specs").read(entry.name, 10**6) is None
    assert archc.check(path).ok


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


def test_a_folder_on_the_way_that_others_can_write_is_not_trusted(tmp_path, monkeypatch):
    """Another user who can write a folder above the cache could swap archc's folder for
    their own: nothing under it is used, however well archc's own folder looks."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("ARCHC_CACHE", str(shared / "archc"))
    assert cache.private_dir("specs") is None
    shared.chmod(0o777 | stat.S_ISVTX)  # sticky, as /tmp: nobody may rename what is ours
    assert cache.private_dir("specs") is not None
    assert stat.S_IMODE((shared / "archc" / "specs").stat().st_mode) == 0o700


def test_a_link_to_a_shared_folder_is_not_trusted(tmp_path, monkeypatch):
    shared = tmp_path / "shared"
    (shared / "archc").mkdir(parents=True)
    shared.chmod(0o777)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "archc").symlink_to(shared / "archc")
    monkeypatch.setenv("ARCHC_CACHE", str(tmp_path / "mine" / "archc"))
    assert cache.private_dir("specs") is None


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0,
                    reason="needs root to make a folder that belongs to another user")
def test_a_folder_of_another_user_is_not_trusted(tmp_path, monkeypatch):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 4242, 4242)
    monkeypatch.setenv("ARCHC_CACHE", str(theirs / "archc"))
    assert cache.private_dir("specs") is None


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


def test_the_entry_is_the_ir_class(home):
    directory = cache.private_dir("specs")
    payload = cache.encode_data({"statements": []})  # sealed and whole, but not a spec
    cache.store_entry(directory, "0" * 64, payload)
    assert cache.load(directory, "0" * 64) is None


def test_the_ir_round_trips_exactly(tmp_path):
    """Every node class, field and number type comes back: a cached spec is the same IR."""
    for spec_path in sorted(Path(archc.__file__).parents[1].glob("specs/**/*.arch")):
        spec = parse_source(spec_path.read_text(), str(spec_path), Diagnostics())
        back = cache.decode_ir(cache.encode_ir(spec))
        assert back.model_dump() == spec.model_dump()
        assert repr(back) == repr(spec)  # 1 and 1.0 differ in a repr


def test_a_relative_home_never_leads_into_the_temporary_folder(monkeypatch):
    monkeypatch.delenv("ARCHC_CACHE", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "relative/home")
    root = cache.root()
    assert root is None or (root.is_absolute() and not str(root).startswith("relative"))
    import tempfile

    assert root is None or not root.is_relative_to(tempfile.gettempdir())


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
