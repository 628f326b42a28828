"""Property tests of the zoo's constructs: functions, comparisons and conditions, `for`
loops over stage tables, generated labels, the optional residual and a line that ends in
a merge.

- Random expressions print (`archc.compiler.unparse.expr`) and re-parse to the same IR, and archc's
  evaluator agrees with Python's on them (Python is the reference: the functions are
  Python's, or torchvision's `_make_divisible`), or reports a diagnostic where Python
  raises.
- Random small networks built from the new constructs never make the checker raise, and
  whatever parses converts to YAML and back to the same IR.
"""
from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archc
from archc.api import CheckResult
from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostics
from archc.compiler.expressions import ERROR, FUNCTIONS, Env, evaluate
from archc.compiler.parse import parse_expr, parse_text
from archc.compiler.unparse import expr as expr_text
from archc.compiler.unparse import unparse
from archc.compiler.yamlspec import dump_yaml, load_yaml

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SPAN = ir.Span.model_construct(file="<fuzz>")

# --------------------------------------------------------------------------- expressions

numbers = st.one_of(st.integers(0, 40), st.sampled_from([0.5, 1.4, 2.5, 0.25, 3.0]))  # -x is Neg
leaves = numbers.map(lambda v: ir.Num.model_construct(value=v))


def _tree(children):
    binop = st.builds(
        lambda op, a, b: ir.BinOp.model_construct(op=op, left=a, right=b),
        st.sampled_from(["+", "-", "*", "//", "%", "==", "!=", "<", "<=", ">", ">=", "and",
                         "or"]),
        children, children)
    call = st.builds(
        lambda f, args: ir.Call.model_construct(func=f, args=args),
        st.sampled_from(["min", "max", "round", "floor", "ceil", "int", "abs",
                         "make_divisible"]),
        st.lists(children, min_size=1, max_size=3))
    cond = st.builds(lambda t, a, b: ir.Cond.model_construct(test=t, then=a, other=b),
                     children, children, children)
    return st.one_of(binop, call, cond,
                     children.map(lambda e: ir.Not.model_construct(operand=e)),
                     children.map(lambda e: ir.Neg.model_construct(operand=e)))


expressions = st.recursive(leaves, _tree, max_leaves=8)

# Tuples, indices, slices and comprehensions over them (Python's `(x for ...)` is a
# generator, so these are checked for printing and re-parsing only).
tuples = st.lists(leaves, min_size=1, max_size=4).map(lambda items: ir.Tuple.model_construct(
    items=items))


def _with_tuples(children):
    index = st.builds(lambda t, i: ir.Index.model_construct(value=t, index=i), tuples, children)
    sliced = st.builds(
        lambda t, a, b: ir.Index.model_construct(value=t, index=a, upper=b, is_slice=True),
        tuples, st.none() | children, st.none() | children)
    comprehension = st.builds(
        lambda e, names, t: ir.Comprehension.model_construct(element=e, names=names, iterable=t),
        children, st.sampled_from([["x"], ["x", "y"], ["i", ["a", "b"]]]), tuples)
    return st.one_of(_tree(children), index, sliced, comprehension)


tuple_expressions = st.recursive(leaves | st.just(ir.Name.model_construct(id="x")),
                                 _with_tuples, max_leaves=8)


def python_value(text: str):
    """Python's value of the printed expression, with archc's functions; or the error."""
    scope = {name: entry[0] for name, entry in FUNCTIONS.items()}
    try:
        return eval(text, {"__builtins__": {}}, scope)  # noqa: S307 - the test's oracle
    except (ArithmeticError, ValueError, TypeError, LookupError) as exc:
        return exc


@FUZZ
@given(expressions | tuple_expressions)
def test_expressions_print_and_reparse_to_the_same_ir(e):
    diags = Diagnostics()
    text = expr_text(e)
    again = parse_expr(text, SPAN, diags)
    assert again is not None and not diags.items, (text, diags.items)
    assert ir.structure(again) == ir.structure(e), text


