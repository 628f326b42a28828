"""Messages and numbers that misled (issue 11, items 13, 16-22), through the real CLI."""

from __future__ import annotations

import json
import re

from .conftest import REPO, assert_spec_error, location, run_archc, tree_state


def check(tmp_path, name: str, text: str, *extra: str):
    """`archc check` on `text` written to tmp_path/name; asserts nothing on disk changed."""
    (tmp_path / name).write_text(text)
    before = tree_state(tmp_path)
    proc = run_archc("check", name, *extra, cwd=tmp_path, mem_mb=600, cpu_s=20)
    assert tree_state(tmp_path) == before
    assert "Traceback" not in proc.stderr
    return proc


def report(tmp_path, name: str, text: str) -> dict:
    """The --json report of `text`."""
    return json.loads(check(tmp_path, name, text, "--json").stdout)


# ----------------------------------------------------------------------------- item 13


MERGE = """network n:
    input 3x32x32
    conv3-8
    {concat}:
        conv1-4
        conv3-4
    {add}:
        conv1-8
        conv3-8
    flatten FC-10
"""


def test_merge_keywords_ignore_case_like_layer_kinds(tmp_path):
    lower = report(tmp_path, "lower.arch", MERGE.format(concat="concat", add="add"))
    upper = report(tmp_path, "upper.arch", MERGE.format(concat="Concat", add="ADD"))
    assert lower["ok"] and upper["ok"]
    # read as a labelled sequence, the four convs would chain: other counts entirely
    assert (upper["parameters"], upper["macs"]) == (lower["parameters"], lower["macs"])


def test_yaml_merge_keys_ignore_case(tmp_path):
    yaml_spec = ("- network: n\n  input: [3, 32, 32]\n  body:\n    - conv3-8\n"
                 "    - {merge}: [conv1-4, conv3-4]\n    - flatten\n    - FC-10\n")
    lower = report(tmp_path, "lower.yaml", yaml_spec.format(merge="concat"))
    upper = report(tmp_path, "upper.yaml", yaml_spec.format(merge="Concat"))
    assert lower["ok"] and upper["ok"] and upper["parameters"] == lower["parameters"]


# ----------------------------------------------------------------------------- item 16


def test_a_parameter_read_only_by_another_default_is_used(tmp_path):
    text = ("block b(c, half=c // 2):\n    conv3-{half} relu\n\n"
            "network n:\n    input 3x32x32\n    b(16)\n    flatten FC-10\n")
    proc = check(tmp_path, "b.arch", text)
    assert proc.returncode == 0 and "W303" not in proc.stderr, proc.stderr
    # following the old hint (drop `c`) would break the spec: `c` sizes the conv, 16 // 2
    # = 8 channels: 3·8·9 + 8 + (8·32·32)·10 + 10 parameters
    assert report(tmp_path, "b.arch", text)["parameters"] == 224 + 81_930


def test_an_unused_parameter_still_warns(tmp_path):
    text = ("block b(c, unused=1):\n    conv3-{c} relu\n\n"
            "network n:\n    input 3x32x32\n    b(16)\n    flatten FC-10\n")
    proc = check(tmp_path, "b.arch", text)
    assert "warning[W303]: parameter `unused` is never used" in proc.stderr


# ----------------------------------------------------------------------------- item 17


def _w301_hint(tmp_path, layer: str) -> str:
    text = f"network n:\n    input 3x32x32\n    {layer}\n    flatten FC-10\n"
    proc = check(tmp_path, "w.arch", text)
    assert "warning[W301]" in proc.stderr, proc.stderr
    return next(line for line in proc.stderr.splitlines() if "hint:" in line)


def test_w301_offers_ceil_only_to_pools(tmp_path):
    assert "ceil" not in _w301_hint(tmp_path, "conv3-8(stride=2, padding=0)")
    assert "ceil=true" in _w301_hint(tmp_path, "maxpool(3, stride=2)")


# ----------------------------------------------------------------------------- item 18


VALID_CONVS = """network n:
    input 3x5x5
    conv3-8(padding=0) relu
    conv3-8(padding=0) relu
    conv3-8(padding=0) relu
    flatten FC-10
"""


