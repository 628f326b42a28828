"""The inference pass: fold batch norms, drop what eval mode does not compute.

On the checked network, not on a traced module:

* a `bn` that directly follows a `conv` (or an `fc`, for bn1d) in the same plan is folded into
  it: W' = W·γ/√(σ²+ε) per output channel, b' = (b − μ)·γ/√(σ²+ε) + β. The arithmetic is done
  in float64 and rounded once, so the folded layer is the eval-mode pair up to one rounding.
* `dropout`, `dropout2d`, `stochastic-depth` and `identity` layers are dropped: in eval mode
  they pass x through.
* taps (auxiliary heads) are dropped: they run in training only.

A norm that follows anything else (a pool, a merge, an activation) stays as it is: folding it
forward into the next conv is not exact where that conv pads with zeros.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from archc.compiler.graph import (
    Call,
    Identity,
    LayerNode,
    Network,
    Op,
    Parallel,
    Scope,
    Seq,
    TapOut,
    layers,
)
from archc.layers import REGISTRY

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

#: layers that compute x in eval mode
PASS_THROUGH = frozenset({"dropout", "dropout2d", "stochastic-depth", "identity"})
#: layers a following bn folds into
FOLDS_INTO = frozenset({"conv", "fc"})
#: a batch norm's state_dict entries
NORM_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class Fold:
    """One batch norm folded into the conv or fc before it (module paths in the state_dict)."""

    layer: str  # e.g. "layer1.0.conv1"
    norm: str  # e.g. "layer1.0.bn1"
    eps: float
    affine: bool


@dataclass
class InferencePlan:
    """The optimised network and what the pass did to get it."""

    network: Network
    folds: tuple[Fold, ...]
    dropped: tuple[str, ...]  # paths of the layers and heads that are gone, folded norms aside
    dropped_kinds: tuple[str, ...] = ()  # the layer kind of each, or "tap" for a head

    def describe(self) -> str:
        """One line: what was folded and what was removed, counted by kind, e.g. `folded 53
        batch norms into the convs and linears before them; removed 2 dropouts`."""
        text = (f"folded {_plural(len(self.folds), 'batch norm')} into the convs and linears "
                "before them")
        counts: dict[str, int] = {}
        for kind in self.dropped_kinds:
            counts[kind] = counts.get(kind, 0) + 1
        removed = [_plural(n, _REMOVED_NAMES.get(kind, f"{kind} layer"))
                   for kind, n in counts.items()]
        return text + ("; removed " + ", ".join(removed) if removed else "; removed nothing")


_REMOVED_NAMES = {"dropout": "dropout", "dropout2d": "dropout2d",
                  "stochastic-depth": "stochastic depth", "identity": "identity",
                  "tap": "auxiliary head"}


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def fold_for_inference(net: Network) -> InferencePlan:
    """The network as eval mode computes it, with every conv→bn and fc→bn pair folded."""
    rewriter = _Rewriter()
    root = rewriter.scope(net.root)
    # the heads that remain, as folded (a layer a norm folded into now has a bias)
    heads = None if net.class_heads is None else tuple(
        layer for layer in layers(root) if layer.classes is not None)
    folded = dataclasses.replace(net, root=root, aux_outputs={}, class_heads=heads)
    return InferencePlan(folded, tuple(rewriter.folds), tuple(rewriter.dropped),
                         tuple(rewriter.dropped_kinds))


class _Rewriter:
    """Rewrites scopes bottom-up, collecting the folds and the dropped paths."""

    def __init__(self) -> None:
        self.folds: list[Fold] = []
        self.dropped: list[str] = []
        self.dropped_kinds: list[str] = []

    def scope(self, scope: Scope) -> Scope:
        """A copy of `scope` with its plan rewritten and its unused children removed."""
        self.current = scope
        self.replaced: dict[str, LayerNode] = {}
        plan = self.op(scope.plan)
        if not isinstance(plan, Seq):  # a scope's plan stays a sequence (nn.Sequential test)
            plan = Seq(() if isinstance(plan, Identity) else (plan,))
        replaced = self.replaced
        used = _called(plan)
        children = []
        for child in scope.children:
            if child.name not in used:
                continue
            if isinstance(child, Scope):
                child = self.scope(child)
            children.append(replaced.get(child.name, child))
        # a fresh name index: Scope caches name -> child, and a copy would keep the old one
        return dataclasses.replace(scope, plan=plan, children=children, _by_name={})

    def op(self, op: Op) -> Op:
        """The rewritten op; Identity where it computes x."""
        if isinstance(op, Call):
            child = self.current.child(op.child)
            if isinstance(child, LayerNode) and child.kind in PASS_THROUGH:
                self.dropped.append(child.path)
                self.dropped_kinds.append(child.kind)
                return Identity()
            return op
        if isinstance(op, TapOut):
            self.dropped.append(_path(self.current, op.name))
            self.dropped_kinds.append("tap")
            return Identity()
        if isinstance(op, Parallel):
            return Parallel(op.mode, tuple(self.op(b) for b in op.branches))
        if isinstance(op, Seq):
            return self.sequence(op)
        return op

    def sequence(self, op: Seq) -> Op:
        """Rewrite the steps, flatten nested sequences, fold each layer→bn pair."""
        steps: list[Op] = []
        for step in (self.op(o) for o in op.ops):
            parts = step.ops if isinstance(step, Seq) else (step,)
            for part in parts:
                if isinstance(part, Identity):
                    continue
                if steps and self.fold(steps[-1], part):
                    continue
                steps.append(part)
        if not steps:
            return Identity()
        return steps[0] if len(steps) == 1 else Seq(tuple(steps))

    def fold(self, before: Op, after: Op) -> bool:
        """Fold `after` into `before` when they are a conv/fc and the bn that follows it."""
        if not (isinstance(before, Call) and isinstance(after, Call)):
            return False
        layer = self.replaced.get(before.child) or self.current.child(before.child)
        norm = self.current.child(after.child)
        if not (isinstance(layer, LayerNode) and isinstance(norm, LayerNode)
                and layer.kind in FOLDS_INTO and norm.kind == "bn"):
            return False
        if layer.out_shape is None or norm.in_shape != layer.out_shape:
            return False  # pragma: no cover - a checked network has matching shapes
        self.folds.append(Fold(layer.path, norm.path, float(norm.params["eps"]),
                               bool(norm.params["affine"])))
        params = {**layer.params, "bias": True}
        kind = REGISTRY[layer.kind]
        assert layer.in_shape is not None  # a checked network knows every shape
        classes = layer.classes
        if classes is not None and classes.params is not None:
            classes = dataclasses.replace(classes, params={**classes.params, "bias": True})
        self.replaced[before.child] = dataclasses.replace(
            layer, params=params, n_params=kind.count_params(layer.in_shape, params),
            classes=classes)
        return True


def _called(op: Op) -> set[str]:
    """The children a plan calls."""
    if isinstance(op, Call):
        return {op.child}
    if isinstance(op, Seq):
        return set().union(*(_called(o) for o in op.ops)) if op.ops else set()
    if isinstance(op, Parallel):
        return set().union(*(_called(b) for b in op.branches))
    if isinstance(op, TapOut):
        return _called(op.op)
    return set()


def _path(scope: Scope, name: str) -> str:
    return f"{scope.path}.{name}" if scope.path else name


# --------------------------------------------------------------------------- weights (torch)


def fold_state_dict(plan: InferencePlan,
                    state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The eval-mode weights of the original network, rewritten for `plan.network`.

    Folded layers get their scaled weight and a bias; the norms' entries go. Entries of dropped
    heads are still there: `inference_module` keeps only the keys its module has.
    """
    import torch

    out = dict(state)
    for fold in plan.folds:
        weight = state[f"{fold.layer}.weight"]
        mean = state[f"{fold.norm}.running_mean"].double()
        var = state[f"{fold.norm}.running_var"].double()
        gamma = state[f"{fold.norm}.weight"].double() if fold.affine else torch.ones_like(mean)
        beta = state[f"{fold.norm}.bias"].double() if fold.affine else torch.zeros_like(mean)
        bias = state.get(f"{fold.layer}.bias")
        bias = bias.double() if bias is not None else torch.zeros_like(mean)
        scale = gamma / torch.sqrt(var + fold.eps)  # (C_out,)
        per_row = scale.view(-1, *([1] * (weight.dim() - 1)))  # (C_out, 1, 1, 1) or (F, 1)
        out[f"{fold.layer}.weight"] = (weight.double() * per_row).to(weight.dtype)
        out[f"{fold.layer}.bias"] = ((bias - mean) * scale + beta).to(weight.dtype)
        for key in NORM_KEYS:
            out.pop(f"{fold.norm}.{key}", None)
    return out


def inference_module(net: Network, model: nn.Module) -> nn.Module:
    """The folded eval-mode module of `net`, carrying `model`'s weights (model is unchanged)."""
    from archc.backends.module import to_module

    plan = fold_for_inference(net)
    folded = to_module(plan.network, init="none")
    state = fold_state_dict(plan, {k: v.detach() for k, v in model.state_dict().items()})
    folded.load_state_dict({k: state[k] for k in folded.state_dict()}, strict=True)
    device = next((p.device for p in model.parameters()), None)
    if device is not None:
        folded.to(device)
    return folded.eval()
