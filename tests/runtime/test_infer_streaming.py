"""Decoding ahead of the model (runtime/data/streaming.py): same pixels as the training pipeline,
file order, bounded, and stopped cleanly when the consumer stops early."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from runtime.data import folders as data_module
from runtime.data.folders import load_unlabelled
from runtime.data.streaming import decoded_batches
from runtime.data.synth import write_synthetic

SIZE = 48


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synthetic(root, n=2, seed=0, test_n=23)
    paths = sorted((root / "test1").iterdir(), key=lambda p: int(p.stem))
    broken = root / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    return paths[:10] + [broken] + paths[10:]


@pytest.mark.parametrize("workers", [1, 2])
def test_batches_equal_the_training_decoder_in_file_order(files, workers):
    want, loaded, skipped = load_unlabelled(files, SIZE)
    batches = list(decoded_batches(files, SIZE, batch_size=8, workers=workers))
    assert [len(ok) + len(bad) for ok, _, bad in batches] == [8, 8, 8]
    assert [p for ok, _, _ in batches for p in ok] == loaded
    assert [s for _, _, bad in batches for s in bad] == skipped
    assert np.array_equal(np.concatenate([u8 for _, u8, _ in batches]), want)


def test_decoding_runs_ahead_of_the_consumer(files):
    before = data_module.STATS["decoded"]
    stream = decoded_batches(files, SIZE, batch_size=4, workers=1, ahead=2)
    next(stream)  # the consumer holds batch 1 and computes; decoding goes on meanwhile
    deadline = time.monotonic() + 10
    while data_module.STATS["decoded"] - before < 3 * 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    decoded = data_module.STATS["decoded"] - before
    assert 3 * 4 <= decoded <= 4 * 4 + 1  # two batches ahead, plus one being filled: bounded
    stream.close()


def test_stopping_early_ends_the_decoding_thread(files):
    for _ in decoded_batches(files, SIZE, batch_size=2, workers=2):
        break
    assert not any(t.name == "archc-decode" for t in threading.enumerate())
