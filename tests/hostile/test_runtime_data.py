"""Hostile datasets and data verbs: links that loop, `data synth` over a dataset or into a
place it cannot write, and `data cache` sizes that cannot work.

Items 1, 2, 12, the data parts of 15, and 27 (the validation split rounds) of issue 11.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from .conftest import assert_one_line_error, run_archc, tree_state
from .runtime_support import TRAIN_MEM_MB, archc_env, dataset, output, train


def _class_folders(root: Path, per_class: int = 8) -> Path:
    """A class-per-folder dataset (cat/, dog/) of real JPEGs; returns its root."""
    flat = dataset(root / "flat", n=2 * per_class)
    data = root / "data"
    for name in ("cat", "dog"):
        (data / name).mkdir(parents=True)
        for image in flat.glob(f"{name}.*.jpg"):
            shutil.move(image, data / name / image.name)
    return data


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: a read-only folder, or (as root, who
    may write anywhere else) /sys, which the kernel keeps read-only."""
    if os.geteuid() != 0:
        folder = tmp_path / "read-only"
        folder.mkdir()
        folder.chmod(0o555)
        return folder
    probe = Path("/sys") / "archc-probe"
    try:
        probe.mkdir()
    except OSError:
        return Path("/sys")
    probe.rmdir()
    pytest.skip("no folder here refuses writes to root")


# ------------------------------------------------------------------ 1, 2 (and 27): links


def test_looping_links_neither_hang_nor_repeat_images_and_the_split_rounds(tmp_path):
    data = _class_folders(tmp_path, per_class=8)
    (data / "cat" / "up").symlink_to("..")              # 1: a loop through the dataset root
    (data / "dog" / "self").symlink_to(".")             # 2: a folder that holds itself
    (data / "dog" / "again.jpg").symlink_to("dog.0.jpg")  # a second name of one image
    run = tmp_path / "run"
    done = train(tmp_path, data, run, "--val-fraction", "0.2")
    assert done.returncode == 0, output(done)
    warnings = [ln for ln in done.stderr.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 2, done.stderr
    assert "cat/up" in warnings[0] and "dog/self" in warnings[1]
    counts = json.loads((run / "record.json").read_text())["counts"]
    # every real image once; 8 per class at 0.2 rounds to 2 validation images each (27)
    assert counts == {"train": 12, "val": 4, "skipped": 0}, counts
    split = json.loads((run / "split.json").read_text())
    assert not set(split["train"]) & set(split["val"])

    evaluated = run_archc("eval", run, "--json", env=archc_env(tmp_path), mem_mb=TRAIN_MEM_MB,
                          cpu_s=60)
    assert evaluated.returncode == 0, output(evaluated)
    assert json.loads(evaluated.stdout)["n"] == 4


def test_a_link_that_gives_one_image_two_labels_is_refused(tmp_path):
    data = _class_folders(tmp_path, per_class=2)
    (data / "cat" / "dogs").symlink_to("../dog")
    done = run_archc("data", "cache", data, "--size", "32", env=archc_env(tmp_path),
                     mem_mb=TRAIN_MEM_MB)
    line = assert_one_line_error(done, code=1)
    assert "are the same file, in classes 'cat' and 'dog'" in line, line
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").rglob("*.npy"))


# ------------------------------------------------------------------ 12: synth over a dataset


def test_synth_into_an_existing_dataset_refuses_and_changes_nothing(tmp_path):
    first = run_archc("data", "synth", tmp_path / "d", "--n", "6", mem_mb=800, cpu_s=30)
    assert first.returncode == 0, output(first)
    before = tree_state(tmp_path / "d")
    again = run_archc("data", "synth", tmp_path / "d", "--n", "10", "--seed", "1",
                      mem_mb=800, cpu_s=30)
    line = assert_one_line_error(again, code=1)
    assert "already exist" in line and "--force" in line, line
    assert tree_state(tmp_path / "d") == before  # not one new or rewritten file

    forced = run_archc("data", "synth", tmp_path / "d", "--n", "10", "--seed", "1", "--force",
                       mem_mb=800, cpu_s=30)
    assert forced.returncode == 0, output(forced)
    assert len(list((tmp_path / "d" / "train").glob("*.jpg"))) == 10


# ------------------------------------------------------------------ 15: synth and cache


def test_synth_where_it_cannot_write_is_one_line(tmp_path):
    blocked = _unwritable_folder(tmp_path)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    before = tree_state(tmp_path)
    for target in (blocked / "d", a_file, a_file / "sub"):
        done = run_archc("data", "synth", target, "--n", "4", mem_mb=800, cpu_s=30)
        line = assert_one_line_error(done, code=1)
        assert line.startswith("error: cannot write the dataset to "), line
    assert tree_state(tmp_path) == before


@pytest.mark.parametrize("args, says", [
    (["--n", "4", "--test", "-3"], "--test must be 0 or more, got -3"),
    (["--n", "1"], "--n must be at least 2"),
])
def test_synth_bad_counts_are_refused(tmp_path, args, says):
    done = run_archc("data", "synth", tmp_path / "d", *args, mem_mb=800, cpu_s=30)
    assert says in assert_one_line_error(done, code=2)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("size", ["0", "100000"])
def test_cache_sizes_out_of_range_are_refused_before_allocating(tmp_path, size):
    data = dataset(tmp_path / "data", n=4)
    done = run_archc("data", "cache", data, "--size", size, env=archc_env(tmp_path),
                     mem_mb=TRAIN_MEM_MB, cpu_s=30)
    line = assert_one_line_error(done, code=2)
    assert f"between 1 and 4096 pixels, got {size}" in line, line
    assert not (tmp_path / "cache").exists()


def test_an_unwritable_cache_is_one_line(tmp_path):
    data = dataset(tmp_path / "data", n=4)
    cache = _unwritable_folder(tmp_path) / "cache"
    done = run_archc("data", "cache", data, "--size", "32", env={"ARCHC_CACHE": str(cache)},
                     mem_mb=TRAIN_MEM_MB, cpu_s=30)
    line = assert_one_line_error(done, code=1)
    assert line.startswith(f"error: cannot write the image cache in {cache}"), line
    assert "ARCHC_CACHE" in line
