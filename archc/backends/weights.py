"""Pretrained initialisation (`archc compile --init`): torchvision weights or a weights file.

The torch backend names every submodule after the spec, and the reference specs follow
torchvision's names, so a torchvision state_dict loads into `archc.build(spec)` key for key.
Loading is strict: a missing key, an unexpected key or a shape conflict is an `InitError`
that names them. The one exception is the classifier head when only `num_classes` differs
(1000 ImageNet classes into a 2-class build): everything else loads and the head keeps its
fresh initialisation, which is what fine-tuning wants. The heads are the layers the checker
marked as following `num_classes` (`Network.class_heads`: the layers whose arguments read it,
and those over the class scores, such as a norm after a conv head).

Files are read without unpickling arbitrary objects: `.safetensors` holds tensors only, and
`.pt`/`.pth`/`.bin` go through `torch.load(weights_only=True)`.
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archc.backends import InitError
from archc.compiler.graph import LayerNode, Network

# Spec network name → torchvision builder name; a dict picks by the spec's `variant`.
TORCHVISION_NAMES: dict[str, str | dict[str, str]] = {
    "alexnet": "alexnet",
    "googlenet": "googlenet",
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "resnet101": "resnet101",
    "resnet152": "resnet152",
    "vgg": {"A": "vgg11", "B": "vgg13", "D": "vgg16", "E": "vgg19"},
    "vgg_bn": {"A": "vgg11_bn", "B": "vgg13_bn", "D": "vgg16_bn", "E": "vgg19_bn"},
    "vgg_d": "vgg16",
}

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
_SHOWN = 5  # how many keys of each kind an error message lists




# --------------------------------------------------------------------------- classifier heads


@dataclass(frozen=True)
class Heads:
    """The layers whose configuration follows `num_classes`: the classifier heads.

    `layers` maps a layer's path to the layer and the same layer at `probe` classes (its
    arguments and input there, as the checker recorded them; None where they cannot be
    told), so a caller can tell which of its settings carry the class count.
    """

    num_classes: int
    probe: int
    layers: dict[str, tuple[LayerNode, LayerNode | None]]


def class_heads(net: Network) -> Heads | None:
    """The num_classes-dependent layers of `net`, as the checker marked them.

    None when the network has no integer `num_classes` parameter or the class count changes
    its structure (a repeat count or an `if` reads it).
    """
    n = net.params.get("num_classes")
    if net.class_heads is None or not isinstance(n, int) or isinstance(n, bool):
        return None
    return Heads(n, n + 1, {layer.path: (layer, _at_probe(layer)) for layer in net.class_heads})


def _at_probe(layer: LayerNode) -> LayerNode | None:
    """The layer at one class more, when its arguments and input there are known."""
    found = layer.classes
    if found is None or found.params is None or found.in_shape is None:
        return None
    return replace(layer, params=found.params, in_shape=found.in_shape)


# --------------------------------------------------------------------------- sources


def torchvision_name(net: Network, builder: str | None = None) -> str:
    """The torchvision builder whose weights fit `net` (e.g. vgg with variant D → vgg16):
    `builder` when the caller found it in the zoo's index, else by network name."""
    entry = builder or TORCHVISION_NAMES.get(net.name)
    if isinstance(entry, dict):
        variant = net.params.get("variant")
        entry = entry.get(variant) if isinstance(variant, str) else None
    if entry is None:
        known = ", ".join(sorted(TORCHVISION_NAMES))
        raise InitError(f"torchvision has no pretrained weights for network `{net.name}` "
                        f"{_describe_params(net)}; --init torchvision knows every spec of "
                        f"specs/zoo.yaml, and {known} by name (vgg and vgg_bn in variants A, "
                        "B, D, E); give a weights file instead")
    return entry


def _describe_params(net: Network) -> str:
    return "(" + ", ".join(f"{k}={v!r}" for k, v in net.params.items()) + ")"


