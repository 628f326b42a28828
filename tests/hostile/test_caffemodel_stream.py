"""The streaming caffemodel reader (issue 24, class 3: "weights are read streaming, with sizes
checked against the spec first").

- Generated caffemodels, serialised by the protobuf library (packed and unpacked, new and V1
  layers, `shape` or legacy dims, float or double data, duplicate names, unknown fields), read
  back by archc's wire reader give exactly the tensors protobuf's own parser gives.
- Mutated files are a `WeightsError` or the same tensors as protobuf's parser, never another
  exception (which the CLI would show as exit 101).
- Through the real CLI under RLIMIT_AS: a layer the network does not use is skipped without
  being read, and a blob that declares the wrong size is refused before its values are read.

300 generated and 300 mutated files by default; 3,000 of each with `pytest -m large`.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from google.protobuf.message import DecodeError

from archc.importers.weights import (
    WeightsError,
    caffe_net_class,
    read_caffemodel,
    write_caffemodel,
)

from .conftest import assert_one_line_error, run_archc
from .import_mutations import mutate_binary

DEFAULT, FULL = 300, 3000
NAMES = ["conv1", "bn1", "fc", "scale", "données", ""]


PACKED, UNPACKED = caffe_net_class(True), caffe_net_class(False)


# --------------------------------------------------------------------------- the oracle


def oracle(data: bytes) -> dict[str, list[np.ndarray]]:
    """What protobuf's own parser makes of `data`: layer name → blobs, as Caffe reads them
    (`data`, else `double_data`; `shape`'s dims, else num/channels/height/width; flat when
    the dims do not describe the values). Raises DecodeError for what it cannot parse."""
    net = PACKED()
    net.ParseFromString(data)
    return {layer.name: [_oracle_blob(b) for b in layer.blobs]
            for layer in [*net.layers, *net.layer]}


def _oracle_blob(blob) -> np.ndarray:
    values = np.asarray(blob.data or blob.double_data, dtype=np.float32)
    dims = list(blob.shape.dim) or [blob.num, blob.channels, blob.height, blob.width]
    if int(np.prod(np.array(dims, dtype=object))) == values.size and min(dims, default=1) >= 0:
        return values.reshape(dims)
    return values


def assert_same(got: dict, want: dict) -> None:
    assert list(sorted(got)) == list(sorted(want))
    for name in want:
        assert len(got[name]) == len(want[name]), name
        for a, b in zip(got[name], want[name]):
            assert a.dtype == b.dtype == np.float32 and a.shape == b.shape, (name, a, b)
            assert np.array_equal(a, b, equal_nan=True), name


# --------------------------------------------------------------------------- generated files


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _unknown_field(rng: random.Random) -> bytes:
    """A field the reader must skip: one caffe.proto has but archc does not read (a layer's
    bottom, a net's input dims, ...), in each wire type that such fields use."""
    number = rng.choice([3, 9, 50, 101, 1000])
    wire = rng.choice([0, 1, 2, 5])
    payload = {0: _varint(rng.randrange(1 << 40)), 1: rng.randbytes(8), 5: rng.randbytes(4),
               2: b""}[wire]
    if wire == 2:
        text = rng.randbytes(rng.randrange(0, 40))
        payload = _varint(len(text)) + text
    return _key(number, wire) + payload


def generated(rng: random.Random) -> bytes:
    """A random, valid caffemodel serialised by protobuf, with unknown fields spliced in
    between whole top-level records (protobuf keeps any field order)."""
    net = rng.choice([PACKED, UNPACKED])(name="net")
    for _ in range(rng.randrange(0, 6)):
        layer = (net.layers if rng.random() < 0.3 else net.layer).add(name=rng.choice(NAMES))
        if rng.random() < 0.3 and layer.DESCRIPTOR.fields_by_name.get("type"):
            layer.type = "Convolution"
        for _ in range(rng.randrange(0, 4)):
            _fill_blob(layer.blobs.add(), rng)
    records = [_key(1, 2) + _varint(3) + b"net"]
    for layer in net.layers:
        body = layer.SerializeToString()
        records.append(_key(2, 2) + _varint(len(body)) + body)
    for layer in net.layer:
        body = layer.SerializeToString()
        records.append(_key(100, 2) + _varint(len(body)) + body)
    rng.shuffle(records)  # V1 and new records interleaved: the order must not matter
    for _ in range(rng.randrange(0, 4)):
        records.insert(rng.randrange(len(records) + 1), _unknown_field(rng))
    return b"".join(records)


def _fill_blob(blob, rng: random.Random) -> None:
    dims = [rng.randrange(0, 4) for _ in range(rng.randrange(0, 5))]
    count = int(np.prod(dims)) if rng.random() < 0.8 else rng.randrange(0, 7)
    values = (np.random.default_rng(rng.randrange(1 << 30)).standard_normal(count) * 10)
    if rng.random() < 0.8:
        blob.data.extend(values.astype(np.float32).tolist())
    else:
        blob.double_data.extend(values.tolist())
    if rng.random() < 0.7:
        blob.shape.dim.extend(dims)
    else:
        for name, value in zip(("num", "channels", "height", "width"), dims):
            setattr(blob, name, value)


def _cases(count: int):
    for seed in range(count):
        rng = random.Random(f"caffemodel-{seed}")
        yield seed, rng, generated(rng)


def _check_generated(tmp_path: Path, count: int) -> None:
    path = tmp_path / "m.caffemodel"
    for seed, _, data in _cases(count):
        path.write_bytes(data)
        try:
            assert_same(read_caffemodel(path), oracle(data))
        except AssertionError as exc:
            raise AssertionError(f"generated caffemodel seed {seed}: {exc}") from exc


def test_generated_caffemodels_read_as_protobuf_reads_them(tmp_path):
    _check_generated(tmp_path, DEFAULT)


@pytest.mark.large
def test_generated_caffemodels_read_as_protobuf_reads_them_full(tmp_path):
    _check_generated(tmp_path, FULL)


def test_only_the_wanted_blobs_are_read_and_their_sizes_checked(tmp_path):
    path = tmp_path / "m.caffemodel"
    weight, bias = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2), np.ones(2, np.float32)
    write_caffemodel(path, {"skip": [np.zeros(5)], "conv": [weight, bias, np.zeros(3)]})
    read = read_caffemodel(path, expected={"conv": {0: {24}, 1: {2}}})
    assert list(read) == ["conv"]
    assert np.array_equal(read["conv"][0], weight) and np.array_equal(read["conv"][1], bias)
    assert read["conv"][2] is None  # not wanted: not read
    with pytest.raises(WeightsError, match="blob 1 of the caffemodel holds 2 values where the "
                       "network needs 3"):
        read_caffemodel(path, expected={"conv": {0: {24}, 1: {3}}})


