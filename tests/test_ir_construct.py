"""archc.compiler.ir's fast `model_construct` / `model_copy` / `Span.at` build the same nodes as
pydantic's own: same fields in the same order, same defaults, same fields-set."""

from __future__ import annotations

import copy

import pytest
from pydantic import BaseModel

from archc.compiler import ir

NODE_CLASSES = [cls for cls in vars(ir).values()
                if isinstance(cls, type) and issubclass(cls, ir.Node) and cls is not ir.Node]


def _pydantic_construct(cls, **values):
    return BaseModel.model_construct.__func__(cls, **values)


def _same(a: BaseModel, b: BaseModel) -> None:
    assert type(a) is type(b)
    assert list(a.__dict__.items()) == list(b.__dict__.items())  # order too: it is the repr
    assert a.model_fields_set == b.model_fields_set
    assert a.__pydantic_extra__ == b.__pydantic_extra__
    assert a.__pydantic_private__ == b.__pydantic_private__


@pytest.mark.parametrize("cls", NODE_CLASSES, ids=lambda c: c.__name__)
def test_construct_with_defaults_matches_pydantic(cls):
    _same(cls.model_construct(), _pydantic_construct(cls))


def test_construct_with_values_matches_pydantic():
    span = ir.Span.model_construct(file="a.arch", line=3, column=5)
    values = {"callee": "conv", "label": "c1", "span": span, "unknown": 1}  # extra: ignored
    ours, theirs = ir.Layer.model_construct(**values), _pydantic_construct(ir.Layer, **values)
    _same(ours, theirs)
    assert "unknown" not in ours.__dict__


def test_list_defaults_are_not_shared():
    a, b = ir.Layer.model_construct(callee="relu"), ir.Layer.model_construct(callee="relu")
    assert a.args == [] and a.args is not b.args


def test_copies_do_not_change_the_original_fields_set():
    a = ir.Layer.model_construct(callee="relu")
    b = a.model_copy(update={"label": "r"})
    assert a.model_fields_set == {"callee"} and b.model_fields_set == {"callee", "label"}
    assert b.label == "r" and a.label is None
    c = copy.copy(b)
    _same(c, b)
    assert b.model_copy(deep=True) == b


def test_span_at_matches_construct():
    _same(ir.Span.at("f.arch", 1, 2, 3, 4), _pydantic_construct(
        ir.Span, file="f.arch", line=1, column=2, end_line=3, end_column=4))
