"""`archc summary`: per-layer shapes, counts, memory, and receptive fields worked by hand."""
from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import archc
from archc.backends.summary import format_table, summarize, to_json

SPECS = Path(__file__).resolve().parents[1] / "specs"


@functools.cache
def load(name: str):
    """A checked reference network, loaded once per test session."""
    return archc.load(SPECS / f"{name}.arch")


def by_path(name: str) -> dict:
    """The summary rows of a reference network by module path."""
    return {row.path: row for row in summarize(load(name))}


def windows(name: str) -> list[tuple[str, int, int]]:
    """(kind, RF, jump) of every conv and pool, in order, for square fields."""
    out = []
    for row in summarize(load(name)):
        if row.kind in ("conv", "maxpool"):
            assert row.rf[0] == row.rf[1] and row.jump[0] == row.jump[1]
            out.append((row.kind, row.rf[0], row.jump[0]))
    return out


# --------------------------------------------------------------------------- receptive field
# rf_out = rf_in + dilation·(k − 1)·jump_in ;  jump_out = jump_in · stride ;  input: rf 1, jump 1


def test_alexnet_receptive_fields_by_hand():
    assert windows("alexnet") == [
        ("conv", 11, 4),      # conv1 11/4:  1 + 10·1 = 11,   jump 1·4 = 4
        ("maxpool", 19, 8),   # pool 3/2:   11 + 2·4  = 19,   jump 4·2 = 8
        ("conv", 51, 8),      # conv2 5:    19 + 4·8  = 51
        ("maxpool", 67, 16),  # pool 3/2:   51 + 2·8  = 67,   jump 8·2 = 16
        ("conv", 99, 16),     # conv3 3:    67 + 2·16 = 99
        ("conv", 131, 16),    # conv4 3:    99 + 2·16 = 131
        ("conv", 163, 16),    # conv5 3:   131 + 2·16 = 163
        ("maxpool", 195, 32),  # pool 3/2: 163 + 2·16 = 195,  jump 16·2 = 32
    ]
    rows = by_path("alexnet")
    assert rows["features.1"].rf == (11, 11)  # relu keeps the field of conv1
    # adaptive-avgpool(6) on a 6×6 map is a 1×1 window: nothing changes
    assert (rows["avgpool"].rf, rows["avgpool"].jump, rows["avgpool"].rf_global) == (
        (195, 195), (32, 32), False)
    # the first FC sees every position of the 6×6 map: the whole image
    assert rows["classifier.1"].rf_global and rows["classifier.6"].rf_global
    assert not rows["features.12"].rf_global


def test_vgg_d_receptive_fields_by_hand():
    conv, pool = "conv", "maxpool"
    assert windows("vgg_d") == [
        (conv, 3, 1), (conv, 5, 1),                  # 1+2·1 = 3, 3+2·1 = 5
        (pool, 6, 2),                                # 5 + 1·1 = 6,   jump 2
        (conv, 10, 2), (conv, 14, 2),                # 6+2·2 = 10, 10+2·2 = 14
        (pool, 16, 4),                               # 14 + 1·2 = 16, jump 4
        (conv, 24, 4), (conv, 32, 4), (conv, 40, 4),  # +2·4 each
        (pool, 44, 8),                               # 40 + 1·4 = 44, jump 8
        (conv, 60, 8), (conv, 76, 8), (conv, 92, 8),  # +2·8 each
        (pool, 100, 16),                             # 92 + 1·8 = 100, jump 16
        (conv, 132, 16), (conv, 164, 16), (conv, 196, 16),  # +2·16 each
        (pool, 212, 32),                             # 196 + 1·16 = 212, jump 32
    ]


def test_merges_take_the_widest_branch():
    rows = by_path("resnet18")
    # layer2.0: main branch conv3×3/2 then conv3×3 (rf 43 → 51 → 67), projection 1×1/2 (43)
    assert rows["layer2.0.downsample.0"].rf == (43, 43)
    assert rows["layer2.0.conv2"].rf == (67, 67)
    assert rows["layer2.0.6"].rf == (67, 67) and rows["layer2.0.6"].jump == (8, 8)
    g = by_path("googlenet")
    # inception3a at jump 8 from rf 27: 1×1 keeps 27, 3×3 and the 3×3 pool give 27+2·8 = 43
    assert g["inception3a.branch1.conv"].rf == (27, 27)
    assert g["inception3a.branch2.1.conv"].rf == (43, 43)
    # after the concat the next 1×1 sees the widest branch
    assert g["inception3b.branch1.conv"].rf == (43, 43)


