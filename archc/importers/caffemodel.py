"""A streaming reader of Caffe's `.caffemodel`: the protobuf wire format of `NetParameter`,
read one layer record at a time, never the whole file.

Only the fields that hold weights are understood (field numbers as caffe.proto defines
them); every other field is skipped by its wire type, a length-delimited one by seeking past
it:

    NetParameter      layers = 2 (V1LayerParameter), layer = 100 (LayerParameter)
    LayerParameter    name = 1, blobs = 7 (BlobProto)
    V1LayerParameter  name = 4, blobs = 6 (BlobProto)
    BlobProto         num, channels, height, width = 1-4 (int32), data = 5 (float),
                      shape = 7 (BlobShape), double_data = 8 (double)
    BlobShape         dim = 1 (int64)

Reading happens in two steps. `index` walks the layer records and notes, for the layers the
caller asks for, where each blob lies (nothing of a blob is read). `read_blob` then walks one
blob's fields, counts the values its data fields declare, lets the caller check that count
against what the network needs, and only then reads the values into an array of exactly that
size. A layer the network does not use costs a few seeks. A damaged file (a truncated or
overlong varint, a length past the end of its record, a known field with the wrong wire type,
an absurd count) is a `CaffemodelError`, one line, before any large allocation.

Protobuf's own rules are followed where a file can differ from what Caffe writes: fields in
any order, repeated numeric fields packed or not (and packed runs concatenated), a repeated
message field merged (the dims of two `shape` fields concatenated), the last of a repeated
scalar winning, a layer named twice keeping the later record, and `layer` (100) taking
precedence over the legacy `layers` (2), as `NetParameter`'s parsers give them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5
#: NetParameter field number → (the layer message's name field, its blobs field)
LAYER_FIELDS = {100: (1, 7), 2: (4, 6)}
#: more blobs than this in one layer is a damaged file (Caffe's layers have at most 5)
MOST_BLOBS = 1024
#: more dims than this in one blob's shape is a damaged file (Caffe's blobs have at most 4)
MOST_DIMS = 32
#: a layer name longer than this is a damaged file
MOST_NAME_BYTES = 64 * 1024


class CaffemodelError(ValueError):
    """A damaged or foreign caffemodel; `str()` is one line saying what and where."""


@dataclass
class LayerRecord:
    """Where one layer's blobs lie in the file: (offset, length) of each BlobProto."""

    name: str
    blobs: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class BlobHeader:
    """What a BlobProto declares before its values are read: its dims (`shape`, else the
    legacy num/channels/height/width) and how many float and double values it holds."""

    dims: list[int]
    floats: int = 0
    doubles: int = 0

    @property
    def count(self) -> int:
        """The values the blob holds: its floats, or its doubles when it has no floats (as
        Caffe reads `data`, falling back to `double_data`)."""
        return self.floats or self.doubles


