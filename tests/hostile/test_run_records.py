"""Run folders edited by hand (issue 24, class 5): record.json and hparams.json are
validated on load, so a wrong type or an impossible class list is one line naming the file
and the field, for every verb that reads a run; sizes no image set needs are refused before
anything is allocated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .conftest import assert_one_line_error, run_archc, tree_state
from .runtime_support import TINY, TRAIN_MEM_MB, archc_env, dataset, output, train


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(scratch folder, data, a run folder with one epoch)."""
    root = tmp_path_factory.mktemp("records")
    data = dataset(root / "data", n=12)
    run = root / "run"
    done = train(root, data, run)
    assert done.returncode == 0, output(done)
    return root, data, run


def _edited(run: Path, tmp_path: Path, name: str, change) -> Path:
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    data = json.loads((copy / name).read_text())
    change(data)
    (copy / name).write_text(json.dumps(data))
    return copy


def _set(*keys_and_value):
    *keys, value = keys_and_value

    def change(data):
        for key in keys[:-1]:
            data = data[key]
        data[keys[-1]] = value
    return change


EDITS = {
    "duplicate classes": ("record.json", _set("classes", ["cat", "cat"]), "`classes`",
                          "listed twice"),
    "classes as a string": ("record.json", _set("classes", "cd"), "`classes`", "list"),
    "an empty class name": ("record.json", _set("classes", ["cat", " "]), "`classes`", "empty"),
    "three classes for a 2-way head": ("record.json", _set("classes", ["cat", "dog", "eel"]),
                                       "2 outputs", "3 classes"),
    "network as a number": ("record.json", _set("network", 7), "`network`", "string"),
    "image_size as a list": ("hparams.json", _set("train", "image_size", [32]),
                             "`train.image_size`", "integer"),
    "huge cache_size": ("hparams.json", _set("train", "cache_size", 10**9),
                        "`train.cache_size`", "4096"),
    "train missing": ("hparams.json", lambda d: d.pop("train"), "`train`", "required"),
}


@pytest.mark.parametrize("case", sorted(EDITS))
@pytest.mark.parametrize("verb", ["eval", "predict", "export"])
def test_edited_records_are_one_line(trained, tmp_path, case, verb):
    root, data, run = trained
    name, change, field, words = EDITS[case]
    copy = _edited(run, tmp_path, name, change)
    args = {"eval": [], "predict": [next(data.glob("cat.*.jpg"))],
            "export": ["--to", "python", "-o", tmp_path / "net.py"]}[verb]
    before = tree_state(copy)
    proc = run_archc(verb, copy, *args, env=archc_env(root), mem_mb=TRAIN_MEM_MB)
    line = assert_one_line_error(proc, 1)
    assert field in line and words in line, line
    assert tree_state(copy) == before


@pytest.mark.parametrize("case", ["duplicate classes", "classes as a string", "train missing"])
def test_resume_validates_the_records(trained, tmp_path, case):
    root, data, run = trained
    name, change, field, words = EDITS[case]
    copy = _edited(run, tmp_path, name, change)
    proc = run_archc("train", TINY, "--resume", copy, "--epochs", "2", env=archc_env(root),
                     mem_mb=TRAIN_MEM_MB, cpu_s=120)
    line = assert_one_line_error(proc, 1)
    assert field in line and words in line, line


def test_huge_sizes_are_refused_before_allocation(trained, tmp_path):
    root, data, run = trained
    spec = tmp_path / "big.arch"
    spec.write_text(TINY.read_text().replace("cache_size = 32", "cache_size = 1000000"))
    proc = train(tmp_path, data, tmp_path / "run1", spec=spec)
    assert_one_line_error(proc)
    assert "cache_size" in proc.stderr and "4096" in proc.stderr
    assert not (tmp_path / "cache" / "images").exists()
    proc = train(tmp_path, data, tmp_path / "run2", "--batch-size", "10000000")
    assert_one_line_error(proc)
    assert "batch_size" in proc.stderr.replace("-", "_") and "65536" in proc.stderr
    assert not (tmp_path / "cache" / "images").exists()
    proc = run_archc("predict", run, next(data.glob("cat.*.jpg")), "--batch-size", "10000000",
                     env=archc_env(root), mem_mb=TRAIN_MEM_MB)
    assert proc.returncode == 2 and "4096" in proc.stderr, output(proc)  # typer's usage error
    assert "Traceback" not in proc.stderr
