"""Every row of the importer registry keeps the whole contract: its loader and weights
converter exist, its suffixes are its own, `archc import` picks it by suffix, and its
help text and docs name it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from archc.compiler.diagnostics import Diagnostics
from archc.importers import import_source
from archc.importers.registry import IMPORTERS, described, file_suffixes, for_file

ROOT = Path(__file__).resolve().parents[2]
ROWS = pytest.mark.parametrize("importer", IMPORTERS, ids=lambda imp: imp.name)


def test_no_two_importers_read_the_same_suffix():
    suffixes = file_suffixes()
    assert len(suffixes) == len(set(suffixes))
    assert all(s.startswith(".") and s == s.lower() for s in suffixes)


@ROWS
def test_the_loader_is_a_function_of_source_and_diagnostics(importer):
    params = list(inspect.signature(importer.load()).parameters.values())
    positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert len(positional) == 2  # (the source, the Diagnostics); the rest keyword-only


@ROWS
def test_a_weights_converter_comes_with_its_weights_file(importer):
    assert (importer.weights_suffix is None) == (importer.weights_loader is None)
    if importer.weights_loader:
        params = list(inspect.signature(importer.tensors()).parameters)
        assert params == ["source", "found", "network"]


@ROWS
def test_each_suffix_picks_its_importer(importer):
    for suffix in importer.suffixes:
        assert for_file(f"net{suffix.upper()}") is importer


@ROWS
def test_help_and_docs_name_the_importer(importer):
    assert importer.describe in described()
    docs = (ROOT / "docs" / "importing.md").read_text(encoding="utf-8").lower()
    assert importer.name.lower() in docs


def test_an_unknown_source_lists_every_importer():
    diags = Diagnostics()
    assert import_source("net.xyz", diags) is None
    (error,) = diags.sorted()
    for importer in IMPORTERS:
        assert importer.describe in (error.hint or "")


def test_a_file_importer_is_chosen_by_suffix_and_reads_the_file(tmp_path):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n\n"
                   "[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n")
    diags = Diagnostics()
    spec = import_source(str(cfg), diags)
    assert spec is not None and not diags.has_errors
    assert spec.path == str(cfg)
