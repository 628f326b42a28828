"""Image files → decoded uint8 batches, decoded ahead of the model.

    for paths, u8, skipped in decoded_batches(files, size=256, batch_size=64, workers=2):
        probs = predict_images(trained, u8)        # while the next batch decodes

Decoding is `runtime.data.folders`'s (the uint8 pipeline the training cache uses: short side
resized,
centre crop), in `workers` processes; a background thread gathers the decoded images into
batches and keeps at most `ahead` of them waiting, so decoding overlaps the model's compute
and memory stays bounded however many files there are (Kaggle's test set is 12,500).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .folders import decode_many

Batch = tuple[list[Path], np.ndarray, list[tuple[str, str]]]  # loaded, (B, S, S, 3), skipped
_DONE = object()


def decoded_batches(paths: Sequence[Path], size: int, batch_size: int, workers: int = 1,
                    ahead: int = 2) -> Iterator[Batch]:
    """Batches of (paths that decoded, their uint8 images, (path, reason) of those that did not),
    in file order; each batch covers `batch_size` files."""
    paths = [Path(p) for p in paths]
    if not paths:
        return
    out: queue.Queue = queue.Queue(maxsize=max(1, ahead))
    stop = threading.Event()
    worker = threading.Thread(target=_produce, args=(paths, size, batch_size, workers, out, stop),
                              name="archc-decode", daemon=True)
    worker.start()
    try:
        while True:
            item = out.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()  # the consumer stopped early (an error, or it had enough): stop decoding
        while worker.is_alive():
            try:
                out.get(timeout=0.1)  # unblock a producer waiting on a full queue
            except queue.Empty:
                pass
        worker.join()


def _produce(paths: list[Path], size: int, batch_size: int, workers: int, out: queue.Queue,
             stop: threading.Event) -> None:
    """The background thread: decode, batch, hand over; an exception is handed over too."""
    try:
        batch = _Gatherer(size, batch_size)
        stream = decode_many(paths, size, workers)
        try:
            for i, array, reason in stream:
                if stop.is_set():
                    return
                batch.add(paths[i], array, reason)
                if batch.full:
                    _put(out, batch.take(), stop)
        finally:
            stream.close()  # ends the worker pool
        if batch.count:
            _put(out, batch.take(), stop)
        _put(out, _DONE, stop)
    except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer's thread
        _put(out, exc, stop)


def _put(out: queue.Queue, item: object, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            out.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


class _Gatherer:
    """Fills one batch of decoded images."""

    def __init__(self, size: int, batch_size: int):
        self.size, self.batch_size = size, batch_size
        self.reset()

    def reset(self) -> None:
        self.images = np.empty((self.batch_size, self.size, self.size, 3), dtype=np.uint8)
        self.loaded: list[Path] = []
        self.skipped: list[tuple[str, str]] = []

    @property
    def count(self) -> int:
        """Files handled in this batch, read or not."""
        return len(self.loaded) + len(self.skipped)

    @property
    def full(self) -> bool:
        return self.count >= self.batch_size

    def add(self, path: Path, array: np.ndarray | None, reason: str) -> None:
        if array is None:
            self.skipped.append((str(path), reason))
        else:
            self.images[len(self.loaded)] = array
            self.loaded.append(path)

    def take(self) -> Batch:
        batch = (self.loaded, self.images[: len(self.loaded)], self.skipped)
        self.reset()
        return batch
