"""Hostile specs against the documented limits (issue 11, items 3, 4, 5, 6, 7 and 14): each
fails at once with one located E205 (or E004) error, exit 1, no traceback, nothing written,
inside the memory and CPU limits of `run_archc` (the kernel kills a blow-up, which fails the
test as a crash rather than as a slow test)."""

from __future__ import annotations

import json

import pytest

from .conftest import assert_one_line_error, assert_spec_error, run_archc, tree_state

# Small enough that a blow-up (GBs, minutes) is killed; ample for a correct check (~60 MB).
MEM_MB, CPU_S = 600, 20


def check(tmp_path, name: str, text: str, *extra: str):
    """Write `text` to tmp_path/name, run `archc check` on it there, and assert that nothing
    on disk changed. Returns the finished process."""
    (tmp_path / name).write_text(text)
    before = tree_state(tmp_path)
    proc = run_archc("check", name, *extra, cwd=tmp_path, mem_mb=MEM_MB, cpu_s=CPU_S)
    assert tree_state(tmp_path) == before
    return proc


def network(*lines: str, input: str = "3x32x32") -> str:
    """A network `n` with the given body lines."""
    return "network n:\n    input " + input + "\n" + "".join(f"    {line}\n" for line in lines)


# ----------------------------------------------------------------------------- item 3, 7: YAML