def test_taps_do_not_change_the_main_path():
    g = by_path("googlenet")
    # aux1 taps inception4a; inception4b's 1×1 starts from inception4a's field, not the head's
    assert g["inception4b.branch1.conv"].rf == g["inception4a.branch2.1.conv"].rf
    assert g["aux1.conv.conv"].rf[0] > g["inception4a.branch2.1.conv"].rf[0]
    assert g["aux1.fc2"].rf_global


def test_global_pooling_sees_the_whole_input():
    rows = by_path("resnet18")
    assert rows["avgpool"].rf_global and rows["fc"].rf_global
    assert not rows["layer4.1.5"].rf_global
    assert rows["layer4.1.5"].jump == (32, 32)


# --------------------------------------------------------------------------- counts


@pytest.mark.parametrize("spec", ["alexnet", "vgg_d", "resnet50", "googlenet"])
def test_rows_add_up_to_the_network(spec):
    net = load(spec)
    rows = summarize(net)
    assert sum(r.params for r in rows) == net.n_params
    assert sum(r.macs for r in rows) == net.macs
    assert len(rows) == len(list(archc.compiler.graph.layers(net.root)))
    for row in rows:
        assert row.act_bytes == 4 * math.prod(row.out_shape)


def test_depth_follows_the_nesting():
    rows = by_path("resnet18")
    assert rows["conv1"].depth == 0
    assert rows["layer1.0.conv1"].depth == 2
    assert rows["layer2.0.downsample.0"].depth == 3


# --------------------------------------------------------------------------- text and json


def test_table_reads_like_a_summary():
    net = load("resnet18")
    text = format_table(summarize(net), net)
    assert "\x1b" not in text  # plain text: no colour codes in pipes and tests
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("Layer"))
    for column in ("Kind", "Hyper-params", "Output", "Params", "MACs", "Act. mem", "RF", "Stride"):
        assert column in header
    assert any(line.startswith("  layer1.0: basic(c=64, stride=1)") for line in lines)
    assert any(line.startswith("    conv1") and "3×3, 64" in line for line in lines)
    assert "Total params:               11,689,512" in text
    assert "Trainable params:           11,689,512" in text
    assert "Total MACs:                 1.81G" in text
    assert "Parameter memory:           46.76 MB (float32)" in text
    assert "Input:                      3×224×224" in text
    fc = next(line for line in lines if line.startswith("fc "))
    assert fc.split()[-2:] == ["global", "-"]


def test_table_marks_aux_heads():
    net = load("googlenet")
    text = format_table(summarize(net), net)
    assert "aux1: aux_head(num_classes=1000)" in text
    assert "training only" in text
    assert "training also: aux1 1000, aux2 1000" in text


def test_cli_json_matches_to_json():
    archc_bin = Path(sys.executable).parent / "archc"
    done = subprocess.run([str(archc_bin), "summary", str(SPECS / "alexnet.arch"), "--json"],
                          check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    net = load("alexnet")
    assert data == to_json(summarize(net), net)
    assert data["network"] == "alexnet" and data["input"] == [3, 224, 224]
    assert data["totals"]["params"] == net.n_params and data["totals"]["macs"] == net.macs
    conv1 = data["layers"][0]
    assert (conv1["path"], conv1["rf"], conv1["jump"]) == ("features.0", [11, 11], [4, 4])
    assert conv1["act_bytes"] == 4 * 64 * 55 * 55


def test_a_dotted_label_is_one_level_below_its_scope(tmp_path):
    """`convs.0:` sits in containers, but the table indents it as its siblings, by scope."""
    spec = tmp_path / "dotted.arch"
    spec.write_text("block unit:\n    convs.0: conv3-8  relu  deep.a.b: [conv1-8 bn]\n\n"
                    "network n:\n    input 3x8x8\n    body: unit\n    flatten  FC-10\n",
                    encoding="utf-8")
    rows = {r.path: r for r in summarize(archc.load(spec))}
    assert rows["body.convs.0"].depth == rows["body.1"].depth == 1
    assert rows["body.deep.a.b.0"].depth == 2
    lines = format_table(list(rows.values()), archc.load(spec)).splitlines()
    assert "  body.deep.a.b  → 8×8×8, 88 params" in lines


def test_pixel_attention_sees_the_whole_input():
    """Every pixel attends to every other one: the field is global from there on, as after
    a token self-attention."""
    text = "network t:\n    input 3x16x16\n    conv3-12 attend: pixel-attention(2, 2) conv1-4\n"
    rows = {row.path: row for row in summarize(archc.check("t.arch", text=text).network)}
    assert not rows["0"].rf_global
    assert rows["attend"].rf_global and rows["2"].rf_global