def test_the_smallest_input_note_is_the_real_smallest(tmp_path):
    proc = check(tmp_path, "v.arch", VALID_CONVS)
    assert_spec_error(proc, "E202", "v.arch:")
    # three valid 3×3 convs need 7×7 (the old note said 10×10: the doubled input, whose fc
    # size only 10×10 fits)
    assert "note: the network needs an input of at least 7×7 (it is 5×5)" in proc.stderr
    assert check(tmp_path, "v.arch", VALID_CONVS, "--input", "3x7x7").returncode == 0
    assert check(tmp_path, "v.arch", VALID_CONVS, "--input", "3x6x6").returncode == 1


# ----------------------------------------------------------------------------- item 19


USES = "network n:\n    input 3x32x32\n    basic(16) basic(16)\n    bottleneck(8)\n" \
       "    flatten FC-10\n"


def test_a_missing_import_is_one_error_with_one_note(tmp_path):
    proc = check(tmp_path, "uses.arch", 'import "missing_lib.arch"\n\n' + USES)
    assert_spec_error(proc, "E002", "uses.arch:1:1")
    assert "E101" not in proc.stderr
    assert proc.stderr.count("names from `missing_lib.arch` are unavailable") == 1
    assert "`basic`, `bottleneck`" in proc.stderr


def test_an_import_with_syntax_errors_notes_the_names_once(tmp_path):
    (tmp_path / "broken.arch").write_text("block basic(c):\n    conv3-{c} [[\n")
    proc = check(tmp_path, "uses.arch", 'import "broken.arch"\n\n' + USES)
    assert_spec_error(proc, "E001", "broken.arch:2:")
    assert "E101" not in proc.stderr and "`basic`, `bottleneck`" in proc.stderr


def test_without_a_failed_import_unknown_names_are_still_errors(tmp_path):
    proc = check(tmp_path, "uses.arch", USES)
    assert proc.stderr.count("error[E101]") == 3


# ----------------------------------------------------------------------------- item 20


def test_a_tab_indented_line_gets_a_tab_hint_and_the_caret_under_the_word(tmp_path):
    text = "network n:\n    input 3x32x32\n    conv3-8 relu\n\t    flatten FC-10\n"
    proc = check(tmp_path, "tab.arch", text)
    assert_spec_error(proc, "E001", "tab.arch:4:6")  # the 6th character: `f`
    lines = proc.stderr.splitlines()
    quoted = next(line for line in lines if line.startswith("4 |"))
    caret = lines[lines.index(quoted) + 1]
    # the tab shows as the 4 columns the indenter counts; the caret starts under `flatten`
    assert quoted.index("flatten") == caret.index("^")
    assert caret.count("^") == len("flatten")
    assert "indented with a tab" in proc.stderr


def test_mixed_tabs_elsewhere_are_named_in_the_hint(tmp_path):
    text = "network n:\n\tinput 3x32x32\n\tconv3-8 relu\n      flatten FC-10\n"
    proc = check(tmp_path, "mixed.arch", text)
    assert proc.returncode == 1 and "tabs" in proc.stderr and location(proc.stderr)


# ----------------------------------------------------------------------------- item 21


def test_googlenet_gives_the_inference_and_the_training_macs(tmp_path):
    proc = run_archc("check", REPO / "specs" / "googlenet.arch")
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if "compute:" in line)
    assert re.search(r"compute: 1\.50 GMACs at inference, 1\.51 GMACs in training", line)
    data = json.loads(run_archc("check", REPO / "specs" / "googlenet.arch", "--json").stdout)
    assert data["macs"] == 1_498_376_192 and data["macs_training"] == 1_506_748_416


# ----------------------------------------------------------------------------- item 22


def test_a_residual_box_does_not_count_the_projection_drawn_beside_it(tmp_path):
    proc = run_archc("graph", REPO / "specs" / "resnet18.arch", "--depth", "2", "-o",
                     tmp_path / "r.dot")
    assert proc.returncode == 0, proc.stderr
    dot = (tmp_path / "r.dot").read_text()
    box = re.search(r'"layer2\.0" \[label=<.*?· ([\d.]+K) params', dot).group(1)
    projection = re.search(r'"layer2\.0/shortcut" \[label=<.*?>([\d.]+K) params', dot).group(1)
    # 3×3 convs 64→128 and 128→128 with their BNs; the 1×1 projection with its BN
    assert (box, projection) == ("222K", "8.45K")
