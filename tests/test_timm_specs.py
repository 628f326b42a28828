"""specs/timm/: timm's CNN families written by hand. specs/timm/index.yaml maps timm model
names to the spec, network and variant that write them; the smallest member of each
family verifies exactly against timm 1.0.31 (parameters at 1000 and 2 classes, strict
state_dict loading, outputs after randomising every norm's statistics). `archc verify
--zoo --against timm` runs every entry."""
from __future__ import annotations

from pathlib import Path

import pytest

from archc.tools.verify import describe, oracle_for, verify
from archc.zoo import TIMM_INDEX, load_zoo

ROOT = Path(__file__).resolve().parent.parent
INDEX = load_zoo(TIMM_INDEX, "timm")
FAMILIES = sorted((ROOT / "specs" / "timm").glob("*.arch"))

# The smallest member of each family: those that verify in under ~15 s on the shared
# 2-core machine run in the fast lane, the others are marked slow.
SMALLEST = {
    "repvgg.arch": "repvgg_a0",
    "mobileone.arch": pytest.param("mobileone_s0", marks=pytest.mark.slow),
    "rexnet.arch": "rexnet_100",
    "ghostnet.arch": "ghostnet_100",
    "mixnet.arch": "mixnet_s",
    "tresnet.arch": "tresnet_m",
    "dpn.arch": "dpn68",
}


def test_every_family_spec_has_a_smallest_member_and_index_entries():
    from tests.test_timm_specs2 import FAMILIES as SECOND_SET  # verified there

    names = {p.name for p in FAMILIES}
    assert names == set(SMALLEST) | set(SECOND_SET), "add the new spec's smallest member"
    for spec in names:
        assert any(e.spec.name == spec for e in INDEX.values()), f"{spec} is not in the index"


def test_the_index_names_timm_models_and_existing_specs_networks():
    import archc

    known = set(oracle_for("timm").names())
    for name, entry in INDEX.items():
        assert name in known, f"timm has no model {name}"
        assert entry.oracle == "timm" and entry.spec.is_file(), name
        net = archc.check(entry.spec, network=entry.network, variant=entry.variant)
        assert net.ok, f"{name}: {entry.spec.name} does not check"


@pytest.mark.parametrize("name", list(SMALLEST.values()))
def test_smallest_member_of_each_family_is_exact(name):
    report = verify(INDEX[name])
    assert report.exact, describe(report)
    counts = report.params[1000]
    assert counts[0] == counts[1] == counts[2] and report.params[2][0] < counts[0]


def test_docs_timm_lists_every_family_with_its_default_member_and_line_counts():
    """docs/timm.md's family table: a row per spec, its default member indexed, as many
    members exact as the index holds for the spec, and the code lines of timm's files and
    of the spec recounted (as the README's zoo table counts them)."""
    import timm.models

    from tests.test_zoo import python_code_lines

    text = (ROOT / "docs" / "timm.md").read_text(encoding="utf-8")
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in text.splitlines()
            if line.startswith("|") and "`specs/timm/" in line]
    assert {row[2].strip("`") for row in rows} == {f"specs/timm/{p.name}" for p in FAMILIES}
    source = Path(timm.models.__file__).parent
    for module, member, spec, _, exact, python, arch, _ in rows:
        path = ROOT / spec.strip("`")
        assert member in INDEX and INDEX[member].spec == path.resolve()
        members = sum(e.spec == path.resolve() for e in INDEX.values())
        assert exact == f"{members} / {members}", spec
        files = [f for f in module.split(" (")[0].split(", ")]
        assert int(python.replace(",", "")) == sum(python_code_lines(source / f) for f in files)
        code = [ln for ln in path.read_text(encoding="utf-8").splitlines()
                if ln.strip() and not ln.strip().startswith("#")]
        assert int(arch) == len(code), spec
