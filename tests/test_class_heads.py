"""The classifier heads are declared: the checker marks the layers that follow `num_classes`.

A layer is a head when an argument's expression reads `num_classes`, directly or through
network defaults, aliases, block arguments and defaults, loop rows and table rows; a layer
whose input follows the class count (a norm or pool over the class scores) is marked too.
The mark comes from what the spec reads: a layer whose size only equals the class count is
never marked. `--init` re-initialises every marked layer whose tensors change shape.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import archc
from archc.backends.module import to_module
from archc.backends.weights import InitError, apply_init, class_heads
from archc.compiler.graph import layers

REPO = Path(__file__).resolve().parents[1]

ROUTES = """
block head(classes, wide=classes * 2):
    fc: FC-{wide}

table body:
    small: conv3-8 relu conv1-{num_classes} relu
    big: conv3-16 relu

network net(num_classes=1000, variant="small", hidden=num_classes * 4):
    input 3x16x16
    stem: conv3-1000 relu
    for c in (8, num_classes):
        conv1-{c}
    features: body[variant]
    pool: global-avgpool
    flatten
    hid: FC-{hidden}
    bottleneck: FC-1000 relu
    h: head(num_classes)
    tail: FC-10 relu FC-7

network alias = net(hidden=num_classes * 3)
"""


def load(tmp_path: Path, text: str, **params) -> archc.Network:
    spec = tmp_path / "spec.arch"
    spec.write_text(text)
    return archc.load(spec, **params)


def marked(net: archc.Network) -> list[str]:
    return [layer.path for layer in net.class_heads or ()]


def test_every_route_of_num_classes_marks_its_layers(tmp_path):
    net = load(tmp_path, ROUTES, num_classes=5)
    assert marked(net) == [
        "3",  # the loop's row `num_classes`; its row 8 ("2") is not marked
        "features.0", "features.2", "features.3",  # a table row; the conv over its output
        "pool", "6",  # pool and flatten over the class channels
        "hid", "bottleneck",  # a network default `num_classes * 4`, and the fc it feeds
        "h.fc",  # a block argument, and the block's default computed from it
        "tail",  # an fc of fixed size fed by the head: its input follows, its output not
    ]
    by_path = {layer.path: layer for layer in layers(net.root)}
    assert by_path["h.fc"].classes.args == {"out"}
    assert (by_path["h.fc"].params["out"], by_path["h.fc"].classes.params["out"]) == (10, 12)
    assert by_path["hid"].classes.params["out"] == 24
    assert by_path["pool"].classes.args == frozenset()
    assert by_path["pool"].classes.in_shape == (6, 16, 16)
    assert by_path["tail"].classes.in_shape == (12,)
    # an alias binds the default anew: `num_classes * 3`
    aliased = archc.load(tmp_path / "spec.arch", network="alias", num_classes=5)
    hid = next(layer for layer in layers(aliased.root) if layer.path == "hid")
    assert (hid.params["out"], hid.classes.params["out"]) == (15, 18)
    assert archc.classifier_heads(net) == tuple(marked(net))


COINCIDENT = """
network n(num_classes=1000):
    input 3x8x8
    stem: conv3-1000 relu
    conv1-64
    global-avgpool flatten
    hidden: FC-1000 relu
    fc: FC-{num_classes}
"""


def test_a_size_that_equals_the_class_count_is_not_a_head(tmp_path):
    """At 1000 classes, `conv3-1000` and `FC-1000` have the class count's size; a rule that
    compared sizes would take them for heads."""
    net = load(tmp_path, COINCIDENT)
    sized = [layer.path for layer in layers(net.root) if layer.out_shape[0] == 1000]
    assert sized == ["stem", "1", "hidden", "6", "fc"]  # what a size rule would mark
    assert marked(net) == ["fc"]
    assert marked(load(tmp_path, COINCIDENT, num_classes=7)) == ["fc"]


def test_a_network_without_num_classes_has_no_heads(tmp_path):
    net = load(tmp_path, "network plain(width=10):\n    input 3x8x8\n    conv3-8 relu\n"
                         "    global-avgpool flatten\n    fc: FC-{width}\n")
    assert net.class_heads is None and class_heads(net) is None
    assert archc.classifier_heads(net) == ()
    assert all(layer.classes is None for layer in layers(net.root))
    unread = load(tmp_path, "network n(num_classes=3):\n    input 3x8x8\n    conv3-8 relu\n"
                            "    global-avgpool flatten\n    fc: FC-10\n")
    assert unread.class_heads == () and archc.classifier_heads(unread) == ()


STRUCTURE = """
network n(num_classes=5):
    input 3x8x8
    conv3-8 relu
    if num_classes > 2:
        conv3-8 relu
    global-avgpool flatten
    fc: FC-{num_classes}
