"""The importers, one row each: what a front end reads and where its code lives.

A new importer is one module (its `load(source, diags, **options) -> ir.SpecFile | None`)
plus one row here; `archc import`, its help text, the weights conversion and the tests
(tests/importers/test_registry.py) read the rows. Loaders are named, not imported, so that
choosing an importer never imports torch or protobuf.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass(frozen=True)
class Importer:
    """One front end: a file format (by suffix) or Python callables (`module:callable`)."""

    name: str
    describe: str  # how help texts and errors name what it reads
    suffixes: tuple[str, ...]  # the files it reads; () for `module:callable` sources
    loader: str  # "module:function" returning the IR
    weights_suffix: str | None = None  # the weights file beside the source, for --weights
    weights_loader: str | None = None  # "module:function" → {state_dict key: array}

    def load(self) -> Callable[..., Any]:
        """The loader function (importing its module now)."""
        return _resolve(self.loader)

    def tensors(self) -> Callable[..., Any] | None:
        """The weights converter, or None when this importer converts no weights."""
        return _resolve(self.weights_loader) if self.weights_loader else None


IMPORTERS: tuple[Importer, ...] = (
    Importer("caffe", "a Caffe `.prototxt`", (".prototxt", ".pt-txt", ".pbtxt"),
             "archc.importers.caffe:load", ".caffemodel",
             "archc.importers.weights:caffe_tensors"),
    Importer("darknet", "a Darknet `.cfg`", (".cfg",),
             "archc.importers.darknet:load", ".weights",
             "archc.importers.weights:darknet_tensors"),
    Importer("pytorch", "a Python callable as `module:callable` (e.g. `torchvision:resnet50`)",
             (), "archc.importers.torch_module:load"),
)


def for_file(source: str) -> Importer | None:
    """The importer of a file source, by its suffix; None for anything else."""
    suffix = Path(source).suffix.lower()
    return next((imp for imp in IMPORTERS if suffix in imp.suffixes), None)


def file_suffixes() -> tuple[str, ...]:
    """Every suffix some importer reads."""
    return tuple(s for imp in IMPORTERS for s in imp.suffixes)


def described() -> str:
    """`a Caffe .prototxt, a Darknet .cfg, or a Python callable ...`, for hints."""
    names = [imp.describe for imp in IMPORTERS]
    return ", ".join(names[:-1]) + ", or " + names[-1]


def _resolve(dotted: str) -> Callable[..., Any]:
    module, _, function = dotted.partition(":")
    return getattr(importlib.import_module(module), function)
