"""Fuzz of damaged imports (issue 24, class 3): seeded mutations of real prototxt and cfg
files and of matching .caffemodel and .weights files never crash the importer, and what it
accepts passes `archc check` as written.

In-process through the importer API (the same functions `archc import` calls), so the
default suite runs ~150 mutants per format quickly; the full 1,000 per format is marked
`large`. A small sample goes through the real CLI under the suite's resource limits."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from archc.api import check
from archc.compiler.diagnostics import Diagnostics
from archc.importers import check_imported, import_source, layout
from archc.importers.weights import (
    WeightsError,
    convert,
    darknet_layout,
    write_caffemodel,
    write_darknet_weights,
)

from .conftest import REPO, run_archc
from .import_mutations import mutate_binary, mutate_text

FIXTURES = REPO / "tests" / "importers" / "fixtures"
TEXT_SOURCES = {
    "prototxt": [FIXTURES / "resnet_like.prototxt", FIXTURES / "alexnet_v1.prototxt",
                 FIXTURES / "googlenet_excerpt.prototxt"],
    "cfg": [FIXTURES / "darknet_tiny.cfg", FIXTURES / "yolov3_tiny_like.cfg"],
}
DEFAULT, FULL = 150, 1000

CAFFE_NET = """name: "small"
input: "data"
input_shape { dim: 1 dim: 3 dim: 8 dim: 8 }
layer { name: "c1" type: "Convolution" bottom: "data" top: "c1"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
layer { name: "bn1" type: "BatchNorm" bottom: "c1" top: "c1" }
layer { name: "sc1" type: "Scale" bottom: "c1" top: "c1" scale_param { bias_term: true } }
layer { name: "r1" type: "ReLU" bottom: "c1" top: "c1" }
layer { name: "fc" type: "InnerProduct" bottom: "c1" top: "fc"
  inner_product_param { num_output: 3 } }
"""
DARKNET_NET = """[net]
channels=3
height=8
width=8

[convolutional]
batch_normalize=1
filters=4
size=3
stride=1
pad=1
activation=leaky

[convolutional]
filters=2
size=1
activation=linear
"""


def import_in_process(path: Path) -> None:
    """Import `path` as `archc import` does; an accepted import must pass `archc check` as
    written. Any exception escapes and fails the test (the CLI would exit 101)."""
    diags = Diagnostics()
    spec = import_source(str(path), diags)
    if spec is None:
        assert diags.has_errors, "refused without saying why"
        return
    network = check_imported(spec, {}, diags)
    if network is None:
        assert diags.has_errors
        return
    text = layout.spec_text(spec)
    result = check(path.with_suffix(".arch"), text=text)
    assert result.ok, f"the import was accepted but its spec fails check:\n{text}\n" + "\n".join(
        d.message for d in result.diagnostics)
    assert result.network.n_params == network.n_params


def _mutants(kind: str, count: int):
    sources = [p.read_bytes() for p in TEXT_SOURCES[kind]]
    for seed in range(count):
        rng = random.Random(f"{kind}-{seed}")
        yield seed, mutate_text(rng.choice(sources), rng)


def _fuzz_text(tmp_path: Path, kind: str, count: int) -> None:
    path = tmp_path / f"net.{kind}"
    for seed, data in _mutants(kind, count):
        path.write_bytes(data)
        try:
            import_in_process(path)
        except Exception as exc:  # noqa: BLE001 - report the seed that broke it
            raise AssertionError(f"{kind} mutant seed {seed} crashed the importer: {exc!r}\n"
                                 f"{data[:2000]!r}") from exc


@pytest.mark.parametrize("kind", sorted(TEXT_SOURCES))
def test_damaged_sources_never_crash(tmp_path, kind):
    _fuzz_text(tmp_path, kind, DEFAULT)


@pytest.mark.large
@pytest.mark.parametrize("kind", sorted(TEXT_SOURCES))
def test_damaged_sources_never_crash_full(tmp_path, kind):
    _fuzz_text(tmp_path, kind, FULL)


# --------------------------------------------------------------------------- weights


def _network(path: Path):
    diags = Diagnostics()
    spec = import_source(str(path), diags)
    network = check_imported(spec, {}, diags)
    assert network is not None, diags.sorted()
    return network


def _caffe_model(tmp_path: Path) -> tuple[Path, bytes]:
    rng = np.random.default_rng(0)
    proto = tmp_path / "net.prototxt"
    proto.write_text(CAFFE_NET)
    blobs = {"c1": [rng.random((4, 3, 3, 3)), rng.random(4)],
             "bn1": [rng.random(4), rng.random(4) + 1, np.ones(1)],
             "sc1": [rng.random(4), rng.random(4)],
             "fc": [rng.random((3, 256)), rng.random(3)]}
    write_caffemodel(proto.with_suffix(".caffemodel"), blobs)
    return proto, proto.with_suffix(".caffemodel").read_bytes()


def _darknet_model(tmp_path: Path) -> tuple[Path, bytes]:
    cfg = tmp_path / "net.cfg"
    cfg.write_text(DARKNET_NET)
    rng = np.random.default_rng(0)
    arrays = [rng.random(shape) for _, shape in darknet_layout(str(cfg), _network(cfg))]
    write_darknet_weights(cfg.with_suffix(".weights"), arrays)
    return cfg, cfg.with_suffix(".weights").read_bytes()


WEIGHTS = {"caffemodel": _caffe_model, "weights": _darknet_model}


def _fuzz_weights(tmp_path: Path, kind: str, count: int) -> None:
    source, good = WEIGHTS[kind](tmp_path)
    network = _network(source)
    target = tmp_path / "out.safetensors"
    convert(str(source), network, target)  # the undamaged file converts
    refused = 0
    for seed in range(count):
        rng = random.Random(f"{kind}-{seed}")
        data = mutate_binary(good, rng)
        source.with_suffix("." + kind).write_bytes(data)
        try:
            convert(str(source), network, target)
        except WeightsError:
            refused += 1
        except Exception as exc:  # noqa: BLE001 - report the seed that broke it
            raise AssertionError(f"{kind} mutant seed {seed} crashed the conversion: {exc!r}\n"
                                 f"{data[:200]!r}") from exc
    assert refused > count // 4  # the damage is mostly noticed, not converted as it is


@pytest.mark.parametrize("kind", sorted(WEIGHTS))
def test_damaged_weights_never_crash(tmp_path, kind):
    _fuzz_weights(tmp_path, kind, DEFAULT)


@pytest.mark.large
@pytest.mark.parametrize("kind", sorted(WEIGHTS))
def test_damaged_weights_never_crash_full(tmp_path, kind):
    _fuzz_weights(tmp_path, kind, FULL)


# --------------------------------------------------------------------------- the real CLI


@pytest.mark.parametrize("kind", ["prototxt", "cfg", "caffemodel", "weights"])
def test_a_sample_through_the_cli(tmp_path, kind):
    """Eight mutants per format through `archc import -o --weights`: exit 0, 1 or 2, never
    101, never a traceback."""
    if kind in WEIGHTS:
        source, good = WEIGHTS[kind](tmp_path)
    for seed in range(8):
        rng = random.Random(f"cli-{kind}-{seed}")
        if kind in WEIGHTS:
            source.with_suffix("." + kind).write_bytes(mutate_binary(good, rng))
            proc = run_archc("import", source, "-o", tmp_path / "out.arch", "--weights",
                             cpu_s=30, mem_mb=1200)
        else:
            (_, data), = [m for m in _mutants(kind, seed + 1)][-1:]
            source = tmp_path / f"net{seed}.{kind}"
            source.write_bytes(data)
            proc = run_archc("import", source, cpu_s=30, mem_mb=1200)
        assert proc.returncode in (0, 1, 2), proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