class WireReader:
    """Reads protobuf wire fields from a seekable binary file, within a byte range."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.size = os.fstat(handle.fileno()).st_size

    def fields(self, start: int, end: int):
        """(field number, wire type, payload offset, payload length) of every field in
        [start, end); a varint or fixed field's payload is its encoded bytes. The payload is
        not read: the caller reads it or leaves it (the walk seeks past it)."""
        position = start
        while position < end:
            self.handle.seek(position)
            key, position = self._varint(position, end, "a field's key")
            number, wire = key >> 3, key & 7
            if number == 0:
                raise CaffemodelError(f"field number 0 at byte {position:,}")
            if wire == VARINT:
                _, after = self._varint(position, end, f"field {number}'s value")
                length = after - position
            elif wire == FIXED64:
                length = 8
            elif wire == FIXED32:
                length = 4
            elif wire == LENGTH:
                length, position = self._varint(position, end, f"field {number}'s length")
            else:
                raise CaffemodelError(f"field {number} at byte {position:,} has wire type "
                                      f"{wire}, which no caffemodel field uses")
            if length > end - position:
                raise CaffemodelError(f"field {number} at byte {position:,} claims {length:,} "
                                      f"bytes, past the end of its record at byte {end:,}")
            yield number, wire, position, length
            position += length

    def _varint(self, position: int, end: int, what: str) -> tuple[int, int]:
        """The varint at `position` (the handle is there) and the position after it."""
        value = 0
        for shift in range(0, 70, 7):
            if position >= end:
                raise CaffemodelError(f"{what} at byte {position:,} is cut off")
            byte = self.handle.read(1)
            if not byte:
                raise CaffemodelError(f"{what} at byte {position:,} is cut off by the end "
                                      "of the file")
            position += 1
            value |= (byte[0] & 0x7F) << shift
            if byte[0] < 0x80:
                if value >= 1 << 64:
                    raise CaffemodelError(f"{what} before byte {position:,} overflows 64 bits")
                return value, position
        raise CaffemodelError(f"{what} before byte {position:,} is longer than any varint")

    def varint_at(self, position: int, end: int) -> int:
        """The varint at `position` (a VARINT field's payload)."""
        self.handle.seek(position)
        return self._varint(position, end, "a value")[0]

    def varints(self, start: int, end: int):
        """The varints packed in [start, end)."""
        self.handle.seek(start)
        position = start
        while position < end:
            value, position = self._varint(position, end, "a packed value")
            yield value

    def read(self, position: int, length: int) -> bytes:
        """`length` bytes at `position` (already checked to lie within the file)."""
        self.handle.seek(position)
        data = self.handle.read(length)
        if len(data) != length:  # the file shrank while being read
            raise CaffemodelError(f"the file ends inside the {length:,} bytes at {position:,}")
        return data


def signed(value: int, bits: int) -> int:
    """A varint's value as protobuf's intN reads it (two's complement of the low bits)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _expect_wire(number: int, wire: int, allowed: tuple[int, ...], what: str,
                 position: int) -> None:
    if wire not in allowed:
        raise CaffemodelError(f"{what} (field {number}) at byte {position:,} has wire type "
                              f"{wire} where a caffemodel has {' or '.join(map(str, allowed))}")


def index(reader: WireReader, wanted: Callable[[str], bool] | None = None
          ) -> dict[str, LayerRecord]:
    """Layer name → where its blobs lie, for every layer record whose name `wanted` accepts
    (all when None). The later of two records of one name wins, and `layer` records win over
    legacy `layers` ones. Blob contents are not read."""
    found: dict[tuple[int, str], LayerRecord] = {}
    for number, wire, position, length in reader.fields(0, reader.size):
        if number not in LAYER_FIELDS:
            continue
        _expect_wire(number, wire, (LENGTH,), "a layer", position)
        record = _layer_record(reader, number, position, position + length)
        if wanted is None or wanted(record.name):
            found[(number, record.name)] = record
    legacy = {name: r for (number, name), r in found.items() if number == 2}
    return legacy | {name: r for (number, name), r in found.items() if number == 100}


def _layer_record(reader: WireReader, kind: int, start: int, end: int) -> LayerRecord:
    """A LayerParameter (`kind` 100) or V1LayerParameter (2) record's name and blob places."""
    name_field, blobs_field = LAYER_FIELDS[kind]
    record = LayerRecord("")
    for number, wire, position, length in reader.fields(start, end):
        if number == name_field:
            _expect_wire(number, wire, (LENGTH,), "a layer's name", position)
            if length > MOST_NAME_BYTES:
                raise CaffemodelError(f"a layer name of {length:,} bytes at byte {position:,}")
            record.name = reader.read(position, length).decode("utf-8", "replace")
        elif number == blobs_field:
            _expect_wire(number, wire, (LENGTH,), "a blob", position)
            if len(record.blobs) == MOST_BLOBS:
                raise CaffemodelError(f"a layer record at byte {start:,} has more than "
                                      f"{MOST_BLOBS:,} blobs")
            record.blobs.append((position, length))
    return record


def blob_header(reader: WireReader, start: int, length: int) -> BlobHeader:
    """What the BlobProto at `start` declares, without reading its values."""
    end = start + length
    legacy = [0, 0, 0, 0]
    header = BlobHeader([])
    for number, wire, position, size in reader.fields(start, end):
        if 1 <= number <= 4:
            _expect_wire(number, wire, (VARINT,), "a legacy dim", position)
            legacy[number - 1] = signed(reader.varint_at(position, position + size), 32)
        elif number == 7:
            _expect_wire(number, wire, (LENGTH,), "a blob's shape", position)
            header.dims.extend(_shape_dims(reader, position, position + size,
                                           MOST_DIMS - len(header.dims)))
        elif number == 5:
            _expect_wire(number, wire, (LENGTH, FIXED32), "a blob's data", position)
            header.floats += _count(size, 4, wire, number, position)
        elif number == 8:
            _expect_wire(number, wire, (LENGTH, FIXED64), "a blob's double_data", position)
            header.doubles += _count(size, 8, wire, number, position)
    header.dims = header.dims or legacy
    return header


def _shape_dims(reader: WireReader, start: int, end: int, room: int) -> list[int]:
    dims: list[int] = []

    def add(value: int, position: int) -> None:
        if len(dims) == room:
            raise CaffemodelError(f"a blob shape at byte {position:,} has more than "
                                  f"{MOST_DIMS} dims")
        dims.append(signed(value, 64))

    for number, wire, position, size in reader.fields(start, end):
        if number != 1:
            continue
        _expect_wire(number, wire, (VARINT, LENGTH), "a dim", position)
        if wire == VARINT:
            add(reader.varint_at(position, position + size), position)
        else:
            for value in reader.varints(position, position + size):
                add(value, position)
    return dims


def _count(size: int, width: int, wire: int, number: int, position: int) -> int:
    """The values in one data field: one when unpacked, size / width when packed."""
    if wire != LENGTH:
        return 1
    if size % width:
        raise CaffemodelError(f"packed field {number} at byte {position:,} has {size:,} bytes, "
                              f"not a whole number of {width}-byte values")
    return size // width


def read_values(reader: WireReader, start: int, length: int, header: BlobHeader) -> np.ndarray:
    """The blob's values as float32 (its floats, else its doubles), in an array of exactly
    `header.count` values: the caller has checked that count before this allocates it."""
    doubles = not header.floats
    number, width, single = (8, 8, FIXED64) if doubles else (5, 4, FIXED32)
    dtype = np.dtype("<f8" if doubles else "<f4")
    out = np.empty(header.count, dtype=np.float32)
    filled = 0
    for found, wire, position, size in reader.fields(start, start + length):
        if found != number:
            continue
        chunk = np.frombuffer(reader.read(position, size if wire != single else width),
                              dtype=dtype)
        with np.errstate(over="ignore"):  # a double past float32's range is inf, as in numpy
            out[filled:filled + chunk.size] = chunk
        filled += chunk.size
    assert filled == header.count  # the same fields that `blob_header` counted
    return out


def shaped(values: np.ndarray, dims: list[int]) -> np.ndarray:
    """The values in the blob's declared shape, or flat when the dims do not describe them
    (math.prod: numpy's product wraps around for absurd dims and could match by accident)."""
    if math.prod(dims) == values.size and min(dims, default=1) >= 0:
        return values.reshape(dims)
    return values