@FUZZ
@given(expressions)
def test_evaluator_agrees_with_python(e):
    text = expr_text(e)
    diags = Diagnostics()
    got = evaluate(e, Env({}), diags)
    want = python_value(text)
    if got is ERROR:
        assert diags.has_errors and all(d.span and d.message for d in diags.items)
        return
    assert not diags.has_errors
    if isinstance(want, Exception):  # archc may be stricter (bools, huge values), not laxer
        raise AssertionError(f"{text}: archc gave {got!r}, Python raised {want!r}")
    if isinstance(want, float) and math.isnan(want):
        return
    assert got == want and type(got) is type(want), (text, got, want)


# --------------------------------------------------------------------------- networks

names = st.sampled_from(["i", "c", "n", "s", "t"])
small = st.integers(0, 4)


@st.composite
def networks(draw) -> str:
    """A small network from the zoo's constructs, often valid, sometimes not."""
    rows = draw(st.lists(st.tuples(st.sampled_from([8, 16, 24]), small, st.sampled_from([1, 2])),
                         min_size=1, max_size=3))
    table = "(" + ", ".join(f"({c}, {n}, {s})" for c, n, s in rows) + ("," if len(rows) == 1
                                                                         else "") + ")"
    unpack = draw(st.sampled_from(["c, n, s", "c, n", "row"]))
    label = draw(st.sampled_from(["", "unit{n}: ", "b{c}-{s}: ", "x{i}: ", "u{c / 2}: "]))
    residual = draw(st.sampled_from(["shortcut(optional=true)", "shortcut", "identity"]))
    cond = draw(st.sampled_from(["int(t != 1)", "int(in_channels > 8)", "n - 1",
                                 "1 if s == 1 else 0", "max(0, n - 2)"]))
    tail = draw(st.sampled_from(["", "    relu  concat:\n        conv1-4\n        shortcut\n",
                                 "    conv1-8  tail:\n        relu\n"]))
    width = draw(st.sampled_from(["in_channels", "make_divisible(in_channels * t, 8)",
                                  "round(in_channels * 1.5)", "in_height"]))
    return (
        f"block unit(out, stride=1, t={draw(small)}, hidden={width}):\n"
        f"    add:\n"
        f"        conv: [conv1-{{max(1, hidden)}} relu6 x{{{cond}}}"
        f"  conv3-{{out}}(stride=stride)]\n"
        f"        {residual}\n"
        f"\n"
        f"network n(setting={table}):\n"
        f"    input 3x16x16\n"
        f"    conv3-8\n"
        f"    features:\n"
        f"        for {unpack} in setting:\n"
        f"            {label}unit(c, s)  unit(c) x{{n - 1}}\n"
        f"{tail}"
        f"    global-avgpool flatten FC-10\n"
    )


def check_text(text: str) -> CheckResult:
    result = archc.check("fuzz.arch", text=text)
    assert isinstance(result, CheckResult)
    assert all(d.code and d.message for d in result.diagnostics)
    return result


@FUZZ
@given(tuple_expressions)
def test_tuple_expressions_evaluate_or_report(e):
    """Indexing, slicing and comprehensions give a value or a located diagnostic, never an
    exception, and an index within range gives Python's item."""
    diags = Diagnostics()
    got = evaluate(e, Env({"x": (1, 2)}), diags)
    if got is ERROR:
        assert diags.has_errors and all(d.message for d in diags.items)
        return
    assert not diags.has_errors
    if isinstance(e, ir.Index) and not e.is_slice and isinstance(e.index, ir.Num):
        assert got == tuple(i.value for i in e.value.items)[e.index.value]


@FUZZ
@given(networks())
def test_zoo_constructs_never_crash_and_round_trip(text):
    result = check_text(text)
    diags = Diagnostics()
    spec = parse_text(text, "fuzz.arch", diags)
    if spec is None:
        assert not result.ok
        return
    again = parse_text(unparse(spec), "again.arch", Diagnostics())
    assert again is not None and ir.structure(again) == ir.structure(spec)
    yaml_diags = Diagnostics()
    from_yaml = load_yaml(dump_yaml(spec), "fuzz.yaml", yaml_diags)
    assert from_yaml is not None and ir.structure(from_yaml) == ir.structure(spec)


@FUZZ
@given(networks())
def test_valid_zoo_networks_count_what_they_build(text):
    """Where the checker accepts a network, its static parameter count is the built module's."""
    result = check_text(text)
    if not result.ok:
        return
    import torch

    with torch.device("meta"):
        model = archc.build(result.network)
    assert result.network.n_params == sum(p.numel() for p in model.parameters())
