"""`archc verify`: a spec against a library's own model, as an oracle that can fail.

The reference library is an oracle, a row of ORACLES: torchvision (`torchvision:densenet121`,
its builders) or timm (`timm:repvgg_a0`, `timm.create_model(name, pretrained=False)`).
For one pair (an archc spec, a reference model name) it compares

- the parameter count at 1000 and at 2 classes (archc's static count, the built module,
  and the reference module);
- the state_dict: same keys and shapes, so archc's module loads the reference's strictly;
- the eval-mode outputs on the same random batch, after every norm's weight, bias,
  running mean and running variance (and every layer scale, and every weight that starts
  at zeros, as ViT's head and class token do) of the reference model has been
  randomised. Fresh initialisation leaves many networks with outputs near
  1e-9, where relu and relu6, or a missing residual, cannot be told apart.

The outputs must agree within 1e-5 relative to the largest logit. `specs/zoo.yaml` lists
one entry per torchvision builder and `specs/timm/index.yaml` one per timm model written;
`archc verify --zoo` runs them all. torch, torchvision and timm are imported only here,
when the verb runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archc.zoo import TIMM_INDEX, ZOO_FILE, Entry

ZOO = ZOO_FILE
TOLERANCE = 1e-5  # of the largest logit
INPUT_SCALE = 8.0
DEFAULT_SIZE = 64  # verify at 64×64 where the network accepts it: exactness does not need 224
# Builder options that only change initialisation time (scipy's truncated normal) or the
# outputs' form, never the weights' shapes.
_BUILDER_KWARGS = {"googlenet": {"init_weights": False}, "inception_v3": {"init_weights": False}}


@dataclass
class Report:
    """What one verification found; `exact` when every check passed."""

    entry: Entry
    params: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # classes -> counts
    load_error: str | None = None
    n_tensors: int = 0
    max_diff: float | None = None
    relative: float | None = None
    input: tuple[int, ...] = ()
    seconds: float = 0.0
    problem: str | None = None  # a spec that does not check, a builder that does not exist
    # training-time settings that differ: "name: p 0.2 vs 0.1" (dropout and stochastic-depth
    # probabilities, batch-norm momenta), invisible in eval-mode outputs
    training: list[str] = field(default_factory=list)

    @property
    def params_ok(self) -> bool:
        """The three counts agree at every class count."""
        return bool(self.params) and all(len(set(c)) == 1 for c in self.params.values())

    @property
    def exact(self) -> bool:
        """Every check passed."""
        return (
            self.problem is None
            and not self.training
            and self.params_ok
            and self.load_error is None
            and self.relative is not None
            and self.relative <= TOLERANCE
        )


# The families of torchvision.models the zoo does not cover yet.
NOT_YET: tuple[str, ...] = ()


def torchvision_names() -> list[str]:
    """torchvision's classification builders that the zoo covers (all but NOT_YET's)."""
    import torchvision

    return [
        n
        for n in torchvision.models.list_models(module=torchvision.models)
        if not n.startswith(NOT_YET)
    ]


# --------------------------------------------------------------------------- one check


def reference(name: str, num_classes: int = 1000, oracle: str = "torchvision"):
    """The oracle's module for `name`, randomly initialised, no weights downloaded; an
    unknown name is a ValueError."""
    return oracle_for(oracle).build(name, num_classes)


def _torchvision_model(name: str, num_classes: int):
    import torchvision

    kwargs = {"weights": None, "num_classes": num_classes, **_BUILDER_KWARGS.get(name, {})}
    return torchvision.models.get_model(name, **kwargs)


def _timm_model(name: str, num_classes: int):
    import timm

    if not timm.is_model(name):
        raise ValueError(f"timm has no model `{name}`")
    return timm.create_model(name, pretrained=False, num_classes=num_classes)


def timm_names() -> list[str]:
    """timm's model names (architectures, without pretrained tags)."""
    import timm

    return list(timm.list_models())


@dataclass(frozen=True)
class Oracle:
    """A library whose models archc's specs are verified against."""

    name: str
    build: Callable[[str, int], Any]  # (model name, classes) -> a randomly initialised module
    names: Callable[[], list[str]]  # every model name it knows
    index: Path  # the index of specs that write its models, as `verify --zoo` runs it


ORACLES: dict[str, Oracle] = {
    o.name: o
    for o in (
        Oracle("torchvision", _torchvision_model, torchvision_names, ZOO_FILE),
        Oracle("timm", _timm_model, timm_names, TIMM_INDEX),
    )
}


def oracle_for(name: str) -> Oracle:
    """The oracle called `name`; an unknown one is a ValueError listing the known ones."""
    try:
        return ORACLES[name]
    except KeyError:
        raise ValueError(
            f"unknown reference library `{name}`; known: {', '.join(ORACLES)}"
        ) from None