def _laughs(levels: int) -> str:
    lines = ["- network: laughs", "  input: [3, 32, 32]", "  body:",
             "    - &a0 [relu, relu, relu, relu, relu, relu, relu, relu, relu]"]
    lines += [f"    - &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("verb", ["check", "convert"])
def test_billion_laughs_is_refused_at_the_yaml_node_limit(tmp_path, verb):
    text = _laughs(9)  # 9**9 = 387 million relus from a few hundred bytes
    assert len(text.encode()) < 600
    (tmp_path / "laughs.yaml").write_text(text)
    before = tree_state(tmp_path)
    args = ("--to", "arch") if verb == "convert" else ()
    proc = run_archc(verb, "laughs.yaml", *args, cwd=tmp_path, mem_mb=MEM_MB, cpu_s=CPU_S)
    assert tree_state(tmp_path) == before
    assert "E205" in assert_one_line_error(proc, 1)
    assert "more than 200,000 items" in proc.stderr
    assert "--limit yaml_nodes=" in proc.stderr


def test_a_few_laughs_within_the_limit_still_check(tmp_path):
    proc = check(tmp_path, "laughs.yaml", _laughs(3))  # 729 relus
    assert proc.returncode == 0, proc.stderr


def test_yaml_alias_inside_its_own_anchor_is_a_located_error(tmp_path):
    text = "- network: n\n  input: [3, 32, 32]\n  body: &b [relu, *b]\n"
    proc = check(tmp_path, "selfref.yaml", text)
    headline = assert_spec_error(proc, "E004", "selfref.yaml:3:9")
    assert "refers to the anchored item that contains it" in headline


def test_deeply_nested_yaml_lists_hit_the_depth_limit(tmp_path):
    body = "[" * 300 + "relu" + "]" * 300
    proc = check(tmp_path, "deep.yaml", f"- network: n\n  input: [3, 32, 32]\n  body: {body}\n")
    assert_spec_error(proc, "E205", "deep.yaml:3:")
    assert "nests more than 100 levels" in proc.stderr


# ----------------------------------------------------------------------------- item 7: .arch depth


def test_300_nested_brackets_hit_the_depth_limit(tmp_path):
    proc = check(tmp_path, "deep.arch", network("[" * 300 + "relu" + "]" * 300))
    assert_spec_error(proc, "E205", "deep.arch:3:")
    assert "nests more than 100 levels deep" in proc.stderr


def test_nesting_at_the_limit_still_checks(tmp_path):
    proc = check(tmp_path, "deep.arch", network("[" * 99 + "relu" + "]" * 99))
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_one_level_over_the_limit_is_refused(tmp_path):
    proc = check(tmp_path, "deep.arch", network("[" * 101 + "relu" + "]" * 101))
    assert_spec_error(proc, "E205", "deep.arch:3:")


def test_the_depth_limit_can_be_raised(tmp_path):
    proc = check(tmp_path, "deep.arch", network("[" * 150 + "relu" + "]" * 150),
                 "--limit", "depth=200")
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_a_long_expression_chain_hits_the_depth_limit(tmp_path):
    proc = check(tmp_path, "sum.arch", network("conv3-{" + "+".join(["1"] * 400) + "}"))
    assert_spec_error(proc, "E205", "sum.arch:3:")


def test_a_chain_of_blocks_calling_blocks_hits_the_depth_limit(tmp_path):
    blocks = "".join(f"block b{i}:\n    b{i + 1}\n" for i in range(150)) + "block b150:\n    relu\n"
    proc = check(tmp_path, "chain.arch", blocks + network("b0"))
    assert_spec_error(proc, "E205", "chain.arch:")
    assert "blocks call blocks more than 100 levels deep" in proc.stderr


def test_check_of_several_files_reports_every_file_when_one_is_too_deep(tmp_path):
    (tmp_path / "a.arch").write_text(network("relu"))
    (tmp_path / "b.arch").write_text(network("[" * 300 + "relu" + "]" * 300))
    (tmp_path / "c.arch").write_text(network("conv3-8"))
    proc = run_archc("check", "a.arch", "b.arch", "c.arch", "--json", cwd=tmp_path,
                     mem_mb=MEM_MB, cpu_s=CPU_S)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    report = json.loads(proc.stdout)
    assert [(r["spec"], r["ok"]) for r in report] == [
        ("a.arch", True), ("b.arch", False), ("c.arch", True)]
    assert [d["code"] for d in report[1]["diagnostics"]] == ["E205"]


# ----------------------------------------------------------------------------- item 4: repeats


@pytest.mark.parametrize(
    "line, where",
    [
        ("relu x1000000000", "big.arch:3:11"),
        ("[[relu x1000] x1000] x1000", "big.arch:3:"),
        ("relu x{10**12}", "big.arch:3:12"),
    ],
    ids=["flat", "nested", "computed"],
)
def test_huge_repeats_are_refused_before_expanding(tmp_path, line, where):
    proc = check(tmp_path, "big.arch", network(line))
    headline = assert_spec_error(proc, "E205", where)
    assert "200,000" in headline and "--limit layers=" in proc.stderr


def test_the_layer_limit_can_be_raised_and_lowered(tmp_path):
    proc = check(tmp_path, "big.arch", network("relu x300000"), "--limit", "layers=400000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = check(tmp_path, "small.arch", network("relu x30"),
                 "--limit", "layers=10")
    assert_spec_error(proc, "E205", "small.arch:3:")


# ----------------------------------------------------------------------------- item 5: input


def test_a_huge_input_option_is_one_line(tmp_path):
    proc = check(tmp_path, "ok.arch", network("conv3-8 relu"),
                 "--input", "3x100000000x100000000")
    line = assert_one_line_error(proc, 2)
    assert "over the limit of 65,536" in line


def test_a_huge_declared_input_is_located(tmp_path):
    proc = check(tmp_path, "big.arch", network("conv3-8 relu", input="3x100000000x100000000"))
    assert_spec_error(proc, "E205", "big.arch:2:")


def test_the_input_size_scan_does_not_grow_with_the_input(tmp_path):
    # with the limit raised, a 10^8 side must still check at once: the scan of valid input
    # sizes tries a window around the declared size, not every size up to it
    proc = check(tmp_path, "gap.arch", network("conv3-8 relu maxpool", "global-avgpool"),
                 "--limit", "input_size=1e9", "--input", "3x100000000x100000000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "valid input sizes: any H×W ≥ 2×2" in proc.stdout


# ----------------------------------------------------------------------------- item 14: params


def test_a_trillion_channel_conv_is_refused_at_check(tmp_path):
    proc = check(tmp_path, "wide.arch", network("conv3-1000000000000 relu"))
    headline = assert_spec_error(proc, "E205", "wide.arch:3:5")
    assert "over the limit of 2,000,000,000" in headline
    assert "--limit params=" in proc.stderr


def test_the_parameter_limit_can_be_raised(tmp_path):
    proc = check(tmp_path, "wide.arch", network("conv3-1000000000000 relu"),
                 "--limit", "params=1e15")
    assert proc.returncode == 0 and "28,000,000,000,000" in proc.stdout


def test_limits_come_from_the_environment_too(tmp_path):
    (tmp_path / "n.arch").write_text(network("relu x30"))
    proc = run_archc("check", "n.arch", cwd=tmp_path, env={"ARCHC_LIMITS": "layers=10"},
                     mem_mb=MEM_MB, cpu_s=CPU_S)
    assert_spec_error(proc, "E205", "n.arch:3:")


@pytest.mark.parametrize("setting", ["bogus=1", "layers=0", "layers=ten", "layers"])
def test_a_bad_limit_setting_is_a_usage_error(tmp_path, setting):
    proc = check(tmp_path, "n.arch", network("relu"), "--limit", setting)
    assert "limit" in assert_one_line_error(proc, 2)


# ----------------------------------------------------------------------------- item 6: file size


def test_a_spec_over_the_file_size_limit_is_refused_before_reading(tmp_path):
    text = network(*["relu"] * 200)
    proc = check(tmp_path, "long.arch", text, "--limit", "file_bytes=1000")
    headline = assert_one_line_error(proc, 1)
    assert headline.startswith("error[E205]") and f"is {len(text):,} bytes" in headline


# ----------------------------------------------------------------------------- item 6: n² costs


def test_thousands_of_problems_cost_linear_time(tmp_path):
    # 6,000 unknown names and 6,000 unused blocks: the duplicate test of the diagnostics
    # collector, the quoting of source lines and the 'did you mean' scans were each n² here
    # (8,000 problems took over 200 s); linear, this is a few seconds, far inside the limit
    blocks = "".join(f"block unused{i}:\n    relu\n" for i in range(6000))
    body = "".join(f"    nosuch{i}\n" for i in range(6000))
    proc = check(tmp_path, "many.arch", blocks + "network n:\n    input 3x8x8\n" + body)
    assert proc.returncode == 1
    assert proc.stderr.count("error[E101]") == 6000
    assert proc.stderr.rstrip().endswith("6000 errors")


def test_nested_merges_cost_linear_time(tmp_path):
    # each `add:` body was built twice (once as a body, once as branches): 2^n for n nested
    # merges, so 18 took 19 s and 40 would never finish; built once, this is instant
    lines, indent = [], ""
    for _ in range(40):
        lines += [indent + "add:", indent + "    relu"]
        indent += "    "
    proc = check(tmp_path, "nested.arch", network(*lines, indent + "relu"))
    assert proc.returncode == 0, proc.stderr