# --------------------------------------------------------------------------- damaged files


def _check_mutated(tmp_path: Path, count: int) -> None:
    path = tmp_path / "m.caffemodel"
    refused = 0
    for seed, rng, data in _cases(count):
        damaged = mutate_binary(data, rng)
        path.write_bytes(damaged)
        try:
            got = read_caffemodel(path)
        except WeightsError as exc:
            assert "\n" not in str(exc), (seed, str(exc))
            refused += 1
            continue
        except Exception as exc:  # noqa: BLE001 - report the seed that broke it
            raise AssertionError(f"mutant {seed} crashed the reader: {exc!r}") from exc
        try:
            want = oracle(damaged)
        except DecodeError:
            continue  # accepted here, refused by protobuf
        if any(isinstance(name, bytes) for name in want):
            continue  # a name that is not UTF-8: protobuf gives bytes, archc replaces the bytes
        try:
            assert_same(got, want)
        except AssertionError as exc:
            raise AssertionError(f"mutant {seed} read differently from protobuf: {exc}") from exc
    assert refused > count // 10  # the damage is mostly noticed


def test_damaged_caffemodels_are_refused_or_read_as_protobuf_reads_them(tmp_path):
    _check_mutated(tmp_path, DEFAULT)


@pytest.mark.large
def test_damaged_caffemodels_are_refused_or_read_as_protobuf_reads_them_full(tmp_path):
    _check_mutated(tmp_path, FULL)


@pytest.mark.parametrize("damage, words", [
    (b"\x0a\xff\xff\xff\xff\x0f", "past the end"),  # a length far beyond the file
    (b"\xa2\x06\x05", "past the end"),  # a layer record longer than the file
    (b"\x08" + b"\xff" * 12, "longer than any varint"),  # an overlong varint
    (b"\x08\xff", "cut off"),  # a varint the file ends inside
    (b"\xa0\x06\x01", "wire type 0"),  # a layer record as a number
    (b"\x0b", "wire type 3"),  # a group: no caffemodel field is one
])
def test_damage_is_one_line_naming_what(tmp_path, damage, words):
    path = tmp_path / "m.caffemodel"
    write_caffemodel(path, {"conv": [np.ones(4)]})
    path.write_bytes(path.read_bytes() + damage)
    with pytest.raises(WeightsError, match=words) as caught:
        read_caffemodel(path)
    assert "\n" not in str(caught.value)


# --------------------------------------------------------------------------- the real CLI


HEAD = ('name: "n"\ninput: "data"\ninput_shape { dim: 1 dim: 3 dim: 8 dim: 8 }\n'
        'layer { name: "c" type: "Convolution" bottom: "data" top: "c"\n'
        '  convolution_param { num_output: 4 kernel_size: 3 } }\n')
#: `archc import --weights` of a small net maps about 130 MB (one OpenBLAS thread); parsing
#: a 60 MB caffemodel whole, as protobuf does, needs about 300
MEM_MB = 220
LEAN = {"OPENBLAS_NUM_THREADS": "1"}  # OpenBLAS maps a buffer per thread: as many as cores
BIG = 15_000_000  # values: 60 MB as floats, within the file-size bound for the net


def _model(tmp_path: Path, blobs: dict) -> Path:
    proto = tmp_path / "n.prototxt"
    proto.write_text(HEAD)
    write_caffemodel(proto.with_suffix(".caffemodel"), blobs)
    return proto


def test_a_layer_the_network_does_not_use_is_skipped_unread(tmp_path):
    """60 MB of an unused layer's weights: seeked past, so the import fits in an address
    space that parsing the whole file, as protobuf does, overflows."""
    proto = _model(tmp_path, {"unused": [np.zeros(BIG, np.float32)],
                              "c": [np.ones((4, 3, 3, 3)), np.arange(4)]})
    proc = run_archc("import", proto, "-o", tmp_path / "n.arch", "--weights", mem_mb=MEM_MB,
                     cpu_s=30, env=LEAN)
    assert proc.returncode == 0, proc.stderr
    assert "2 tensors" in proc.stdout


def test_a_blob_of_the_wrong_size_is_refused_before_it_is_read(tmp_path):
    proto = _model(tmp_path, {"c": [np.zeros(BIG, np.float32), np.arange(4)]})
    proc = run_archc("import", proto, "-o", tmp_path / "n.arch", "--weights", mem_mb=MEM_MB,
                     cpu_s=30, env=LEAN)
    line = assert_one_line_error(proc, 2)
    assert "blob 0 of the caffemodel holds 15,000,000 values where the network needs 108" in line
    assert not (tmp_path / "n.arch").exists()
