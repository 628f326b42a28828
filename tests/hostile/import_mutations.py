"""Seeded damage to import sources and weights files, for the importer fuzz (issue 24,
class 3): byte flips, truncations, duplicated, deleted and swapped lines, numbers made huge,
zero or negative, and binary junk. The same seed always gives the same damaged file."""

from __future__ import annotations

import random
import re

NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:e[+-]?\d+)?")
#: what a number is replaced with: absurd sizes, zeros, negatives, overflow, not-a-number
BAD_NUMBERS = [b"0", b"-1", b"-5", b"1000000000000", b"1e12", b"1e400", b"-1e400", b"nan",
               b"99999999999999999999999999", b"2147483648", b"0.5", b"-0", b"0x7fffffff"]
JUNK = [b"\0", b"\xff\xfe", b"\x80", b"{", b"}", b"[", b"]", b"<", b">", b'"', b"\\", b"=",
        b"\r", b"#", b":", b"\\x", b"\\777", b"'", b"[net]", b"layer {", b"\n\n"]


def mutate_text(data: bytes, rng: random.Random) -> bytes:
    """`data` (a prototxt or cfg) with one to three seeded mutations."""
    for _ in range(rng.randint(1, 3)):
        data = rng.choice(_TEXT_MUTATIONS)(data, rng)
    return data


def mutate_binary(data: bytes, rng: random.Random) -> bytes:
    """`data` (a caffemodel or darknet weights file) with one to three seeded mutations."""
    for _ in range(rng.randint(1, 3)):
        data = rng.choice(_BINARY_MUTATIONS)(data, rng)
    return data


def _flip(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    at = rng.randrange(len(data))
    return data[:at] + bytes([rng.randrange(256)]) + data[at + 1:]


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[:rng.randrange(len(data) + 1)]


def _junk(data: bytes, rng: random.Random) -> bytes:
    at = rng.randrange(len(data) + 1)
    return data[:at] + rng.choice(JUNK) + data[at:]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _duplicate_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    at = rng.randrange(len(lines))
    return b"\n".join(lines[:at + 1] + [lines[at]] + lines[at + 1:])


def _delete_line(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    del lines[rng.randrange(len(lines))]
    return b"\n".join(lines)


def _swap_lines(data: bytes, rng: random.Random) -> bytes:
    lines = _lines(data)
    a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
    lines[a], lines[b] = lines[b], lines[a]
    return b"\n".join(lines)


def _bad_number(data: bytes, rng: random.Random) -> bytes:
    found = list(NUMBER.finditer(data))
    if not found:
        return _junk(data, rng)
    match = rng.choice(found)
    return data[:match.start()] + rng.choice(BAD_NUMBERS) + data[match.end():]


def _overwrite_word(data: bytes, rng: random.Random) -> bytes:
    """Four bytes (a length, a count, a float) set to an extreme value."""
    if len(data) < 4:
        return data + b"\xff" * 4
    at = rng.randrange(len(data) - 3)
    word = rng.choice([b"\xff\xff\xff\x7f", b"\x00\x00\x00\x00", b"\xff\xff\xff\xff",
                       b"\x00\x00\x80\x7f", b"\x00\x00\xc0\x7f", b"\x80\x80\x80\x80"])
    return data[:at] + word + data[at + 4:]


def _duplicate_chunk(data: bytes, rng: random.Random) -> bytes:
    if not data:
        return data
    a = rng.randrange(len(data))
    b = min(len(data), a + rng.randint(1, 64))
    return data[:b] + data[a:b] + data[b:]


def _append(data: bytes, rng: random.Random) -> bytes:
    return data + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))


_TEXT_MUTATIONS = [_flip, _truncate, _junk, _duplicate_line, _delete_line, _swap_lines,
                   _bad_number, _bad_number, _bad_number]
_BINARY_MUTATIONS = [_flip, _truncate, _overwrite_word, _duplicate_chunk, _append, _junk]