"""


def test_when_the_class_count_changes_the_structure_the_heads_cannot_be_told(tmp_path):
    assert marked(load(tmp_path, STRUCTURE)) == ["fc"]  # 5 and 6 classes: the same layers
    assert load(tmp_path, STRUCTURE, num_classes=2).class_heads is None  # 2 and 3: not
    repeated = STRUCTURE.replace("if num_classes > 2:\n        conv3-8 relu",
                                 "relu x{num_classes}")
    assert load(tmp_path, repeated).class_heads is None


SCORES = """
network over_scores(num_classes=1000):
    input 3x16x16
    features: conv3-16 relu
    classifier: [conv1-{num_classes} bn relu global-avgpool]
    flatten
"""


def _randomised(net: archc.Network, seed: int) -> torch.nn.Module:
    model = to_module(net)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(torch.rand(tensor.shape, generator=gen) + 0.5)
    return model


def test_init_renews_the_head_and_the_norm_over_its_scores(tmp_path):
    """A bn over the class channels (SqueezeNet's conv → relu → pool, with a norm) has
    tensors of the class count's size: they are new, like the head's; the rest loads."""
    imagenet = _randomised(load(tmp_path, SCORES), seed=1).state_dict()
    net = load(tmp_path, SCORES, num_classes=5)
    assert marked(net) == ["classifier.0", "classifier.1", "classifier.2", "classifier.3", "3"]
    model = _randomised(net, seed=2)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    notes = apply_init(model, imagenet, net)
    assert notes == [
        "re-initialised classifier.0 (num_classes 1000 → 5); new tensors: "
        "classifier.0.weight, classifier.0.bias",
        "re-initialised classifier.1 (num_classes 1000 → 5); new tensors: "
        "classifier.1.weight, classifier.1.bias, classifier.1.running_mean, "
        "classifier.1.running_var, classifier.1.num_batches_tracked",
    ]
    for key, value in model.state_dict().items():
        want = fresh[key] if key.startswith("classifier.") else imagenet[key]
        torch.testing.assert_close(value, want, rtol=0, atol=0)


WIDE = """
network wide(num_classes=1000):
    input 3x8x8
    conv3-8 relu global-avgpool flatten
    fc: FC-{num_classes * 2}
"""


def test_init_into_a_head_of_twice_the_classes(tmp_path):
    imagenet = _randomised(load(tmp_path, WIDE), seed=1).state_dict()
    net = load(tmp_path, WIDE, num_classes=5)
    model = to_module(net)
    assert model.fc.out_features == 10
    notes = apply_init(model, imagenet, net)
    assert notes == ["re-initialised fc (num_classes 1000 → 5); new tensors: fc.weight, fc.bias"]
    torch.testing.assert_close(model.state_dict()["0.weight"], imagenet["0.weight"])
    odd = {**imagenet, "fc.weight": torch.zeros(2001, 8), "fc.bias": torch.zeros(2001)}
    with pytest.raises(InitError, match="2 with the wrong shape"):  # no class count gives 2001
        apply_init(to_module(net), odd, net)


def test_marking_the_heads_imports_no_torch(tmp_path):
    spec = tmp_path / "spec.arch"
    spec.write_text(ROUTES)
    code = ("import sys, archc; net = archc.load(sys.argv[1], num_classes=3); "
            "assert archc.classifier_heads(net); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code, str(spec)], cwd=REPO, check=True)


READS_ITS_INPUT = """
block widen(factor):
    conv1-{in_channels * factor}

network n(num_classes=5):
    input 3x8x8
    stem: widen(2)
    conv1-{num_classes}
    {where}
    global-avgpool flatten
"""


def test_a_block_that_reads_the_size_of_the_class_scores_makes_the_heads_untold(tmp_path):
    """`in_channels` inside a block is the size that reaches it: after the head, the class
    count flows into the block's arithmetic, which the checker does not follow."""
    before = load(tmp_path, READS_ITS_INPUT.replace("{where}", "relu"))
    assert marked(before) == ["1", "2", "3", "4"]  # `widen` before the head: nothing follows
    after = load(tmp_path, READS_ITS_INPUT.replace("{where}", "widen(2)"))
    assert after.class_heads is None and class_heads(after) is None


FOLDED = """
network folded(num_classes=4):
    input 3x8x8
    conv3-8 bn relu
    global-avgpool flatten
    fc: FC-{num_classes}
    bn
"""


def test_the_inference_source_keeps_num_classes_after_the_fold(tmp_path):
    """The fold drops the bn after the head into it (now with a bias): the folded network's
    heads are its own, so its standalone source still takes `num_classes`."""
    from archc.backends.module import class_name
    from archc.passes.export import inference_python_source
    from archc.passes.fold import fold_for_inference

    net = load(tmp_path, FOLDED)
    assert marked(net) == ["fc", "6"]
    folded = fold_for_inference(net).network
    assert marked(folded) == ["fc"] and folded.class_heads[0].classes.params["bias"] is True
    source = inference_python_source(net)
    assert "def __init__(self, num_classes: int = 4)" in source
    scope: dict = {}
    exec(compile(source, "<folded>", "exec"), scope)  # noqa: S102
    model = scope[class_name(net.name)](num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 8, 8)).shape == (2, 3)
