"""docs/importing.md shows real output: each ```arch block is what `archc import` writes
today for the file the text names, and each one checks."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import archc
from archc.importers.layout import spec_text

try:
    import caffe_zoo
    from test_caffe import FIXTURES, imported
except ImportError:  # pragma: no cover - run from the repository root
    from tests.importers import caffe_zoo
    from tests.importers.test_caffe import FIXTURES, imported

DOC = Path(__file__).parents[2] / "docs" / "importing.md"


def test_examples_are_the_importers_output(tmp_path):
    (tmp_path / "ResNet-50-deploy.prototxt").write_text(caffe_zoo.resnet50())
    shutil.copy(FIXTURES / "darknet_tiny.cfg", tmp_path / "tiny.cfg")
    sources = [FIXTURES / "googlenet_excerpt.prototxt", FIXTURES / "alexnet_v1.prototxt",
               tmp_path / "tiny.cfg", tmp_path / "ResNet-50-deploy.prototxt"]
    blocks = re.findall(r"```arch\n(.*?)\n```", DOC.read_text(), re.S)
    assert len(blocks) == len(sources)
    for block, source in zip(blocks, sources):
        spec, _, _ = imported(source)
        assert spec_text(spec).rstrip("\n") == block, source.name
        path = tmp_path / f"{source.stem}.arch"
        path.write_text(block + "\n")
        assert archc.check(path).ok
