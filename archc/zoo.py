"""Where the zoo lives: the family specs and `zoo.yaml`, shipped inside the package.

In a checkout `archc/specs` is a link to the repository's `specs/`; a wheel carries the
files themselves at the same place, so one path serves both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPECS = Path(__file__).resolve().parent / "specs"
ZOO_FILE = SPECS / "zoo.yaml"
TIMM_INDEX = SPECS / "timm" / "index.yaml"  # timm model name -> the spec that writes it


def find_spec(name: str) -> Path | None:
    """The zoo's spec file for a family or builder file name (`resnet`, `vgg`), or None."""
    for folder in (SPECS, *sorted(p for p in SPECS.iterdir() if p.is_dir())):
        found = folder / f"{name}.arch"
        if found.is_file():
            return found
    return None


@dataclass
class Entry:
    """One reference model (a torchvision builder, a timm model) and the spec (network,
    variant, parameters) that writes it; `oracle` names the library that builds the reference."""

    name: str
    spec: Path
    network: str | None = None
    variant: str | None = None
    sets: dict[str, Any] = field(default_factory=dict)
    input: tuple[int, ...] | None = None  # C×H×W as zoo.yaml or --input writes it
    oracle: str = "torchvision"


def load_zoo(path: Path = ZOO_FILE, oracle: str = "torchvision") -> dict[str, Entry]:
    """The entries of a zoo index (zoo.yaml, specs/timm/index.yaml), by reference name;
    `oracle` is the library whose models the index names."""
    import yaml

    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = {}
    for name, fields in data.items():
        shape = fields.get("input")
        entries[name] = Entry(
            name=name,
            spec=(path.parent / fields["spec"]).resolve(),
            network=fields.get("network"),
            variant=fields.get("variant"),
            sets=dict(fields.get("set") or {}),
            input=tuple(int(d) for d in str(shape).split("x")) if shape else None,
            oracle=oracle,
        )
    return entries


def list_models() -> list[str]:
    """The names of the zoo's networks (torchvision's builder names), sorted."""
    return sorted(load_zoo())


def model_entry(name: str) -> Entry | None:
    """The zoo entry for a name like `resnet50` that is not a path, or None."""
    if not name or "/" in name or "\\" in name or Path(name).suffix:
        return None
    return load_zoo().get(name)


def builder_for(net: Any) -> str | None:
    """The torchvision builder that the zoo's index says a checked network writes, or None.

    An entry matches when it names the same spec file, the same network (an entry without
    `network` means the file's network of the file's own name, e.g. alexnet.arch's alexnet),
    and its variant and `set` parameters agree with the network's."""
    if not net.spec_path:
        return None
    spec = Path(net.spec_path).resolve()
    for name, entry in load_zoo().items():
        if entry.spec.resolve() != spec or net.name != (entry.network or spec.stem):
            continue
        wanted = dict(entry.sets)
        if entry.variant is not None:
            wanted["variant"] = entry.variant
        if all(net.params.get(k) == v for k, v in wanted.items()):
            return name
    return None
