"""The Python API: a spec's path (or text) in, a checked network or a torch module out.

    net = archc.load("specs/resnet34.arch", num_classes=2)    # shape-checked, no torch
    model = archc.build("specs/resnet34.arch", num_classes=2)  # torch.nn.Module

The pipeline reads as a sentence of stages: sources → parse → IR → resolve (blocks,
variants, parameters, imports, shapes) → backends.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from archc.compiler.checker import CheckResult as CheckResult  # re-exported: the face
from archc.compiler.checker import check_spec, collector_paused
from archc.compiler.diagnostics import Diagnostic
from archc.compiler.graph import Network
from archc.compiler.render import SpecError
from archc.compiler.sources import Program
from archc.layers import Shape

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn


def check(
    spec: str | Path,
    params: dict[str, Any] | None = None,
    *,
    network: str | None = None,
    variant: str | None = None,
    input_shape: Shape | None = None,
    text: str | None = None,
) -> CheckResult:
    """Parse, resolve and shape-check a spec; never raises for problems in the spec."""
    with collector_paused():
        return _check(spec, params, network, variant, input_shape, text)


def _check(spec: str | Path, params: dict[str, Any] | None, network: str | None,
           variant: str | None, input_shape: Shape | None, text: str | None) -> CheckResult:
    if text is None:
        spec, params, network, variant = _zoo_name(spec, params, network, variant)
    return check_spec(spec, params, network, variant, input_shape, text)


def _zoo_name(spec: str | Path, params: dict[str, Any] | None, network: str | None,
              variant: str | None
              ) -> tuple[str | Path, dict[str, Any] | None, str | None, str | None]:
    """A zoo name (`resnet50`) that is not a file stands for its entry's spec, network,
    variant and settings; what the caller gives explicitly wins."""
    if Path(spec).exists():
        return spec, params, network, variant
    from archc.zoo import model_entry

    entry = model_entry(str(spec))
    if entry is None:
        return spec, params, network, variant
    return (entry.spec, {**entry.sets, **(params or {})}, network or entry.network,
            variant or entry.variant)


def load(
    spec: str | Path,
    *,
    network: str | None = None,
    variant: str | None = None,
    input_shape: Shape | None = None,
    **params: Any,
) -> Network:
    """The checked network of a spec; raises `SpecError` (rendered diagnostics) on errors."""
    result = check(spec, params, network=network, variant=variant, input_shape=input_shape)
    if not result.ok:
        raise SpecError([d for d in result.diagnostics if d.is_error], result.program.sources)
    assert result.network is not None  # `ok` means a network was built
    return result.network


def build(
    spec: str | Path | Network,
    *,
    network: str | None = None,
    variant: str | None = None,
    input_shape: Shape | None = None,
    **params: Any,
) -> nn.Module:
    """A `torch.nn.Module` for the spec; keyword arguments override the spec's parameters."""
    from archc.backends.module import to_module

    net = (
        spec
        if isinstance(spec, Network)
        else load(spec, network=network, variant=variant, input_shape=input_shape, **params)
    )
    return to_module(net)


# --------------------------------------------------------------------------- the zoo


def list_models() -> list[str]:
    """The zoo's network names (torchvision's builder names), each usable in place of a
    spec path: `archc.build("resnet50", num_classes=2)`, `archc check resnet34`."""
    from archc.zoo import list_models as names

    return names()


def zoo_entries() -> dict[str, Any]:
    """The zoo's entries by name: each with its spec path, network, variant and settings."""
    from archc.zoo import load_zoo

    return load_zoo()


# --------------------------------------------------------------------------- backends


def to_module(net: Network, init: str = "kaiming") -> nn.Module:
    """The `torch.nn.Module` of a checked network (`init="none"` keeps torch's defaults)."""
    from archc.backends.module import to_module as build_module

    return build_module(net, init)


def inference_module(net: Network, model: nn.Module) -> nn.Module:
    """`model` prepared for inference: batch norms folded into the convs and linears before
    them, dropout and auxiliary heads gone; outputs equal the eval model's."""
    from archc.passes import inference_module as fold

    return fold(net, model)


def emit_python(net: Network, path: str | Path, *, init: str | None = None,
                inference: bool = False, note: Callable[[str], None] | None = None
                ) -> list[Path]:
    """Write standalone, ruff-clean PyTorch source for `net` (and its weights when `init`
    names them); returns the files written."""
    from archc.backends.pysource import write_python
    from archc.passes.export import write_inference_python

    extra = {"note": note} if note is not None else {}
    write = write_inference_python if inference else write_python
    return write(net, Path(path), init=init, **extra)


