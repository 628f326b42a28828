"""Where the zoo lives: the family specs and `zoo.yaml`, shipped inside the package.

In a checkout `archc/specs` is a link to the repository's `specs/`; a wheel carries the
files themselves at the same place, so one path serves both.
"""

from __future__ import annotations

from pathlib import Path

SPECS = Path(__file__).resolve().parent / "specs"
ZOO_FILE = SPECS / "zoo.yaml"


def find_spec(name: str) -> Path | None:
    """The zoo's spec file for a family or builder file name (`resnet`, `vgg`), or None."""
    for folder in (SPECS, *sorted(p for p in SPECS.iterdir() if p.is_dir())):
        found = folder / f"{name}.arch"
        if found.is_file():
            return found
    return None
