"""Bad input to `archc import`: each problem one located diagnostic (file:line:col, the
source line, a caret, a hint), rendered like a spec error; never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from archc.compiler.diagnostics import Diagnostics
from archc.compiler.render import render_all
from archc.importers import import_source

CAFFE_HEAD = 'input: "data"\ninput_shape { dim: 1 dim: 3 dim: 32 dim: 32 }\n'
NET_HEAD = "[net]\nchannels=3\nheight=32\nwidth=32\n\n"
CONV = "[convolutional]\nfilters=8\nsize=3\npad=1\nactivation=leaky\n\n"

CASES = {
    "malformed prototxt": (
        "net.prototxt", CAFFE_HEAD + 'layer {\n  name: "a"\n  type: "ReLU"\n  bottom "data"\n}\n',
        "E001", 6, 10, "`name: value`"),
    "unclosed message": (
        "net.prototxt", CAFFE_HEAD + 'layer {\n  name: "a"\n  type: "ReLU"\n',
        "E001", 3, 7, "close the message"),
    "unknown Caffe type": (
        "net.prototxt", CAFFE_HEAD + 'layer { name: "r" type: "ReLu" bottom: "data" top: "r" }\n',
        "E101", 3, 25, "did you mean `ReLU`"),
    "bottom naming no top": (
        "net.prototxt", CAFFE_HEAD + 'layer { name: "r" type: "ReLU" bottom: "dat" top: "r" }\n',
        "E101", 3, 40, "did you mean `data`?"),
    "a value of the wrong type": (
        "net.prototxt", CAFFE_HEAD + 'layer { name: "c" type: "Convolution" bottom: "data"\n'
        '  top: "c" convolution_param { num_output: "eight" kernel_size: 3 } }\n',
        "E204", 4, 44, "caffe.proto"),
    "malformed cfg": (
        "net.cfg", NET_HEAD + "[convolutional\nfilters=8\n", "E001", 6, 1, "in brackets"),
    "unknown Darknet type": (
        "net.cfg", NET_HEAD + "[convolutinal]\nfilters=8\n", "E101", 6, 1,
        "did you mean `convolutional`?"),
    "route to a missing layer": (
        "net.cfg", NET_HEAD + CONV + "[route]\nlayers=-1, 7\n", "E204", 13, 8,
        "layers are numbered from 0"),
    "shortcut to a missing layer": (
        "net.cfg", NET_HEAD + CONV + "[shortcut]\nfrom=-4\n", "E204", 13, 6,
        "layers are numbered from 0"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_located_error_with_hint(tmp_path, case):
    name, text, code, line, column, hint = CASES[case]
    path = tmp_path / name
    path.write_text(text)
    diags = Diagnostics()
    assert import_source(str(path), diags) is None
    (error,) = diags.errors
    assert (error.code, error.span.line, error.span.column) == (code, line, column)
    assert hint in error.hint
    rendered = render_all(diags.sorted(), {str(path): text}, color=False)
    source_line = text.splitlines()[line - 1]
    assert f"{path}:{line}:{column}" in rendered and source_line in rendered and "^" in rendered


def test_cli_reports_without_traceback(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_text(CASES["bottom naming no top"][1])
    done = subprocess.run([sys.executable, "-m", "archc", "import", str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 1
    expected = "error[E101]: bottom `dat` is not the top of any earlier layer"
    assert expected in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_unreadable_file_is_one_error(tmp_path):
    path = tmp_path / "net.prototxt"
    path.write_bytes(b"\xff\xfe\x00garbage")
    diags = Diagnostics()
    assert import_source(str(path), diags) is None
    assert [d.code for d in diags.errors] == ["E002"]


def test_unsupported_options_are_located(tmp_path):
    """A weighted Eltwise and LRN within channels: no archc form, said where they are written."""
    path = tmp_path / "net.prototxt"
    path.write_text(CAFFE_HEAD + (
        'layer { name: "a" type: "ReLU" bottom: "data" top: "a" }\n'
        'layer { name: "m" type: "Eltwise" bottom: "a" bottom: "data" top: "m"\n'
        '  eltwise_param { operation: SUM coeff: 1 coeff: -1 } }\n'
        'layer { name: "n" type: "LRN" bottom: "m" top: "n"\n'
        '  lrn_param { norm_region: WITHIN_CHANNEL } }\n'))
    diags = Diagnostics()
    assert import_source(str(path), diags) is None
    assert [(d.code, d.span.line) for d in diags.errors] == [("E204", 5), ("E204", 7)]


def test_file_imports_never_load_torch(tmp_path):
    """`archc import` of a prototxt or cfg, weights included, runs without torch."""
    import numpy as np

    from archc.importers.weights import write_caffemodel

    proto = tmp_path / "net.prototxt"
    proto.write_text(CAFFE_HEAD + 'layer { name: "c" type: "Convolution" bottom: "data" '
                     'top: "c"\n  convolution_param { num_output: 2 kernel_size: 3 } }\n')
    write_caffemodel(proto.with_suffix(".caffemodel"),
                     {"c": [np.ones((2, 3, 3, 3), np.float32), np.zeros(2, np.float32)]})
    (tmp_path / "net.cfg").write_text(NET_HEAD + CONV)
    script = (
        "import sys\nfrom archc.cli.main import main\n"
        f"for args in (['import', {str(proto)!r}, '-o', {str(tmp_path / 'a.arch')!r}, "
        f"'--weights'], ['import', {str(tmp_path / 'net.cfg')!r}]):\n"
        "    try:\n        main(args)\n    except SystemExit as exit:\n"
        "        assert not exit.code, exit.code\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "a.safetensors").exists()


def _conv(name: str, bottom: str, out: int = 4) -> str:
    return (f'layer {{ name: "{name}" type: "Convolution" bottom: "{bottom}" top: "{name}"\n'
            f'  convolution_param {{ num_output: {out} kernel_size: 1 }} }}\n')


def test_dense_concats_nest(tmp_path):
    """DenseNet's pattern, each concat of the input and what grew from it, nests."""
    path = tmp_path / "dense.prototxt"
    text = CAFFE_HEAD + _conv("g1", "data")
    text += 'layer { name: "c1" type: "Concat" bottom: "data" bottom: "g1" top: "c1" }\n'
    text += _conv("g2", "c1")
    text += 'layer { name: "c2" type: "Concat" bottom: "c1" bottom: "g2" top: "c2" }\n'
    path.write_text(text)
    diags = Diagnostics()
    spec = import_source(str(path), diags)
    assert spec is not None and not diags.items
    from archc.importers import check_imported

    assert check_imported(spec, {}, diags).output_shape == (11, 32, 32)


