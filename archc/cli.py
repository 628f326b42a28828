"""The `archc` command line.

The compiler verbs (check, convert, compile, graph, summary) live here and keep torch out
of `check`. The runtime verbs (train, data, eval, predict, submit, export) come from the
`runtime` package through the `archc.commands` entry point, so `archc` never imports
`runtime` by name.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from .console import check_report, fail, parse_sets, parse_shape, print_diagnostics, version

__all__ = ["app", "fail", "main", "parse_sets", "parse_shape", "print_diagnostics"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="archc: compile CNN architecture specs (.arch or YAML) into checked, "
    "drawn and trainable PyTorch networks.",
)

SetOption = typer.Option(None, "--set", "-s", help="Override a spec parameter: --set num_classes=2")
VariantOption = typer.Option(None, "--variant", "-V", help="Configuration of a table, e.g. D")
NetworkOption = typer.Option(
    None, "--network", "-n", help="Network to use when the file has several"
)
InputOption = typer.Option(None, "--input", help="Override the input shape, e.g. 3x64x64")


def _print_version(value: bool) -> None:
    if value:
        print(version())
        raise typer.Exit()


@app.callback()
def _root(
    show_version: bool = typer.Option(
        False, "--version", help="Print archc's version and exit", is_eager=True,
        callback=_print_version,
    ),
    limit: Optional[list[str]] = typer.Option(
        None, "--limit", metavar="NAME=VALUE",
        help="Raise a size limit for any verb, e.g. --limit layers=1000000 (also "
        "ARCHC_LIMITS; see the Limits section of docs/language.md)",
    ),
) -> None:
    """archc: compile CNN architecture specs (.arch or YAML) into checked, drawn and trainable
    PyTorch networks."""
    # archc.console takes every --limit off the command line before typer parses it (so it
    # works after the verb too); this option is here to be listed in --help


# --------------------------------------------------------------------------- shared helpers


def checked(
    spec: Path,
    sets: list[str] | None,
    variant: str | None,
    network: str | None,
    input_shape: str | None,
    show_warnings: bool = True,
):
    """Check a spec for a verb that needs a valid network; exits 1 with diagnostics if not."""
    from .api import check

    if not spec.exists():
        fail(f"spec file `{spec}` not found", "give the path of a .arch or .yaml file")
    result = check(
        spec,
        parse_sets(sets),
        network=network,
        variant=variant,
        input_shape=parse_shape(input_shape),
    )
    shown = result.diagnostics if show_warnings else [d for d in result.diagnostics if d.is_error]
    print_diagnostics(shown, result.program.sources)
    if not result.ok:
        raise typer.Exit(1)
    return result.network


# --------------------------------------------------------------------------- verbs


@app.command()
def check(
    specs: list[Path] = typer.Argument(..., help="One or more .arch or .yaml specs"),
    sets: Optional[list[str]] = SetOption,
    variant: Optional[str] = VariantOption,
    network: Optional[str] = NetworkOption,
    input: Optional[str] = InputOption,
    explain: bool = typer.Option(False, "--explain", help="Say what was inferred"),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable result"),
) -> None:
    """Parse and shape-check specs; print OK with shapes, or located errors (exit 1)."""
    raise typer.Exit(check_report(specs, sets, variant, network, input, explain, as_json))


@app.command()
def convert(
    spec: Path = typer.Argument(..., help="A .arch or .yaml spec"),
    to: str = typer.Option(..., "--to", help="yaml or arch"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="Write here"),
) -> None:
    """Translate a spec between the .arch language and YAML (same IR both ways; comments
    and the spelling of layer names kept)."""
    from .diagnostics import Diagnostics
    from .sources import SpecReadError, is_yaml, parse_source, read_spec

    if to not in ("yaml", "arch"):
        fail(f"--to must be yaml or arch, got `{to}`")
    try:
        text = read_spec(spec)
    except SpecReadError as exc:
        fail(str(exc), exc.hint)
    diags = Diagnostics()
    tree = parse_source(text, str(spec), diags)
    print_diagnostics(diags.sorted(), {str(spec): text})
    if tree is None or diags.has_errors:
        raise typer.Exit(1)
    if is_yaml(str(spec)):
        from .yamlspec import yaml_notes

        tree, notes = yaml_notes(text, str(spec), Diagnostics())
    else:
        from .unparse import arch_notes

        tree, notes = arch_notes(text, str(spec))
    if to == "yaml":
        from .yamlspec import dump_yaml

        out = dump_yaml(tree, notes)
    else:
        from .unparse import UnparseError, unparse

        try:
            out = unparse(tree, notes)
        except UnparseError as exc:
            fail(
                f"this spec has no .arch form: {exc}",
                "keep it in YAML, or name the group "
                "that holds the merge so it can be written as an indented block",
                code=1,
            )
    if output:
        try:
            output.write_text(out, encoding="utf-8")
        except OSError as exc:
            fail(f"cannot write `{output}`: {exc.strerror or exc}")
    else:
        typer.echo(out, nl=False)


@app.command(name="compile")
def compile_(
    spec: Path = typer.Argument(..., help="A .arch or .yaml spec"),
    sets: Optional[list[str]] = SetOption,
    variant: Optional[str] = VariantOption,
    network: Optional[str] = NetworkOption,
    input: Optional[str] = InputOption,
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="Write the standalone module here"
    ),
    emit: str = typer.Option("python", "--emit", help="python or onnx (with -o)"),
    init: Optional[str] = typer.Option(
        None, "--init", help="torchvision, or a .safetensors/.pt file"
    ),
    purpose: str = typer.Option(
        "training", "--for",
        help="training, or inference: batch norms folded, dropout and aux heads dropped",
    ),
) -> None:
    """Print the layer table (the folded one with --for inference); with -o also write
    standalone PyTorch source, or ONNX checked against onnxruntime."""
    from .backends.summary import format_table, summarize

    if emit not in ("python", "onnx"):
        fail(f"--emit must be python or onnx, got `{emit}`")
    if purpose not in ("training", "inference"):
        fail(f"--for must be training or inference, got `{purpose}`")
    net = checked(spec, sets, variant, network, input)
    shown, what_changed = net, None
    if purpose == "inference":
        from .passes import fold_for_inference

        plan = fold_for_inference(net)
        shown, what_changed = plan.network, plan.describe()
    typer.echo(format_table(summarize(shown), shown))
    if what_changed:
        typer.echo(f"for inference: {what_changed}")
    if output is None:
        if init:
            fail("--init needs -o: it initialises the exported weights")
        return
    _write_compiled(net, output, emit, init, purpose == "inference")


def _write_compiled(net, output: Path, emit: str, init: str | None, inference: bool) -> None:
    """`compile -o`: write the Python source or the ONNX file, and say what was written and,
    for ONNX, how closely onnxruntime's run of the file matched torch's."""
    from .backends.onnx import OnnxExportError
    from .backends.weights import InitError

    checks = []
    try:
        if emit == "python":
            from .backends.pysource import write_python

            written = write_python(net, output, init=init, inference=inference)
        elif inference:
            from .passes.export import export_inference_onnx

            written = export_inference_onnx(net, output, init=init, checked=checks.append)
        else:
            from .backends.onnx import export_onnx

            written = export_onnx(net, output, init=init, checked=checks.append)
    except (InitError, OnnxExportError, OSError) as exc:
        fail(str(exc))
    for path in written:
        typer.echo(f"wrote {path}")
    for result in checks:
        typer.echo(result.describe())


@app.command()
def summary(
    spec: Path = typer.Argument(..., help="A .arch or .yaml spec"),
    sets: Optional[list[str]] = SetOption,
    variant: Optional[str] = VariantOption,
    network: Optional[str] = NetworkOption,
    input: Optional[str] = InputOption,
    as_json: bool = typer.Option(False, "--json", help="The same data as JSON"),
) -> None:
    """Per layer: output shape, parameters, MACs, activation memory, receptive field, stride."""
    from .backends.summary import format_table, summarize, to_json

    net = checked(spec, sets, variant, network, input, show_warnings=not as_json)
    rows = summarize(net)
    if as_json:
        typer.echo(json.dumps(to_json(rows, net), indent=2))
    else:
        typer.echo(format_table(rows, net))


@app.command()
def graph(
    spec: Path = typer.Argument(..., help="A .arch or .yaml spec"),
    output: Optional[Path] = typer.Option(
        None, "-o", "--output", help="out.svg, .png, .pdf or .dot"
    ),
    depth: Optional[int] = typer.Option(
        None,
        "--depth",
        help="Expand blocks down to this depth (default: 2, or 1 if that is "
        "too many boxes to read)",
    ),
    table: bool = typer.Option(
        False, "--table", help="Draw a multi-variant spec's configuration table"
    ),
    sets: Optional[list[str]] = SetOption,
    variant: Optional[str] = VariantOption,
    network: Optional[str] = NetworkOption,
    input: Optional[str] = InputOption,
) -> None:
    """Draw the network with graphviz: shapes on edges, blocks as clusters, a legend."""
    from .backends.dot import DotNotFound, DrawingTooLarge, render, table_dot, to_dot

    if depth is not None and depth < 0:
        fail(f"--depth must be 0 or more, got {depth}", "0 draws each top-level block as one box")
    if table:
        from .api import check as run_check

        result = run_check(spec, parse_sets(sets), network=network)
        if result.program.root_file is None:
            print_diagnostics(result.diagnostics, result.program.sources)
            raise typer.Exit(1)
        try:
            source = table_dot(result.program)
        except ValueError as exc:
            fail(str(exc), "the --table view needs a spec with a `table` definition")
    else:
        net = checked(spec, sets, variant, network, input)
        source = to_dot(net, depth=depth)
    output = output or Path(spec.stem + ("_table" if table else "") + ".svg")
    try:
        render(source, output)
    except DotNotFound as exc:
        fail(str(exc), "install graphviz (apt-get install graphviz), or write -o NAME.dot")
    except ValueError as exc:  # an output suffix graphviz cannot write
        fail(str(exc), "use -o NAME.svg, .png, .pdf or .dot")
    except DrawingTooLarge as exc:
        fail(str(exc), "draw fewer levels with --depth, or write the source with -o NAME.dot")
    except OSError as exc:  # -o in a folder that cannot be made or written
        fail(f"cannot write `{output}`: {exc.strerror or exc}")
    typer.echo(f"wrote {output}")


@app.command(name="fmt")
def fmt_(
    specs: list[Path] = typer.Argument(..., help="The .arch files to format (- for stdin)"),
    check: bool = typer.Option(False, "--check", help="Change nothing; exit 1 if any file "
                               "would change, and list them"),
    diff: bool = typer.Option(False, "--diff", help="Print the changes as a diff instead"),
) -> None:
    """Rewrite .arch files in the one canonical layout (comments and the network kept)."""
    from .fmt import main as fmt_main

    raise typer.Exit(fmt_main(specs, check=check, show_diff=diff))


from .cli_import import import_  # noqa: E402  (`archc import`: Caffe, Darknet, PyTorch)

app.command(name="import")(import_)

from .verify import verify_command  # noqa: E402  (`archc verify`: a spec against torchvision)

app.command(name="verify")(verify_command)

@app.command(name="schema")
def schema_(
    output: Optional[Path] = typer.Option(None, "-o", "--output",
                                          help="Write here, e.g. archc.schema.json"),
) -> None:
    """The JSON Schema of YAML specs, generated from the IR and the layer registry."""
    from .schema import main as schema_main

    raise typer.Exit(schema_main(output))


@app.command(name="diff")
def diff_(
    a: str = typer.Argument(..., help="A spec, PATH:VARIANT (specs/vgg.arch:A) or a zoo name"),
    b: str = typer.Argument(..., help="The network to compare it with, written the same way"),
    sets: Optional[list[str]] = SetOption,
    input: Optional[str] = InputOption,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable rows and totals"),
    graph: Optional[Path] = typer.Option(
        None, "--graph", help="Draw both networks, differences coloured, to out.svg"
    ),
) -> None:
    """Structural diff of two networks: added, removed and changed layers with their shape,
    parameter and MAC deltas."""
    from .diff import main as diff_main

    raise typer.Exit(diff_main(a, b, sets, input, as_json, graph))


@app.command(name="lsp")
def lsp_() -> None:
    """The language server, over stdin/stdout: point your editor's LSP client at `archc lsp`
    (docs/editors.md)."""
    from .lsp import main as lsp_main

    raise typer.Exit(lsp_main())


# --------------------------------------------------------------------------- entry point

_BUILTIN = {
    "check", "convert", "compile", "graph", "summary", "fmt", "import", "schema", "verify", "diff",
    "lsp",
}


def _load_plugins(argv: list[str]) -> None:
    """Add the runtime's verbs (train, data, ...) unless the verb is a compiler one."""
    verb = next((a for a in argv if not a.startswith("-")), None)
    if verb in _BUILTIN:
        return
    from importlib.metadata import entry_points

    unavailable: list[tuple[str, ImportError]] = []
    for ep in entry_points(group="archc.commands"):
        try:
            register = ep.load()
        except ImportError as exc:  # e.g. torch missing: the compiler verbs still work
            unavailable.append((ep.name, exc))
            continue
        register(app)
    if unavailable and verb is not None and verb not in _command_names():
        plugin, exc = unavailable[0]
        fail(
            f"`archc {verb}` is not available: the {plugin} plugin that provides the training "
            f"verbs needs the `torch` extra (module `{exc.name or exc}` is missing)",
            "install it with: pip install 'archc[torch]'  (or: make setup)",
        )
    for plugin, exc in unavailable:
        typer.echo(f"warning: archc plugin {plugin} unavailable: {exc}", err=True)


def _command_names() -> set[str]:
    """The verbs registered on the app so far (commands and command groups)."""
    names = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands}
    return names | {g.name for g in app.registered_groups if g.name}


def main(argv: list[str] | None = None) -> None:
    """The full command line (archc.console.main sends everything but a plain check here)."""
    args = sys.argv[1:] if argv is None else argv
    _load_plugins(args)
    app(args=args, prog_name="archc")


if __name__ == "__main__":
    main()
