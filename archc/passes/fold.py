"""The inference pass: fold batch norms, drop what eval mode does not compute.

On the checked network, not on a traced module:

* a `bn` that directly follows a `conv` (or an `fc`, for bn1d) in the same plan is folded into
  it: W' = W·γ/√(σ²+ε) per output channel, b' = (b − μ)·γ/√(σ²+ε) + β. The arithmetic is done
  in float64 and rounded once, so the folded layer is the eval-mode pair up to one rounding.
* `dropout`, `dropout2d`, `stochastic-depth` and `identity` layers are dropped: in eval mode
  they pass x through.
* taps (auxiliary heads) are dropped: they run in training only.

A norm can also fold forward, into the linear map after it, where that is exact:

* a `layernorm` (`layernorm2d`) keeps its normalisation but gives its scale γ and shift β to
  the linear map its output feeds, which it then leaves without affine: W' = W·diag(γ),
  b' = b + W·β. The linear maps are the first Linear of the layers that start with one: `fc`,
  `channel-fc`, `mlp`, `self-attention`'s in_proj, Swin's (v1) `window-attention` qkv where no
  window is padded, MaxViT's `relative-attention` to_qkv, and a `conv` that pads nothing;
* an eval-mode `bn` not after a conv or fc (MaxViT's MBConv pre-norm) is an affine map per
  channel, x·s + t; it goes altogether into such a conv or linear after it.

Exact only where the norm's output feeds that map and nothing else: the two are neighbours in
one straight run of the plan (block calls inlined), with between them only layers that commute
with a per-channel affine (token-pool, global or adaptive average pooling, flatten of a C×1×1,
permute, and what eval mode drops). A norm before a merge or a residual add, a named tensor
(`-> name`) or a tap stays. A norm before a padding conv stays too: the zeros it pads would
no longer be the zeros of the unfolded network.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
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
    takes_tensors,
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


@dataclass(frozen=True)
class InputFold:
    """A norm's per-channel affine folded forward into the linear map that reads its output.

    `weight` and `bias` are the state_dict keys of that map (e.g. `encoder.layers.
    encoder_layer_0.self_attention.in_proj_weight`); a `layernorm` stays without affine, a
    `bn` goes (its eps is used), both keyed by `norm`."""

    norm: str  # e.g. "encoder.layers.encoder_layer_0.ln_1"
    norm_kind: str  # "layernorm", "layernorm2d" or "bn"
    layer: str  # the path of the layer whose first linear map takes the affine
    weight: str
    bias: str
    eps: float = 0.0


@dataclass
class InferencePlan:
    """The optimised network and what the pass did to get it."""

    network: Network
    folds: tuple[Fold, ...]
    dropped: tuple[str, ...]  # paths of the layers and heads that are gone, folded norms aside
    dropped_kinds: tuple[str, ...] = ()  # the layer kind of each, or "tap" for a head
    input_folds: tuple[InputFold, ...] = ()  # norms folded forward into the map after them

    def describe(self) -> str:
        """One line: what was folded and what was removed, counted by kind, e.g. `folded 53
        batch norms into the convs and linears before them; removed 2 dropouts`."""
        text = (f"folded {_plural(len(self.folds), 'batch norm')} into the convs and linears "
                "before them")
        forward_bn = sum(f.norm_kind == "bn" for f in self.input_folds)
        forward_ln = len(self.input_folds) - forward_bn
        if forward_bn:
            text += f", {_plural(forward_bn, 'batch norm')} into the convs and linears after them"
        if forward_ln:
            text += (f", the scale and shift of {_plural(forward_ln, 'layer norm')} into the "
                     "linear maps after them")
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
    """The network as eval mode computes it, with every conv→bn and fc→bn pair folded, and
    every norm whose affine folds exactly into the linear map after it folded there."""
    input_folds = find_input_folds(net)
    rewriter = _Rewriter(input_folds)
    root = rewriter.scope(net.root)
    # the heads that remain, as folded (a layer a norm folded into now has a bias)
    heads = None if net.class_heads is None else tuple(
        layer for layer in layers(root) if layer.classes is not None)
    folded = dataclasses.replace(net, root=root, aux_outputs={}, class_heads=heads)
    return InferencePlan(folded, tuple(rewriter.folds), tuple(rewriter.dropped),
                         tuple(rewriter.dropped_kinds), tuple(input_folds))


class _Rewriter:
    """Rewrites scopes bottom-up, collecting the folds and the dropped paths."""

    def __init__(self, input_folds: Sequence[InputFold] = ()) -> None:
        self.folds: list[Fold] = []
        self.dropped: list[str] = []
        self.dropped_kinds: list[str] = []
        self.forward = _ForwardFolds(input_folds)

    def scope(self, scope: Scope) -> Scope:
        """A copy of `scope` with its plan rewritten and its unused children removed."""
        self.current = scope
        self.replaced: dict[str, LayerNode] = {}
        for child in scope.children:
            if isinstance(child, LayerNode):
                changed = self.forward.layer(child)
                if changed is not child and changed is not None:
                    self.replaced[child.name] = changed
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
            if isinstance(child, LayerNode) and self.forward.layer(child) is None:
                return Identity()  # a bn that went into the map after it
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
            return dataclasses.replace(op, branches=tuple(self.op(b) for b in op.branches))
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


class _ForwardFolds:
    """The layers the forward folds change, by path."""

    def __init__(self, folds: Sequence[InputFold]) -> None:
        self.norms = {fold.norm: fold for fold in folds}
        self.maps = {fold.layer for fold in folds}

    def layer(self, layer: LayerNode) -> LayerNode | None:
        """`layer` as the forward folds leave it: None for a folded bn, a layernorm without
        affine, a map with a bias (where it has the choice), or `layer` itself."""
        fold = self.norms.get(layer.path)
        if fold is not None:
            return None if fold.norm_kind == "bn" else _with_params(layer, affine=False)
        if layer.path in self.maps and layer.kind == "patch-merging":
            return _with_params(layer, affine=False)  # its own norm folded into its Linear
        if layer.path in self.maps and layer.params.get("bias") is False:
            return _with_params(layer, bias=True)
        return layer


def _with_params(layer: LayerNode, **changes: object) -> LayerNode:
    """A copy of `layer` with some parameters changed and its parameter count recounted."""
    params = {**layer.params, **changes}
    assert layer.in_shape is not None  # a checked network knows every shape
    return dataclasses.replace(
        layer, params=params, n_params=REGISTRY[layer.kind].count_params(layer.in_shape, params))


# --------------------------------------------------------------------------- forward folds

#: norms whose eval-mode output is a per-channel affine of what they keep (or of x, for bn)
FORWARD_NORMS = frozenset({"layernorm", "layernorm2d", "bn"})
#: layers between a norm and its map that commute with a per-channel affine
COMMUTING = frozenset({"token-pool", "globalavgpool", "adaptiveavgpool", "flatten", "permute"})


def _channel_axis(layer: LayerNode) -> int:
    """The axis (batch not counted) whose channels a norm scales and shifts."""
    assert layer.in_shape is not None
    return len(layer.in_shape) - 1 if layer.kind == "layernorm" else 0


def _axis_after(layer: LayerNode, axis: int) -> int | None:
    """Where the channels of `axis` are after a commuting layer; None when they are mixed
    with other axes (a flatten of more than C×1×1)."""
    inp = layer.in_shape or ()
    if layer.kind == "permute":
        return list(layer.params["dims"]).index(axis + 1) - 1  # dims count the batch axis
    if layer.kind == "flatten":
        return 0 if all(n == 1 for i, n in enumerate(inp) if i != axis) else None
    if layer.kind == "token-pool":
        return axis - 1 if axis == len(inp) - 1 else None  # T×C → C
    # average pooling over H×W of C×H×W, the channels first
    return axis if axis == 0 and len(inp) == 3 else None


def _map_keys(layer: LayerNode, axis: int) -> tuple[str, str] | None:
    """(weight key, bias key) of the linear map `layer` applies first to the channels of
    `axis`, where an affine on them folds into it exactly; None where it does not."""
    p, inp = layer.params, layer.in_shape or ()
    last = axis == len(inp) - 1
    if layer.kind == "fc" or (layer.kind == "channel-fc" and p["last"] == last):
        return "weight", "bias"
    if not last:
        if layer.kind == "conv" and len(inp) == 3 and axis == 0 and p["groups"] == 1:
            from archc.layers.window import TF_SAME, resolve_padding

            # zeros padded after the norm would change
            if p["padding"] != TF_SAME and resolve_padding(p) in (0, (0, 0)):
                return "weight", "bias"
        return None
    if layer.kind == "mlp":
        return "0.weight", "0.bias"
    if layer.kind == "self-attention":
        return "in_proj_weight", "in_proj_bias"
    if layer.kind == "relative-attention":
        return "to_qkv.weight", "to_qkv.bias"
    if layer.kind == "window-attention" and p["version"] == 1:  # v2 zeroes the key bias
        window = p["window"]
        if inp[0] % window == 0 and inp[1] % window == 0:  # no padded window
            return "qkv.weight", "qkv.bias"
    return None


def find_input_folds(net: Network) -> list[InputFold]:
    """Every norm whose affine folds exactly into the linear map after it (see the module's
    docstring): norms and maps next to each other in a straight run of the plan."""
    folds: list[InputFold] = []
    calls = _call_counts(net.root)
    for run in _straight_runs(net.root, net.root.plan):
        for i, norm in enumerate(run):
            fold = _input_fold(norm, run[i - 1] if i else None, run[i + 1:])
            if fold is not None and calls[fold.norm] == calls[fold.layer] == 1:
                folds.append(fold)  # a layer called twice would take the fold twice
    for layer in layers(net.root):  # Swin v1's patch merging: a norm, then its Linear
        if (layer.kind == "patch-merging" and layer.params["version"] == 1
                and layer.params["affine"] and calls[layer.path] == 1):
            folds.append(InputFold(f"{layer.path}.norm", "layernorm", layer.path,
                                   f"{layer.path}.reduction.weight",
                                   f"{layer.path}.reduction.bias"))
    return folds


def _call_counts(scope: Scope) -> Counter[str]:
    """How many times each module path is called, in `scope` and below."""
    counts: Counter[str] = Counter()

    def visit(op: Op) -> None:
        if isinstance(op, Call):
            counts[_path(scope, op.child)] += 1
        elif isinstance(op, Seq | Parallel):
            for inner in op.ops if isinstance(op, Seq) else op.branches:
                visit(inner)
        elif isinstance(op, TapOut):
            visit(op.op)

    visit(scope.plan)
    for child in scope.children:
        if isinstance(child, Scope):
            counts.update(_call_counts(child))
    return counts


def _input_fold(norm: LayerNode, before: LayerNode | None,
                after: list[LayerNode]) -> InputFold | None:
    """The fold of `norm` into the first map of `after`, if exact."""
    if norm.kind not in FORWARD_NORMS or norm.in_shape is None:
        return None
    if norm.kind == "bn":
        if before is not None and before.kind in FOLDS_INTO:
            return None  # it folds back into that conv or fc
    elif not norm.params["affine"]:
        return None  # nothing to fold
    axis: int | None = _channel_axis(norm)
    for layer in after:
        if axis is None:
            return None
        if layer.kind in COMMUTING:
            axis = _axis_after(layer, axis)
            continue
        keys = _map_keys(layer, axis)
        if keys is None:
            return None
        eps = float(norm.params["eps"]) if norm.kind == "bn" else 0.0
        return InputFold(norm.path, norm.kind, layer.path, f"{layer.path}.{keys[0]}",
                         f"{layer.path}.{keys[1]}", eps)
    return None


def _straight_runs(scope: Scope, op: Op) -> list[list[LayerNode]]:
    """The plan as runs of layers where each one's output feeds only the next one: block
    calls inlined, pass-through layers left out; a merge, a named tensor or a tap ends a run
    (the tensor there has more than one reader)."""
    runs: list[list[LayerNode]] = [[]]

    def visit(scope: Scope, op: Op) -> None:
        if isinstance(op, Seq):
            for inner in op.ops:
                visit(scope, inner)
        elif isinstance(op, Call):
            child = scope.child(op.child)
            if isinstance(child, LayerNode):
                if child.kind not in PASS_THROUGH:
                    runs[-1].append(child)
            elif takes_tensors(child):  # it reads or writes named tensors: not inlined
                runs.append([])
                runs.extend(_straight_runs(child, child.plan))
                runs.append([])
            else:
                visit(child, child.plan)
        elif isinstance(op, Parallel):
            runs.append([])
            for branch in op.branches:
                runs.extend(_straight_runs(scope, branch))
            runs.append([])
        elif isinstance(op, TapOut):
            runs.append([])
            runs.extend(_straight_runs(scope, op.op))
            runs.append([])
        elif not isinstance(op, Identity):  # Save, Load: the tensor has another reader
            runs.append([])

    visit(scope, op)
    return [run for run in runs if len(run) > 1]


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
    for forward in plan.input_folds:  # first: a conv may also fold the bn after it
        _fold_forward(forward, out)
    for fold in plan.folds:
        weight = out[f"{fold.layer}.weight"]
        mean = state[f"{fold.norm}.running_mean"].double()
        var = state[f"{fold.norm}.running_var"].double()
        gamma = state[f"{fold.norm}.weight"].double() if fold.affine else torch.ones_like(mean)
        beta = state[f"{fold.norm}.bias"].double() if fold.affine else torch.zeros_like(mean)
        bias = out.get(f"{fold.layer}.bias")
        bias = bias.double() if bias is not None else torch.zeros_like(mean)
        scale = gamma / torch.sqrt(var + fold.eps)  # (C_out,)
        per_row = scale.view(-1, *([1] * (weight.dim() - 1)))  # (C_out, 1, 1, 1) or (F, 1)
        out[f"{fold.layer}.weight"] = (weight.double() * per_row).to(weight.dtype)
        out[f"{fold.layer}.bias"] = ((bias - mean) * scale + beta).to(weight.dtype)
        for key in NORM_KEYS:
            out.pop(f"{fold.norm}.{key}", None)
    return out


def _fold_forward(fold: InputFold, out: dict[str, torch.Tensor]) -> None:
    """Fold one norm's affine into the weights of the map after it, in `out`, in float64:
    W' = W·diag(s), b' = b + W·t, with s, t the norm's per-channel scale and shift."""
    import torch

    weight = out[fold.weight]  # (out, C) or (out, C, kh, kw)
    w = weight.double()
    if fold.norm_kind == "bn":  # eval mode: x·γ/√(σ²+ε) + β − μ·γ/√(σ²+ε)
        mean = out[f"{fold.norm}.running_mean"].double()
        var = out[f"{fold.norm}.running_var"].double()
        gamma = out.get(f"{fold.norm}.weight", torch.ones_like(mean)).double()
        beta = out.get(f"{fold.norm}.bias", torch.zeros_like(mean)).double()
        scale = gamma / torch.sqrt(var + fold.eps)
        shift = beta - mean * scale
    else:
        scale = out[f"{fold.norm}.weight"].double()
        shift = out.get(f"{fold.norm}.bias", torch.zeros_like(scale)).double()  # bias=false
    per_input = (1, -1, *([1] * (w.dim() - 2)))  # (1, C) or (1, C, 1, 1)
    bias = out.get(fold.bias)
    extra = (w * shift.view(per_input)).flatten(1).sum(1)  # W·t, (out,)
    out[fold.bias] = (extra if bias is None else bias.double() + extra).to(weight.dtype)
    out[fold.weight] = (w * scale.view(per_input)).to(weight.dtype)
    for key in NORM_KEYS:
        out.pop(f"{fold.norm}.{key}", None)


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