def test_a_graph_that_does_not_nest_is_one_located_error(tmp_path):
    """b feeds a concat and, past it, an add: no nesting of merges writes that."""
    path = tmp_path / "tangle.prototxt"
    text = CAFFE_HEAD + _conv("a", "data") + _conv("b", "a")
    text += 'layer { name: "c" type: "Concat" bottom: "a" bottom: "b" top: "c" }\n'
    text += _conv("d", "c")
    text += 'layer { name: "e" type: "Eltwise" bottom: "b" bottom: "d" top: "e" }\n'
    path.write_text(text)
    diags = Diagnostics()
    assert import_source(str(path), diags) is None
    (error,) = diags.errors
    assert error.code == "E204" and "feeds two places" in error.message
    assert error.span.line == 5  # the layer `b`


def test_damaged_files_never_crash(tmp_path):
    """Fixtures with characters deleted, inserted, swapped or replaced by other values:
    each import ends in a network or in diagnostics, never in an exception."""
    import random
    from pathlib import Path

    from archc.importers import check_imported
    from archc.importers.layout import spec_text

    fixtures = Path(__file__).parent / "fixtures"
    sources = {".prototxt": (fixtures / "resnet_like.prototxt").read_text(),
               ".cfg": (fixtures / "darknet_tiny.cfg").read_text()}
    rng = random.Random(0)
    for n in range(300):
        suffix = rng.choice(sorted(sources))
        text = list(sources[suffix])
        for _ in range(rng.randint(1, 4)):
            pos, roll = rng.randrange(len(text)), rng.random()
            if roll < 0.3:
                del text[pos:pos + rng.randint(1, 8)]
            elif roll < 0.5:
                text[pos:pos + 1] = rng.choice(["{", "}", ": 3 ", " x ", ': "a" ', " true",
                                                " MAX", " -1", "=", "[", "]"])
            elif roll < 0.8:
                text.insert(pos, rng.choice('{}[]:"#=-0123456789 \nabc,;<>'))
            else:
                other = rng.randrange(len(text))
                text[pos], text[other] = text[other], text[pos]
        path = tmp_path / f"case{n}{suffix}"
        path.write_text("".join(text))
        diags = Diagnostics()
        spec = import_source(str(path), diags)
        if spec is None:
            assert diags.has_errors, path.read_text()
            continue
        check_imported(spec, {}, diags)
        spec_text(spec)