def torchvision_state_dict(net: Network, builder: str | None = None) -> dict[str, torch.Tensor]:
    """The DEFAULT torchvision weights of `net`'s architecture (downloaded and cached by torch)."""
    import torchvision

    name = torchvision_name(net, builder)
    weights = torchvision.models.get_model_weights(name).DEFAULT
    try:
        return weights.get_state_dict(progress=True)
    except OSError as exc:  # URLError and friends: offline, proxy, disk full
        raise InitError(f"could not fetch torchvision's {weights} ({name}): {exc}") from exc


def load_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: .safetensors, or a .pt/.pth/.bin state_dict.

    A checkpoint dict that nests the weights under "state_dict" or "model" is unwrapped.
    Pickled files load with `weights_only=True`: anything but tensors and plain containers
    is refused, and nothing in the file runs.
    """
    path = Path(path)
    if not path.is_file():
        raise InitError(f"--init: no such file {path}; give `torchvision` or a "
                        f"{'/'.join(WEIGHT_SUFFIXES)} file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file as load_safetensors

        try:
            return load_safetensors(str(path), device="cpu")
        except Exception as exc:  # the library raises several kinds
            raise InitError(f"{path} is not a readable safetensors file: {exc}") from exc
    if suffix not in WEIGHT_SUFFIXES:
        raise InitError(f"--init: {path} has an unknown suffix; use one of "
                        f"{', '.join(WEIGHT_SUFFIXES)}")
    return _state_from_pickle(path)


def _state_from_pickle(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise InitError(f"{path} holds pickled Python objects, not just tensors; archc loads "
                        ".pt files with weights_only=True and will not run the code a pickle "
                        "can carry. Save `model.state_dict()` (or use .safetensors). "
                        f"torch said: {str(exc).splitlines()[0]}") from exc
    except (RuntimeError, EOFError, OSError) as exc:
        raise InitError(f"{path} is not a readable torch file: {exc}") from exc
    return _unwrap(obj, path)


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state_dict inside a loaded object: itself, or a checkpoint's "state_dict"/"model"."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj:
        raise InitError(f"{path} holds no state_dict (a dict of tensors); found "
                        f"{type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise InitError(f"{path}: {len(bad)} entries are not tensors, e.g. {bad[0]!r}; "
                        "expected a state_dict")
    return dict(obj)


# --------------------------------------------------------------------------- loading


def _shape(t: torch.Tensor) -> str:
    return "×".join(str(d) for d in t.shape) or "scalar"


def _listing(label: str, items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN]) + (f", … ({len(items) - _SHOWN} more)"
                                          if len(items) > _SHOWN else "")
    return f"  {label} ({len(items)}): {shown}"


def _owner(key: str) -> str:
    """The module path of a state_dict key: `layer1.0.conv1.weight` → `layer1.0.conv1`."""
    return key.rpartition(".")[0]


def _head_reinit(net: Network, conflicts: list[str], model_state: dict,
                 state: dict) -> dict[str, int] | None:
    """Heads to re-initialise (path → the file's class count), or None when a conflict is
    anything but a tensor of a head (or of a layer over its scores) that differs only where
    its size follows the class count, as it would for one whole count of the file's."""
    heads = class_heads(net)
    if heads is None or not conflicts:
        return None
    found: dict[str, int] = {}
    sizes: dict[str, dict[str, list[tuple[int, int]]] | None] = {}
    for key in conflicts:
        path, mine, theirs = _owner(key), model_state[key], state[key]
        if path not in heads.layers or mine.dim() != theirs.dim() or mine.dim() == 0:
            return None
        if path not in sizes:
            sizes[path] = _sizes_at_probe(*heads.layers[path])
        by_name = sizes[path]
        count = _file_count(heads.num_classes, list(mine.shape), list(theirs.shape),
                            None if by_name is None else by_name.get(key.rpartition(".")[2]))
        if count is None or found.setdefault(path, count) != count:
            return None
    return found


def _sizes_at_probe(layer: LayerNode, probe: LayerNode | None
                    ) -> dict[str, list[tuple[int, int]]] | None:
    """Per tensor of the layer's module, each dimension's size and its size at one class more
    (modules built on the meta device: no memory); None when the probe cannot be told."""
    if probe is None:
        return None
    from archc.backends.module import layer_module

    with torch.device("meta"):
        mine, theirs = layer_module(layer).state_dict(), layer_module(probe).state_dict()
    return {name: list(zip(t.shape, theirs[name].shape)) for name, t in mine.items()
            if name in theirs and t.dim() == theirs[name].dim()}


def _file_count(n: int, mine: list[int], theirs: list[int],
                sizes: list[tuple[int, int]] | None) -> int | None:
    """The class count the file's tensor was made for: each differing dimension must grow
    with the class count (size a at n classes, b at n + 1) and agree on one whole count;
    None when one does not. Without the sizes at n + 1, only a first dimension of n counts."""
    if sizes is None:
        same_rest = mine[1:] == theirs[1:]
        return theirs[0] if same_rest and mine[0] == n else None
    counts = set()
    for (a, b), here, there in zip(sizes, mine, theirs):
        if here == there:
            continue
        step = b - a  # how much this dimension grows per class
        if step == 0 or (there - here) % step:
            return None
        counts.add(n + (there - here) // step)
    count = counts.pop() if len(counts) == 1 else None
    return count if count is not None and count >= 1 else None


def apply_init(model: nn.Module, state: dict[str, torch.Tensor], net: Network, *,
               source: str = "the weights") -> list[str]:
    """Load `state` into `model` strictly; returns notes on heads it re-initialised.

    Raises `InitError` naming missing keys, unexpected keys and shape conflicts. When the
    only conflicts are classifier heads sized for another `num_classes`, the rest loads and
    those heads keep the model's own initialisation.
    """
    model_state = model.state_dict()
    # Old files lack BN's step counter; torch itself fills it in, so it is not "missing".
    missing = [k for k in model_state if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in model_state]
    conflicts = [k for k in model_state if k in state and state[k].shape != model_state[k].shape]
    heads = None if missing or unexpected else _head_reinit(net, conflicts, model_state, state)
    if missing or unexpected or (conflicts and heads is None):
        raise InitError(_mismatch_message(net, source, missing, unexpected, conflicts,
                                          model_state, state))
    heads = heads or {}
    keep = {k: v for k, v in state.items() if _owner(k) not in heads}
    model.load_state_dict(keep, strict=False)
    n = net.params.get("num_classes")
    return [f"re-initialised {path} (num_classes {old} → {n}); new tensors: "
            + ", ".join(k for k in model_state if _owner(k) == path)
            for path, old in heads.items()]


def _mismatch_message(net: Network, source: str, missing: list[str], unexpected: list[str],
                      conflicts: list[str], model_state: dict, state: dict) -> str:
    counts = [f"{len(xs)} {label}" for xs, label in ((missing, "missing"),
                                                     (unexpected, "unexpected"),
                                                     (conflicts, "with the wrong shape")) if xs]
    lines = [f"cannot initialise network `{net.name}` from {source}: keys " + ", ".join(counts)]
    if missing:
        lines.append(_listing("missing", missing))
    if unexpected:
        lines.append(_listing("unexpected", unexpected))
    if conflicts:
        lines.append(_listing("shape conflicts", [
            f"{k} (file {_shape(state[k])}, model {_shape(model_state[k])})" for k in conflicts]))
    lines.append("  hint: the weights must come from the same architecture; check the spec's "
                 "parameters (variant, num_classes) and its layer names")
    return "\n".join(lines)


def init_model(model: nn.Module, net: Network, init: str, builder: str | None = None
               ) -> list[str]:
    """Initialise `model` from `init` ("torchvision" or a weights file); returns the notes.
    `builder` names the torchvision builder when the zoo's index knows `net`."""
    if init == "torchvision":
        return apply_init(model, torchvision_state_dict(net, builder), net,
                          source=f"torchvision's {torchvision_name(net, builder)} weights")
    return apply_init(model, load_file(init), net, source=str(init))


def save_weights(model: nn.Module, path: str | Path, net: Network | None = None) -> Path:
    """Write `model`'s state_dict as safetensors (what the generated source loads)."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = {"format": "pt"} | ({"archc_network": net.name} if net is not None else {})
    # serialised here and written with open(): safetensors' save_file creates the file 0600,
    # unlike every other file archc writes (the umask decides)
    Path(path).write_bytes(save(state, metadata=metadata))
    return Path(path)