# The names of layer-scale parameters: torchvision's `layer_scale`, timm's `gamma`.
LAYER_SCALES = ("layer_scale", "gamma")


def randomize_statistics(model, seed: int = 0) -> None:
    """Give every norm layer random affine parameters and running statistics, and every
    layer scale random values, so that outputs depend on all of them."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                mean, var = module.running_mean, module.running_var
                assert mean is not None and var is not None  # archc's and torchvision's track them
                mean.copy_(torch.randn(mean.shape, generator=gen) * 0.2)
                var.copy_(torch.rand(var.shape, generator=gen) + 0.5)
            is_norm = isinstance(
                module,
                torch.nn.modules.batchnorm._BatchNorm | torch.nn.LayerNorm | torch.nn.GroupNorm,
            )
            if is_norm and getattr(module, "weight", None) is not None:
                # scales of either sign and sizeable shifts: no unit stays on one side of 0 or 6
                sign = torch.randint(0, 2, module.weight.shape, generator=gen) * 2 - 1
                module.weight.copy_(sign * (torch.rand(module.weight.shape, generator=gen) + 0.5))
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen))
        for name, param in model.named_parameters():
            last = name.rsplit(".", 1)[-1]
            if last in LAYER_SCALES:
                param.copy_(torch.rand(param.shape, generator=gen) + 0.5)
            elif not param.any() and (param.dim() >= 2 or last != "bias"):
                # ViT starts its head and class token at zero (every logit would be 0),
                # NF-ResNet its skip-init gains
                scale = param.shape[-1] ** -0.5 if param.dim() else 1.0
                param.copy_(torch.randn(param.shape, generator=gen) * scale)


def _reference_count(name: str, num_classes: int, oracle: str) -> int:
    """Parameters of the reference module, built on the meta device where the builder allows
    (RegNet's builder reads tensor values, so it is built for real)."""
    import torch

    try:
        with torch.device("meta"):
            return _count(reference(name, num_classes, oracle))
    except NotImplementedError:
        return _count(reference(name, num_classes, oracle))


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _load(entry: Entry, num_classes: int, input_shape=None):
    import archc

    return archc.load(
        entry.spec,
        network=entry.network,
        variant=entry.variant,
        input_shape=input_shape,
        **{**entry.sets, "num_classes": num_classes},
    )


def _input_for(entry: Entry, net) -> tuple[int, ...]:
    """The entry's own input, else 64×64 when the spec accepts it, else the declared one
    (always for a network whose weights fix its input size, as a position embedding does)."""
    from archc.compiler.graph import layers
    from archc.compiler.shapes import FIXES_SIZE

    declared = net.input_shape
    if entry.input is not None:
        return entry.input
    if any(layer.kind in FIXES_SIZE for layer in layers(net.root)):
        return declared
    small = (declared[0], DEFAULT_SIZE, DEFAULT_SIZE)
    try:
        _load(entry, 1000, small)
    except Exception:  # noqa: BLE001 - any refusal means: use the declared input
        return declared
    return small


def verify(entry: Entry, seed: int = 0) -> Report:
    """Check one entry against its oracle's model; never raises for a mismatch, reports it."""
    import torch

    import archc
    from archc.compiler.render import SpecError

    report = Report(entry)
    start = time.perf_counter()
    try:
        net = _load(entry, 1000)
    except SpecError as exc:
        report.problem = f"the spec does not check:\n{exc}"
        return report
    try:
        for classes in (1000, 2):
            counted = net if classes == 1000 else _load(entry, classes)
            with torch.device("meta"):  # shapes only: no memory, no initialisation time
                built = archc.build(counted)
            tv_count = _reference_count(entry.name, classes, entry.oracle)
            report.params[classes] = (counted.n_params, _count(built), tv_count)
    except ValueError as exc:  # an unknown builder name or library
        report.problem = str(exc)
        return report
    shape = _input_for(entry, net)
    report.input = shape
    torch.manual_seed(seed)
    tv = reference(entry.name, 1000, entry.oracle)
    randomize_statistics(tv, seed)
    with torch.device("meta"):
        model = archc.build(_load(entry, 1000, shape) if shape != net.input_shape else net)
    model = model.to_empty(device="cpu")
    state = tv.state_dict()
    report.n_tensors = len(state)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        report.load_error = _first_lines(str(exc), 6)
        report.seconds = time.perf_counter() - start
        return report
    # Inputs of scale INPUT_SCALE: activations well above 6 from the first layer on, so a
    # relu6 that should be a relu (or the reverse) changes the outputs.
    report.training = training_differences(model, tv, entry.oracle)
    x = INPUT_SCALE * torch.randn(2, *shape, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        got, want = model.eval()(x), tv.eval()(x)
    got, want = (o[0] if isinstance(o, tuple) else o for o in (got, want))
    if got.shape != want.shape:
        report.problem = f"output shapes differ: {tuple(got.shape)} vs {tuple(want.shape)}"
    else:
        report.max_diff = float((got - want).abs().max())
        report.relative = report.max_diff / max(float(want.abs().max()), 1e-30)
    report.seconds = time.perf_counter() - start
    return report


# What training does differently, by module: dropout and stochastic depth drop with `p`,
# batch norms update their statistics with `momentum`.
_TRAINING_SETTINGS = ("p", "momentum")


def training_differences(model, reference_model, oracle: str = "torchvision") -> list[str]:
    """Modules of the reference model whose training-time settings archc's module at the
    same name lacks or sets differently (eval-mode outputs cannot show these)."""
    mine = dict(model.named_modules())
    out = []
    for name, module in reference_model.named_modules():
        for attr in _TRAINING_SETTINGS:
            want = getattr(module, attr, None)
            if not isinstance(want, float) or isinstance(module, type(reference_model)):
                continue
            got = getattr(mine.get(name), attr, None)
            if got is None or abs(got - want) > 1e-12 * max(1.0, abs(want)):
                out.append(f"{name}: {attr} {got} ({oracle} {want})")
    return out


def _first_lines(text: str, n: int) -> str:
    lines = text.strip().splitlines()
    short = [ln if len(ln) < 300 else ln[:300] + " ..." for ln in lines[:n]]
    return "\n".join(short + (["..."] if len(lines) > n else []))


# --------------------------------------------------------------------------- output


def describe(report: Report) -> str:
    """The report of one entry, several lines, as `archc verify` prints it."""
    e = report.entry
    what = ", ".join(
        part
        for part in (
            e.network and f"network {e.network}",
            e.variant and f"variant {e.variant}",
            *(f"{k}={v}" for k, v in e.sets.items()),
        )
        if part
    )
    lines = [f"verify {_short(e.spec)}{f' ({what})' if what else ''} against {e.oracle}:{e.name}"]
    if report.problem and not report.params:
        return "\n".join([*lines, "  " + report.problem.replace("\n", "\n  "), "  MISMATCH"])
    for classes, (static, built, tv) in report.params.items():
        ok = "ok" if static == built == tv else "MISMATCH"
        lines.append(
            f"  parameters, {classes:>4} classes: archc {static:,} (module {built:,}), "
            f"{e.oracle} {tv:,}  {ok}"
        )
    if report.load_error:
        lines.append("  load_state_dict(strict=True): FAILED")
        lines += ["    " + ln for ln in report.load_error.splitlines()]
    elif report.n_tensors:
        lines.append(f"  load_state_dict(strict=True): ok ({report.n_tensors} tensors)")
    if report.relative is not None:
        ok = "ok" if report.relative <= TOLERANCE else "MISMATCH"
        shape = "×".join(str(d) for d in report.input)
        lines.append(
            f"  outputs on 2×{shape} (statistics randomised): max |diff| "
            f"{report.max_diff:.2e} = {report.relative:.2e} of the largest logit  {ok}"
        )
    if report.training:
        lines.append(f"  training-time settings: {len(report.training)} differ  MISMATCH")
        lines += ["    " + t for t in report.training[:5]]
        lines += ["    ..."] if len(report.training) > 5 else []
    elif report.n_tensors and not report.load_error:
        lines.append("  training-time settings (dropout, stochastic depth, bn momentum): ok")
    if report.problem:
        lines.append("  " + report.problem)
    lines.append(f"  {'exact' if report.exact else 'MISMATCH'} ({report.seconds:.1f} s)")
    return "\n".join(lines)


def table_row(report: Report) -> str:
    """One Markdown row of the zoo table."""
    e = report.entry
    params = report.params.get(1000, (0, 0, 0))[2]
    shape = "×".join(str(d) for d in report.input) or "-"
    rel = f"{report.relative:.1e}" if report.relative is not None else "-"
    return (
        f"| {e.name} | {_short(e.spec)} | {params:,} | {shape} | {rel} | "
        f"{'exact' if report.exact else 'MISMATCH'} | {report.seconds:.1f} |"
    )


def table_head(oracle: str = "torchvision") -> str:
    """The head of the zoo table for an oracle's index."""
    return TABLE_HEAD.replace("torchvision builder", f"{oracle} model", 1)


TABLE_HEAD = (
    "| torchvision builder | spec | parameters | input | max diff / max logit | result | s |\n"
    "|---|---|---:|---|---:|---|---:|"
)


def _short(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
