"""Outputs never clobber inputs (issue 24, class 4): every verb that writes a file the user
names (`graph`, `convert`, `schema`, `compile`, `diff --graph`, `import`, `submit`, `export`,
`runs --md/--csv/--plot`) refuses to replace a run folder's own files or a file archc did not
write, in one line naming the file and --force, and writes atomically: a write that fails
part way (a full disk, simulated with RLIMIT_FSIZE; a converter that fails) leaves the old
file byte for byte. `train --run` refuses a symlink or a folder of the user's own files. Each
refusal leaves everything on disk as it was."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from archc.compiler.outputs import mark, written_by_archc

from .conftest import assert_one_line_error, run_archc, tree_state
from .runtime_support import TINY, archc_env, dataset, output, train

SPEC = "network n:\n    input 3x32x32\n    conv3-8 relu maxpool\n    flatten FC-10\n"
PROTOTXT = ('input: "data"\ninput_shape { dim: 1 dim: 3 dim: 32 dim: 32 }\n'
            'layer { name: "r" type: "ReLU" bottom: "data" top: "r" }\n')


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(scratch folder, data, a run folder with one epoch)."""
    root = tmp_path_factory.mktemp("outputs")
    data = dataset(root / "data", n=12)
    run = root / "run"
    done = train(root, data, run)
    assert done.returncode == 0, output(done)
    test = root / "test1"
    test.mkdir()
    for i, image in enumerate(sorted(data.glob("cat.*.jpg"))[:2], 1):
        shutil.copy(image, test / f"{i}.jpg")
    return root, data, run


def _refused(proc, path: Path) -> None:
    line = assert_one_line_error(proc)
    assert str(path) in line and "--force" in line, line


@pytest.mark.parametrize("verb, name", [
    (["submit", "--test", "{test}", "-o"], "best.safetensors"),
    (["submit", "--test", "{test}", "-o"], "record.json"),
    (["export", "--to", "python", "-o"], "spec.arch"),
    (["export", "--to", "onnx", "-o"], "metrics.csv"),
], ids=lambda v: v if isinstance(v, str) else v[0])
def test_after_verbs_refuse_a_run_folders_own_files(trained, verb, name):
    root, _, run = trained
    before = tree_state(run)
    args = [a.replace("{test}", str(root / "test1")) for a in verb]
    proc = run_archc(args[0], run, *args[1:], run / name, env=archc_env(root), mem_mb=4000)
    _refused(proc, run / name)
    assert "run folder" in proc.stderr
    assert tree_state(run) == before


def test_submit_refuses_a_users_file_and_replaces_its_own(trained, tmp_path):
    root, _, run = trained
    mine = tmp_path / "mine.csv"
    mine.write_text("the user's own notes\n")
    args = ["submit", run, "--test", root / "test1", "-o"]
    _refused(run_archc(*args, mine, env=archc_env(root), mem_mb=4000), mine)
    assert mine.read_text() == "the user's own notes\n"
    ours = tmp_path / "submission.csv"
    for _ in range(2):  # the second run replaces what the first wrote, without --force
        proc = run_archc(*args, ours, env=archc_env(root), mem_mb=4000)
        assert proc.returncode == 0, output(proc)
    proc = run_archc(*args, mine, "--force", env=archc_env(root), mem_mb=4000)
    assert proc.returncode == 0, output(proc)
    assert mine.read_text().startswith("id,label")


def test_compile_refuses_a_users_file(tmp_path):
    (tmp_path / "n.arch").write_text(SPEC)
    (tmp_path / "net.py").write_text("# my own module\n")
    before = tree_state(tmp_path)
    _refused(run_archc("compile", "n.arch", "-o", "net.py", cwd=tmp_path, mem_mb=4000),
             Path("net.py"))
    assert tree_state(tmp_path) == before
    for _ in range(2):
        proc = run_archc("compile", "n.arch", "-o", "gen.py", cwd=tmp_path, mem_mb=4000)
        assert proc.returncode == 0, output(proc)


def test_import_refuses_a_users_file_and_a_symlink(tmp_path):
    (tmp_path / "n.prototxt").write_text(PROTOTXT)
    (tmp_path / "mine.arch").write_text(SPEC)
    (tmp_path / "link.arch").symlink_to(tmp_path / "mine.arch")
    before = tree_state(tmp_path)
    for target in ("mine.arch", "link.arch"):
        _refused(run_archc("import", "n.prototxt", "-o", target, cwd=tmp_path), Path(target))
    assert tree_state(tmp_path) == before
    for _ in range(2):
        proc = run_archc("import", "n.prototxt", "-o", "ours.arch", cwd=tmp_path)
        assert proc.returncode == 0, output(proc)


