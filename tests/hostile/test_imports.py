"""Damaged imports on the real CLI (issue 24, class 3): each is one located error, exit 1,
never an internal error (exit 101), never a spec written at face value, and nothing on disk
changed when it fails."""

from __future__ import annotations

import numpy as np
import pytest

from archc.importers.weights import write_caffemodel, write_darknet_weights

from .conftest import assert_one_line_error, assert_spec_error, run_archc, tree_state

HEAD = 'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 32 dim: 32 }\n'
NET = "[net]\nchannels=3\nheight=32\nwidth=32\n\n"


def conv(params: str, name: str = "c") -> str:
    """A Caffe convolution on `data` with the given convolution_param body."""
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "data" top: "{name}"\n'
            f"  convolution_param {{ {params} }} }}\n")


CASES = {  # name: (file, text, code, line:col of the error, words of the message)
    "caffe stride 0": ("n.prototxt", HEAD + conv("num_output: 8 kernel_size: 3 stride: 0"),
                       "E204", "n.prototxt:4:", "`stride` must be positive"),
    "caffe negative pad": ("n.prototxt", HEAD + conv("num_output: 8 kernel_size: 3 pad: -2"),
                           "E204", "n.prototxt:4:", "`pad` must be at least 0"),
    "caffe kernel 0": ("n.prototxt", HEAD + conv("num_output: 8 kernel_size: 0"),
                       "E204", "n.prototxt:4:", "`kernel_size` must be positive"),
    "caffe huge num_output": (
        "n.prototxt", HEAD + conv("num_output: 1000000000000 kernel_size: 3"), "E205",
        "n.prototxt:3:", "28,000,000,000,000 parameters"),
    "caffe duplicate field": (
        "n.prototxt", HEAD + conv("num_output: 8 num_output: 64 kernel_size: 3"), "E204",
        "n.prototxt:4:", "`num_output` is given twice"),
    "caffe pool pad as big as the window": (
        "n.prototxt", HEAD + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p"\n'
        "  pooling_param { pool: MAX kernel_size: 2 stride: 2 pad: 2 } }\n", "E204",
        "n.prototxt:4:", "pads by as much as its window"),
    "nul in a string": ("n.prototxt", HEAD + 'layer { name: "c\0" type: "ReLU" '
                        'bottom: "data" top: "c" }\n', "E002", "n.prototxt:3:17", "NUL byte"),
    "bad escape": ("n.prototxt", HEAD + 'layer { name: "c\\q" type: "ReLU" bottom: "data" '
                   'top: "c" }\n', "E001", "n.prototxt:3:15", "unknown escape `\\q`"),
    "escaped bytes not utf-8": ("n.prototxt", HEAD + 'layer { name: "c\\377" type: "ReLU" '
                                'bottom: "data" top: "c" }\n', "E001", "n.prototxt:3:15",
                                "not UTF-8"),
    "2,000 nested braces": ("n.prototxt", "a {" * 2000 + "}" * 2000, "E205", "n.prototxt:1:",
                            "nested deeper than the limit of 100"),
    "2,000 nested lists": ("n.prototxt", "a: " + "[" * 2000 + "]" * 2000, "E205",
                           "n.prototxt:1:", "nested deeper"),
    "negative word": ("n.prototxt", HEAD + conv("num_output: -foo kernel_size: 3"), "E001",
                      "n.prototxt:4:", "`-foo` is not a number"),
    "darknet stride 0": ("n.cfg", NET + "[convolutional]\nfilters=8\nsize=3\nstride=0\n",
                         "E204", "n.cfg:9:8", "`stride` must be positive"),
    "darknet negative padding": (
        "n.cfg", NET + "[convolutional]\nfilters=8\nsize=3\npadding=-1\n", "E204", "n.cfg:9:9",
        "`padding` must be at least 0"),
    "darknet huge filters": ("n.cfg", NET + "[convolutional]\nfilters=1000000000000\nsize=3\n",
                             "E204", "n.cfg:7:9", "out of range"),
    "darknet filters over the param limit": (
        "n.cfg", NET + "[convolutional]\nfilters=2000000000\nsize=3\n", "E205", "n.cfg:6:",
        "parameters"),
    "darknet size 0 maxpool": ("n.cfg", NET + "[maxpool]\nsize=0\n", "E204", "n.cfg:7:6",
                               "`size` must be positive"),
    "darknet zero width": ("n.cfg", "[net]\nchannels=3\nheight=32\nwidth=0\n", "E204",
                           "n.cfg:4:7", "`width` must be positive"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_source_is_one_located_error(tmp_path, case):
    name, text, code, where, words = CASES[case]
    (tmp_path / name).write_bytes(text.encode("utf-8"))
    before = tree_state(tmp_path)
    proc = run_archc("import", name, "-o", "out.arch", cwd=tmp_path, cpu_s=30)
    line = assert_spec_error(proc, code, where)
    assert words in line
    assert tree_state(tmp_path) == before  # no out.arch


@pytest.mark.parametrize("name, data, words", [
    ("u16.prototxt", ("\ufeff" + HEAD).encode("utf-16-le"), "UTF-16"),
    ("bin.prototxt", bytes(range(256)) * 8, "not UTF-8"),
    ("bin.cfg", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "not UTF-8"),
    ("u16.cfg", NET.encode("utf-16"), "UTF-16"),
])
def test_binary_and_utf16_files(tmp_path, name, data, words):
    (tmp_path / name).write_bytes(data)
    proc = run_archc("import", name, cwd=tmp_path)
    assert_one_line_error(proc, 1)
    assert words in proc.stderr


def test_a_50_mb_prototxt_is_refused_before_parsing(tmp_path):
    (tmp_path / "big.prototxt").write_text(HEAD + 'layer { name: "a" type: "ReLU" }\n' * 1_500_000)
    proc = run_archc("import", "big.prototxt", cwd=tmp_path, cpu_s=10, mem_mb=700)
    line = assert_one_line_error(proc, 1)
    assert "over the limit" in line and "file_bytes" in proc.stderr


def test_darknet_takes_the_first_of_a_duplicate_key(tmp_path):
    (tmp_path / "n.cfg").write_text(NET + "[convolutional]\nfilters=8\nfilters=64\nsize=3\n"
                                    "activation=linear\n")
    proc = run_archc("import", "n.cfg", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "conv3-8" in proc.stdout and "64" not in proc.stdout
    assert "darknet uses the first" in proc.stderr


def _weights_case(tmp_path, kind: str):
    """A small network and its weights file, damaged as `kind` says."""
    if kind.startswith("caffe"):
        proto = tmp_path / "n.prototxt"
        proto.write_text(HEAD + conv("num_output: 4 kernel_size: 3"))
        blobs = {"c": [np.ones((4, 3, 3, 3))]} if kind == "caffe missing bias" else {
            "c": [np.ones((4, 3, 3, 3)), np.ones(4)]}
        write_caffemodel(proto.with_suffix(".caffemodel"), blobs)
        if kind == "caffe absurd dims":  # a blob that claims 2^60 values: a damaged header
            data = proto.with_suffix(".caffemodel").read_bytes()
            proto.with_suffix(".caffemodel").write_bytes(data + b"\xff" * 64)
        if kind == "caffe too large":
            with open(proto.with_suffix(".caffemodel"), "ab") as handle:
                handle.truncate(200 * 1024 * 1024)
        return proto
    cfg = tmp_path / "n.cfg"
    cfg.write_text(NET + "[convolutional]\nfilters=4\nsize=3\nactivation=linear\n")
    arrays = [np.ones(4), np.ones((4, 3, 3, 3))]
    write_darknet_weights(cfg.with_suffix(".weights"), arrays[:1] if kind == "darknet short"
                          else arrays)
    if kind == "darknet huge":  # 3 GB of weights for 112 parameters, sparse on disk
        with open(cfg.with_suffix(".weights"), "ab") as handle:
            handle.truncate(3 * 1024 ** 3)
    return cfg


@pytest.mark.parametrize("kind, words", [
    ("caffe missing bias", "1 blobs in the caffemodel"),
    ("caffe absurd dims", "not a readable caffemodel"),
    ("caffe too large", "more than the network's parameters could fill"),
    ("darknet short", "ends early"),
    ("darknet huge", "bytes more than the cfg's layers use"),
])
def test_damaged_weights_leave_the_existing_spec(tmp_path, kind, words):
    """A failed --weights is one line, and the user's existing OUTPUT is untouched: the spec
    is written only after the weights converted."""
    source = _weights_case(tmp_path, kind)
    out = tmp_path / "out.arch"
    out.write_text("# the user's own spec, not to be lost\n")
    before = tree_state(tmp_path)
    proc = run_archc("import", source.name, "-o", "out.arch", "--weights", "--force",
                     cwd=tmp_path, cpu_s=20, mem_mb=900)
    assert words in assert_one_line_error(proc, 2)
    assert tree_state(tmp_path) == before


def test_an_import_with_errors_writes_nothing(tmp_path):
    (tmp_path / "n.prototxt").write_text(HEAD + conv("num_output: 8 kernel_size: 3 pad: -1"))
    out = tmp_path / "out.arch"
    out.write_text("# keep me\n")
    proc = run_archc("import", "n.prototxt", "-o", "out.arch", "--force", cwd=tmp_path)
    assert_one_line_error(proc, 1)
    assert out.read_text() == "# keep me\n"