def emit_onnx(net: Network, path: str | Path, *, init: str | None = None,
              inference: bool = False, model: nn.Module | None = None) -> list[Path]:
    """Export `net` as ONNX, checked against onnxruntime. With `model`, that module's weights
    are exported, folded for inference; otherwise a fresh or `init`-loaded one."""
    if model is not None:
        from archc.passes.export import export_folded_onnx

        return export_folded_onnx(net, model, Path(path))
    if inference:
        from archc.passes.export import export_inference_onnx

        return export_inference_onnx(net, Path(path), init=init)
    from archc.backends.onnx import export_onnx

    return export_onnx(net, Path(path), init=init)


def emit_dot(net: Network, depth: int | None = 2) -> str:
    """The graphviz source of the network's diagram (blocks deeper than `depth` collapse)."""
    from archc.backends.dot import to_dot

    return to_dot(net, depth=depth)


def init_weights(model: nn.Module, net: Network, init: str) -> list[str]:
    """Load `init` ("torchvision" or a .safetensors/.pt file) into `model`; returns notes."""
    from archc.backends.weights import init_model
    from archc.zoo import builder_for

    # the zoo's index names the torchvision builder of all 68 zoo networks
    return init_model(model, net, init, builder_for(net) if init == "torchvision" else None)


def classifier_heads(net: Network) -> tuple[str, ...]:
    """The module paths of `net`'s classifier heads (the layers that follow num_classes),
    or () when there are none or they cannot be told (no num_classes parameter, or the
    class count changes the network's structure)."""
    return tuple(layer.path for layer in net.class_heads or ())


def save_weights(model: nn.Module, path: str | Path, net: Network | None = None) -> Path:
    """Write `model`'s state_dict as safetensors (what the generated source loads)."""
    from archc.backends.weights import save_weights as save

    return save(model, path, net)


# --------------------------------------------------------------------------- text


def bundle(program: Program) -> str:
    """One self-contained .arch text for a spec and everything it imports."""
    from archc.compiler.unparse import bundle_program

    return bundle_program(program)


def render(diagnostics: list[Diagnostic], sources: dict[str, str], color: bool = False) -> str:
    """Diagnostics rendered as rustc does: file:line:col, the line, a caret, hints, notes."""
    from archc.compiler.render import render_all

    return render_all(diagnostics, sources, color=color)


def parse_value(text: str) -> Any:
    """A `--set` value from the command line: int, float, true/false, or a plain string."""
    from archc.compiler.expressions import parse_value as parse

    return parse(text)


def parse_assignments(values: list[str] | None) -> dict[str, Any]:
    """`NAME=VALUE` strings (`--set` options) as a dict of typed values; ValueError names
    the malformed one."""
    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set expects NAME=VALUE, got `{item}`")
        out[key.strip()] = parse_value(value)
    return out


def cache_root() -> Path | None:
    """The folder of archc's caches (`$ARCHC_CACHE`, else `$XDG_CACHE_HOME/archc`, else
    `~/.cache/archc`); None when there is no absolute home to put it in."""
    from archc.compiler.cache import root

    return root()


def cache_folder(name: str) -> Path | None:
    """archc's cache folder `name` under `cache_root()`, created 0700 if missing, or None when
    it is not safe to keep data in: a folder on the way that another user owns or can write
    (docs/security.md). The path is the folder's resolved one."""
    from archc.compiler.cache import private_dir

    folder = private_dir(name)
    return None if folder is None else folder.path


def register_leaf(cls: type | str, items: Callable[..., Any], *, block: bool = False,
                  subclasses: bool = False) -> Any:
    """Teach the PyTorch importer a helper module: instances of `cls` (a class, or
    "package.module:Class") become the archc items `items(module, context)` returns, built
    with `context.layer(kind, own=..., label=..., **args)` and `context.child(name)`; None
    reads the instance as usual. With `block=True` the items are the body of a block.
    Every import is still checked against its source. Returns the row."""
    from archc.importers.leaves import register_leaf as register

    return register(cls, items, block=block, subclasses=subclasses)


def import_network(source: str, args: dict[str, Any] | None = None, *,
                   input_shape: tuple[int, int, int] | None = None
                   ) -> tuple[str | None, list[Diagnostic]]:
    """`archc import SOURCE` in-process: the spec's text (None on errors) and the
    diagnostics. `source` is a file (.prototxt, .cfg) or a Python `module:callable`,
    `args` its keyword arguments; a PyTorch import is checked against its source."""
    from archc.compiler.checker import collector_paused
    from archc.compiler.diagnostics import Diagnostics
    from archc.importers import check_imported, import_source, layout

    diags = Diagnostics()
    with collector_paused():
        spec = import_source(source, diags, args=args or {}, input_shape=input_shape)
        network = None if spec is None else check_imported(spec, {}, diags)
    text = None if spec is None or network is None else layout.spec_text(spec)
    return text, diags.sorted()
