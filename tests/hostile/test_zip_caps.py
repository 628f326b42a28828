"""Zip bombs in the training data (issue 24, class 6): a member of train.zip that would
inflate past the `zip_member_bytes` limit (or all images past `zip_total_bytes`) is refused
in one line before anything is inflated; both limits are raised like the other limits."""

from __future__ import annotations

import zipfile
from pathlib import Path

from .conftest import assert_one_line_error
from .runtime_support import dataset, output, train

ZEROS = bytes(1024 * 1024)


def _zip_with_bomb(tmp_path: Path, bomb_mib: int) -> Path:
    """Kaggle's train.zip layout with real JPEGs, plus one 'image' of `bomb_mib` MiB of
    zeros (it compresses a thousandfold)."""
    images = dataset(tmp_path / "images", n=12)
    archive = tmp_path / "train.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for image in sorted(images.glob("*.jpg")):
            zf.write(image, f"train/{image.name}")
        with zf.open("train/dog.99.jpg", "w", force_zip64=True) as member:
            for _ in range(bomb_mib):
                member.write(ZEROS)
    assert archive.stat().st_size < bomb_mib * 1024 * 1024 // 100
    return archive


def test_a_zip_bomb_is_refused_before_inflating(tmp_path):
    archive = _zip_with_bomb(tmp_path, 300)  # over the default 256 MiB per member
    proc = train(tmp_path, archive, tmp_path / "run")
    line = assert_one_line_error(proc, 1)
    assert "dog.99.jpg" in line and "zip_member_bytes" in proc.stderr, output(proc)
    assert not (tmp_path / "run" / "record.json").exists()


def test_the_caps_are_limits_that_can_be_lowered_and_raised(tmp_path):
    archive = _zip_with_bomb(tmp_path, 4)
    proc = train(tmp_path, archive, tmp_path / "run1", "--limit", "zip_member_bytes=1000000")
    assert "zip_member_bytes" in assert_one_line_error(proc, 1), output(proc)
    proc = train(tmp_path, archive, tmp_path / "run2", env={"ARCHC_LIMITS":
                                                          "zip_total_bytes=2000000"})
    assert "zip_total_bytes" in assert_one_line_error(proc, 1), output(proc)
    proc = train(tmp_path, archive, tmp_path / "run3", "--limit", "zip_member_bytes=1e7")
    assert "zip_member_bytes" not in proc.stderr, output(proc)  # raised: the bomb is read
