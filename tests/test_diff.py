"""`archc diff`: structural comparison of two networks, aligned module by module."""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from archc.tools.diff import COLOURS, Side, diff, format_text, load_side, to_json

ROOT = Path(__file__).resolve().parent.parent
VGG = ROOT / "specs" / "vgg.arch"


def _diff(a: str, b: str):
    sides = []
    for text in (a, b):
        result, label = load_side(text)
        assert result.ok, result.diagnostics
        sides.append(Side(label, result.network))
    return diff(*sides)


def _rows(d, change: str) -> list[tuple[str, str]]:
    return [(r.path, r.what) for r in d.rows if r.change == change]


def test_vgg_a_to_a_lrn_is_exactly_the_lrn_row():
    d = _diff(f"{VGG}:A", f"{VGG}:A-LRN")
    assert [(r.change, r.path, r.kind) for r in d.rows] == [("added", "features.2", "lrn")]
    assert d.rows[0].params_delta == 0 and d.rows[0].shape_b == [64, 224, 224]


def test_vgg_a_to_b_is_exactly_the_two_added_convs():
    d = _diff(f"{VGG}:A", f"{VGG}:B")
    assert _rows(d, "added") == [("features.2", "conv 3×3, 64 + relu"),
                                 ("features.7", "conv 3×3, 128 + relu")]
    assert d.counts() == {"added": 2, "removed": 0, "changed": 0}
    # 3·3·64·64 + 64 and 3·3·128·128 + 128 weights
    assert [r.params_delta for r in d.rows] == [36_928, 147_584]
    assert d.b.network.n_params - d.a.network.n_params == 36_928 + 147_584


def test_the_other_way_round_removes_them():
    d = _diff(f"{VGG}:B", f"{VGG}:A")
    assert _rows(d, "removed") == [("features.2", "conv 3×3, 64 + relu"),
                                   ("features.7", "conv 3×3, 128 + relu")]
    assert d.counts()["added"] == 0


def test_resnet18_to_resnet34_adds_whole_blocks_with_their_parameters():
    d = _diff(str(ROOT / "specs/resnet18.arch"), "resnet34")  # a zoo name
    added = [(r.path, r.what, r.params_delta) for r in d.rows]
    per_block = {64: 73_984, 128: 295_424, 256: 1_180_672, 512: 4_720_640}  # 2 convs + 2 bns
    expected = [(f"layer{s}.{i}", f"basic(c={c}, stride=1)", per_block[c])
                for s, c, n in ((1, 64, 3), (2, 128, 4), (3, 256, 6), (4, 512, 3))
                for i in range(2, n)]
    assert added == expected
    assert all(r.change == "added" and r.kind == "block" for r in d.rows)
    assert sum(r.params_delta for r in d.rows) == 21_797_672 - 11_689_512


def test_a_changed_layer_says_what_changed(tmp_path):
    spec = tmp_path / "n.arch"
    spec.write_text("network n(w=16):\n    input 3x32x32\n    conv3-{w} relu\n"
                    "    global-avgpool flatten\n    fc: FC-10\n")
    a, _ = load_side(str(spec))
    b, _ = load_side(str(spec), {"w": 32})
    d = diff(Side("w=16", a.network), Side("w=32", b.network))
    changed = {r.path: r for r in d.rows if r.change == "changed"}
    assert set(changed) == {"0", "1", "2", "3", "fc"}
    assert "out: 16 → 32" in changed["0"].notes
    assert changed["fc"].params_delta == 32 * 10 - 16 * 10
    assert "conv 3×3, 16 → conv 3×3, 32" in format_text(d)


def test_the_same_network_has_no_differences():
    d = _diff(f"{VGG}:D", str(ROOT / "specs/vgg_d.arch"))
    assert d.rows == [] and "no differences" in format_text(d)


def _archc(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "archc", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_cli_text_and_json():
    proc = _archc("diff", "specs/vgg.arch:A", "specs/vgg.arch:A-LRN")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == ("specs/vgg.arch:A → specs/vgg.arch:A-LRN: "
                                           "1 added, 0 removed, 0 changed")
    assert proc.stdout.splitlines()[2].split() == ["+", "features.2", "lrn", "n=5",
                                                   "64×224×224", "0", "0"]
    data = json.loads(_archc("diff", "resnet18", "resnet34", "--json").stdout)
    assert data["counts"]["added"] == 8
    assert data["totals"]["params_delta"] == 21_797_672 - 11_689_512
    assert data == to_json(_diff("resnet18", "resnet34")) | {
        "a": data["a"], "b": data["b"]}  # the labels are the command line's


def test_cli_graph_colours_the_differences(tmp_path):
    out = tmp_path / "d.svg"
    proc = _archc("diff", "specs/vgg.arch:A", "specs/vgg.arch:B", "--graph", str(out))
    assert proc.returncode == 0, proc.stderr
    fills = {}
    for g in ET.parse(out).getroot().iter("{http://www.w3.org/2000/svg}g"):
        title = g.find("{http://www.w3.org/2000/svg}title")
        shape = g.find("{http://www.w3.org/2000/svg}polygon")
        if g.get("class") == "node" and title is not None and shape is not None:
            fills.setdefault(title.text, []).append(shape.get("fill"))
    assert fills["features.2"][-1] == COLOURS["added"]  # B's new conv
    assert fills["features.7"][-1] == COLOURS["added"]
    assert COLOURS["added"] not in fills["features.0"] + fills["features.4"]


@pytest.mark.parametrize("args, message", [
    (("nope.arch", "specs/vgg.arch"), "error: `nope.arch` is neither a spec file"),
    (("specs/vgg.arch:A", "specs/vgg.arch:B", "--graph", "x.png"), "error: --graph writes SVG"),
])
def test_cli_bad_input_is_one_line(args, message):
    proc = _archc("diff", *args)
    assert proc.returncode == 2 and proc.stderr.startswith(message)
    assert "Traceback" not in proc.stderr


def test_cli_spec_errors_exit_1():
    proc = _archc("diff", "specs/vgg.arch:A", "specs/vgg.arch:Z")
    assert proc.returncode == 1 and "error[E110]" in proc.stderr