def _users_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "my_stuff"
    folder.mkdir()
    (folder / "metrics.csv").write_text("my own measurements\n")
    (folder / "spec.arch").write_text(SPEC)
    (folder / "notes.txt").write_text("do not lose\n")
    return folder


@pytest.mark.parametrize("how", ["folder", "link", "link inside"])
def test_train_refuses_a_folder_of_the_users_files(tmp_path, how):
    data = dataset(tmp_path / "data", n=4)
    folder = _users_folder(tmp_path)
    run = folder
    if how == "link":
        run = tmp_path / "run_link"
        run.symlink_to(folder)
    elif how == "link inside":  # a run's file name, but a link out of the folder
        run = tmp_path / "run"
        run.mkdir()
        (run / "metrics.csv").symlink_to(folder / "metrics.csv")
    before = tree_state(folder), tree_state(run)
    proc = train(tmp_path, data, run, spec=TINY)
    line = assert_one_line_error(proc, 1)
    assert str(run) in line
    assert (tree_state(folder), tree_state(run)) == before
    assert not (tmp_path / "cache" / "images").exists()  # refused before reading the data


# --------------------------------------------------------------------------- every output


#: every verb that writes a file the user names: its arguments up to the output, and a name
#: for the output that the verb accepts
VERBS = {
    "graph": (["graph", "n.arch", "-o"], "out.svg"),
    "graph-dot": (["graph", "n.arch", "-o"], "out.dot"),
    "convert": (["convert", "n.arch", "--to", "yaml", "-o"], "out.yaml"),
    "schema": (["schema", "-o"], "out.json"),
    "compile-python": (["compile", "n.arch", "-o"], "out.py"),
    "compile-onnx": (["compile", "n.arch", "--emit", "onnx", "-o"], "out.onnx"),
    "diff": (["diff", "n.arch", "n.arch", "--graph"], "out.svg"),
    "import": (["import", "n.prototxt", "-o"], "out.arch"),
}
USERS = b"the user's own file\n"


def _workspace(tmp_path: Path) -> Path:
    (tmp_path / "n.arch").write_text(SPEC)
    (tmp_path / "n.prototxt").write_text(PROTOTXT)
    return tmp_path


def _run_verb(verb: str, folder: Path, target: Path, *extra: str, **limits):
    args, _ = VERBS[verb]
    return run_archc(*args, target, *extra, cwd=folder, mem_mb=4000,
                     env={"ARCHC_NO_CACHE": "1"}, **limits)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_output_refuses_a_users_file_and_writes_with_force(tmp_path, verb):
    folder = _workspace(tmp_path)
    target = folder / VERBS[verb][1]
    target.write_bytes(USERS)
    before = tree_state(folder)
    _refused(_run_verb(verb, folder, target), target)
    assert tree_state(folder) == before
    proc = _run_verb(verb, folder, target, "--force")
    assert proc.returncode == 0, output(proc)
    assert target.read_bytes() != USERS
    proc = _run_verb(verb, folder, target)  # now archc's own: replaced without --force
    assert proc.returncode == 0, output(proc)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_output_refuses_a_run_folders_own_files(tmp_path, verb):
    folder = _workspace(tmp_path)
    run = folder / "run"
    run.mkdir()
    (run / "record.json").write_text("{}\n")
    target = run / VERBS[verb][1]
    target.write_bytes(USERS)
    mark(target)  # archc's own file, but the run's: still refused
    before = tree_state(folder)
    proc = _run_verb(verb, folder, target)
    _refused(proc, target)
    assert "run folder" in proc.stderr
    assert tree_state(folder) == before


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_an_interrupted_write_leaves_the_old_file(tmp_path, verb):
    """Every output is larger than 16 bytes, so under RLIMIT_FSIZE the write fails part way
    (as on a full disk): the file being replaced, even with --force, stays byte for byte,
    and no temporary is left beside it."""
    folder = _workspace(tmp_path)
    target = folder / VERBS[verb][1]
    target.write_bytes(USERS)
    before = tree_state(folder)
    proc = _run_verb(verb, folder, target, "--force", file_bytes=16)
    assert_one_line_error(proc)
    assert tree_state(folder) == before


def test_a_drawing_graphviz_cannot_make_leaves_the_old_file(tmp_path):
    """A `dot` that fails part way (here: writes half a drawing, then dies) replaces
    nothing."""
    folder = _workspace(tmp_path)
    tools = folder / "bin"
    tools.mkdir()
    (tools / "dot").write_text("#!/bin/sh\nprintf '<svg'\nexit 3\n")
    (tools / "dot").chmod(0o755)
    target = folder / "out.svg"
    target.write_bytes(USERS)
    before = tree_state(folder)
    proc = run_archc("graph", "n.arch", "-o", target, "--force", cwd=folder,
                     env={"PATH": f"{tools}:{os.environ['PATH']}", "ARCHC_NO_CACHE": "1"})
    assert_one_line_error(proc)
    assert tree_state(folder) == before


