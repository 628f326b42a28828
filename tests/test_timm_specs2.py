"""The family specs of specs/timm/ (second set: CSPNet, SKNet, ResNeSt, NF-ResNet,
Inception-v4/Inception-ResNet-v2, DLA, HRNet, Res2Net) against timm 1.0.31: the smallest member of
each family verifies exact (parameters, strict state_dict loading, outputs after every norm
is randomised), and every spec is shorter than timm's Python for it."""
from __future__ import annotations

from pathlib import Path

import pytest

import archc
from archc.tools.verify import describe, verify
from archc.zoo import load_zoo

ROOT = Path(__file__).resolve().parent.parent
TIMM = ROOT / "specs" / "timm"
INDEX = load_zoo(TIMM / "index.yaml", oracle="timm")

# spec file -> the timm model modules it writes
FAMILIES = {
    "cspnet.arch": ("cspnet",),
    "sknet.arch": ("sknet",),
    "nfnet.arch": ("nfnet",),
    "inception_v4.arch": ("inception_v4",),
    "inception_resnet_v2.arch": ("inception_resnet_v2",),
    "dla.arch": ("dla",),
    "hrnet.arch": ("hrnet",),
    "res2net.arch": ("res2net",),
    "resnest.arch": ("resnest",),
}
# the smallest member of each family: checked in the fast lane
FAST = ("cspresnet50", "darknet17", "cs3darknet_s", "skresnet18", "nf_resnet26",
        "nf_ecaresnet26", "inception_v4", "inception_resnet_v2", "dla34", "dla46x_c",
        "hrnet_w18_small", "res2net50_26w_4s", "resnest14d")
SLOW: tuple[str, ...] = ("cspdarknet53", "skresnext50_32x4d", "hrnet_w18_small_v2",
                         "res2net50_48w_2s", "res2next50", "res2net50d",
                         "resnest50d_4s2x40d", "resnest50d_1s4x24d")


@pytest.mark.parametrize("name", FAST)
def test_the_smallest_member_is_exact_against_timm(name):
    report = verify(INDEX[name])
    assert report.exact, describe(report)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_the_other_members_are_exact_against_timm(name):
    report = verify(INDEX[name])
    assert report.exact, describe(report)


@pytest.mark.parametrize("spec", sorted(FAMILIES))
def test_each_spec_checks_clean_and_is_shorter_than_timms_python(spec):
    import timm

    path = TIMM / spec
    result = archc.check(path)
    assert result.ok and not result.diagnostics, result.diagnostics
    models = Path(timm.__file__).parent / "models"
    theirs = sum(len((models / f"{m}.py").read_text().splitlines()) for m in FAMILIES[spec])
    assert len(path.read_text().splitlines()) < theirs


def test_every_member_in_the_index_checks():
    mine = [e for e in INDEX.values() if e.spec.name in FAMILIES]
    assert mine
    for entry in mine:
        assert archc.check(entry.spec, network=entry.network).ok, entry.name


def test_a_parameter_read_by_only_some_calls_of_a_block_is_used(tmp_path):
    """W303 is about the block, not one call: CSPNet's stage reads `grow` only where it
    strides, and its unstrided first stage must not make it look unused."""
    spec = tmp_path / "some_calls.arch"
    spec.write_text(
        "block down(c, stride, grow):\n"
        "    if stride != 1:\n"
        "        conv3-{c if grow else in_channels}(stride=stride)\n"
        "    conv1-{c}\n"
        "\n"
        "block unread(c, spare):\n"
        "    conv1-{c}\n"
        "\n"
        "network n:\n"
        "    input 3x32x32\n"
        "    down(16, 1, false)\n"
        "    down(32, 2, true)\n"
        "    unread(8, 1)\n"
        "    unread(8, 2)\n",
        encoding="utf-8",
    )
    result = archc.check(spec)
    assert result.ok
    warned = [d for d in result.diagnostics if d.code == "W303"]
    assert len(warned) == 1 and "`spare`" in warned[0].message


def test_a_parameter_read_only_by_a_skipped_item_is_used(tmp_path):
    """A family's network reads some parameters only for other members (SKNet's
    `base_width` only where `if deep:` holds): no W303 for the member that skips them."""
    spec = tmp_path / "skipped.arch"
    spec.write_text(
        "network n(deep=false, width=64, spare=1):\n"
        "    input 3x32x32\n"
        "    if deep: conv1-{width}\n"
        "    conv3-{width // 2} x{int(deep)}\n"
        "    conv3-8\n",
        encoding="utf-8",
    )
    result = archc.check(spec)
    assert result.ok
    assert [d.message for d in result.diagnostics if d.code == "W303"] == [
        "parameter `spare` is never used"]