@pytest.mark.parametrize("to, name", [("python", "net.py"), ("onnx", "net.onnx")])
def test_export_refuses_then_replaces_atomically(trained, tmp_path, to, name):
    root, _, run = trained
    target = tmp_path / name
    target.write_bytes(USERS)
    before = tree_state(tmp_path)
    args = ["export", run, "--to", to, "-o", target]
    _refused(run_archc(*args, env=archc_env(root), mem_mb=4000), target)
    proc = run_archc(*args, "--force", env=archc_env(root), mem_mb=4000, file_bytes=16)
    assert_one_line_error(proc)
    assert tree_state(tmp_path) == before
    proc = run_archc(*args, "--force", env=archc_env(root), mem_mb=4000)
    assert proc.returncode == 0, output(proc)
    assert target.read_bytes() != USERS


def test_submit_interrupted_leaves_the_old_file(trained, tmp_path):
    root, _, run = trained
    target = tmp_path / "submission.csv"
    target.write_bytes(USERS)
    before = tree_state(tmp_path)
    proc = run_archc("submit", run, "--test", root / "test1", "-o", target, "--force",
                     env=archc_env(root), mem_mb=4000, file_bytes=8)
    assert_one_line_error(proc)
    assert tree_state(tmp_path) == before


@pytest.mark.parametrize("option, name", [("--md", "runs.md"), ("--csv", "runs.csv"),
                                          ("--plot", "runs.png")])
def test_runs_tables_go_through_the_guard(trained, tmp_path, option, name):
    root, _, run = trained
    target = tmp_path / name
    target.write_bytes(USERS)
    before = tree_state(tmp_path)
    args = ["runs", run.parent, option, target]
    _refused(run_archc(*args, env=archc_env(root), mem_mb=4000), target)
    proc = run_archc(*args, "--force", env=archc_env(root), mem_mb=4000, file_bytes=8)
    assert_one_line_error(proc)
    assert tree_state(tmp_path) == before
    proc = run_archc(*args, "--force", env=archc_env(root), mem_mb=4000)
    assert proc.returncode == 0, output(proc)
    assert target.read_bytes() != USERS
    for inside in (run / "spec.arch", run / "metrics.csv"):  # a run's own file, even marked
        mark(inside)
        kept = inside.read_bytes()
        _refused(run_archc("runs", run.parent, option, inside, env=archc_env(root),
                           mem_mb=4000), inside)
        assert inside.read_bytes() == kept


def test_fmt_rewrites_the_spec_atomically_and_keeps_it_the_users(tmp_path):
    """fmt replaces its input by design: atomically (an interrupted write leaves the spec),
    with the spec's mode kept and without archc's mark (the spec stays the user's)."""
    spec = tmp_path / "n.arch"
    unformatted = SPEC.replace("conv3-8 relu maxpool", "conv3-8   relu    maxpool")
    spec.write_text(unformatted)
    spec.chmod(0o640)
    before = tree_state(tmp_path)
    proc = run_archc("fmt", spec, env={"ARCHC_NO_CACHE": "1"}, file_bytes=16)
    assert_one_line_error(proc)
    assert tree_state(tmp_path) == before
    proc = run_archc("fmt", spec, env={"ARCHC_NO_CACHE": "1"})
    assert proc.returncode == 0, output(proc)
    assert spec.read_text() != unformatted
    assert spec.stat().st_mode & 0o777 == 0o640 and not written_by_archc(spec)


def test_eval_plot_goes_through_the_guard(trained, tmp_path):
    root, _, run = trained
    target = tmp_path / "confusion.png"
    target.write_bytes(USERS)
    before = tree_state(tmp_path)
    args = ["eval", run, "--plot", target]
    _refused(run_archc(*args, env=archc_env(root), mem_mb=4000), target)
    proc = run_archc(*args, "--force", env=archc_env(root), mem_mb=4000, file_bytes=16)
    assert_one_line_error(proc)
    assert tree_state(tmp_path) == before
    proc = run_archc(*args, "--force", env=archc_env(root), mem_mb=4000)
    assert proc.returncode == 0, output(proc)
    assert target.read_bytes().startswith(b"\x89PNG")


def test_lr_find_refuses_a_users_file(tmp_path):
    data = dataset(tmp_path / "data", n=4)
    (tmp_path / "lr_finder.json").write_text('{"mine": true}\n')
    before = tree_state(tmp_path)
    proc = run_archc("lr-find", TINY, "--data", data, "--out", tmp_path,
                     env=archc_env(tmp_path), mem_mb=4000)
    _refused(proc, tmp_path / "lr_finder.json")
    assert tree_state(tmp_path) == before
