"""`--init`: torchvision weights or a weights file into a built spec, strictly and safely.

No test here downloads anything: torchvision's weights are stood in for by torchvision
modules with random weights, whose state_dicts have the same keys and shapes.
"""
from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

import archc
from archc.backends.module import to_module
from archc.backends.weights import (
    TORCHVISION_NAMES,
    InitError,
    apply_init,
    class_heads,
    init_model,
    load_file,
    save_weights,
    torchvision_name,
)

SPECS = Path(__file__).resolve().parents[1] / "specs"


def small_resnet18(num_classes: int):
    """resnet18.arch at a 32×32 input, and its module."""
    net = archc.load(SPECS / "resnet18.arch", num_classes=num_classes, input_shape=(3, 32, 32))
    return net, to_module(net)


def same_logits(a: torch.nn.Module, b: torch.nn.Module, shape=(3, 32, 32)) -> None:
    x = torch.randn(2, *shape)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x), b.eval()(x), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------- torchvision names

NAMED = [  # (spec file, load keywords, torchvision builder)
    ("alexnet.arch", {}, "alexnet"),
    ("googlenet.arch", {}, "googlenet"),
    ("resnet18.arch", {}, "resnet18"),
    ("resnet34.arch", {}, "resnet34"),
    ("resnet50.arch", {}, "resnet50"),
    ("resnet101.arch", {}, "resnet101"),
    ("resnet152.arch", {}, "resnet152"),
    ("vgg.arch", {"variant": "A"}, "vgg11"),
    ("vgg.arch", {"variant": "B"}, "vgg13"),
    ("vgg.arch", {}, "vgg16"),
    ("vgg.arch", {"variant": "E"}, "vgg19"),
    ("vgg.arch", {"network": "vgg_bn", "variant": "A"}, "vgg11_bn"),
    ("vgg.arch", {"network": "vgg_bn", "variant": "D"}, "vgg16_bn"),
    ("vgg_d.arch", {}, "vgg16"),
]


def test_every_mapped_name_is_a_torchvision_builder():
    builders = set(torchvision.models.list_models())
    for entry in TORCHVISION_NAMES.values():
        for name in entry.values() if isinstance(entry, dict) else [entry]:
            assert name in builders
            assert torchvision.models.get_model_weights(name).DEFAULT is not None


@pytest.mark.parametrize(("spec", "params", "builder"), NAMED,
                         ids=[f"{s}-{b}" for s, _, b in NAMED])
def test_the_mapped_builder_has_the_spec_keys(spec, params, builder):
    net = archc.load(SPECS / spec, **params)
    assert torchvision_name(net) == builder
    extra = {"aux_logits": True, "init_weights": False} if builder == "googlenet" else {}
    with torch.device("meta"):  # keys and shapes only: nothing allocated, nothing downloaded
        theirs = torchvision.models.get_model(builder, **extra).state_dict()
        mine = to_module(net, init="none").state_dict()
    assert {k: v.shape for k, v in mine.items()} == {k: v.shape for k, v in theirs.items()}


@pytest.mark.parametrize(("spec", "params"), [("googlenet_paper.arch", {}),
                                              ("vgg.arch", {"variant": "C"})])
def test_networks_without_torchvision_weights(spec, params):
    with pytest.raises(InitError, match="no pretrained weights"):
        torchvision_name(archc.load(SPECS / spec, **params))


# --------------------------------------------------------------------------- files


def test_safetensors_round_trip_from_torchvision(tmp_path):
    reference = torchvision.models.resnet18(num_classes=10)
    save_file(reference.state_dict(), str(tmp_path / "tv.safetensors"))
    net, model = small_resnet18(10)
    assert init_model(model, net, str(tmp_path / "tv.safetensors")) == []
    same_logits(model, reference)


@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_pt_files_load_with_weights_only(tmp_path, wrap):
    reference = torchvision.models.resnet18(num_classes=10)
    state = reference.state_dict()
    torch.save(state if wrap is None else {wrap: state, "epoch": 3}, tmp_path / "tv.pth")
    net, model = small_resnet18(10)
    assert init_model(model, net, str(tmp_path / "tv.pth")) == []
    same_logits(model, reference)


def _leave_marker(path: str) -> None:
    """What a malicious pickle would run; here it only creates a file."""
    Path(path).write_text("the pickle ran code", encoding="utf-8")


class Payload:
    """An object whose unpickling calls `_leave_marker`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (_leave_marker, (str(self.marker),))


def test_pickled_objects_are_refused_without_running_them(tmp_path):
    marker = tmp_path / "marker"
    torch.save({"fc.weight": torch.zeros(2, 2), "extra": Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(InitError, match="weights_only"):
        load_file(tmp_path / "evil.pt")
    assert not marker.exists()
    # The payload is live: an unrestricted unpickle does run it.
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert marker.exists()


def test_plain_pickle_files_are_refused_too(tmp_path):
    marker = tmp_path / "marker"
    (tmp_path / "evil.bin").write_bytes(pickle.dumps(Payload(marker), protocol=2))
    with pytest.raises(InitError):
        load_file(tmp_path / "evil.bin")
    assert not marker.exists()


def test_file_errors(tmp_path):
    net, model = small_resnet18(10)
    with pytest.raises(InitError, match="no such file"):
        init_model(model, net, str(tmp_path / "missing.safetensors"))
    (tmp_path / "weights.npz").write_bytes(b"")
    with pytest.raises(InitError, match="unknown suffix"):
        load_file(tmp_path / "weights.npz")
    (tmp_path / "broken.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(InitError, match="not a readable safetensors"):
        load_file(tmp_path / "broken.safetensors")
    torch.save({"epoch": 3}, tmp_path / "counters.pt")
    with pytest.raises(InitError, match="not tensors"):
        load_file(tmp_path / "counters.pt")


# --------------------------------------------------------------------------- strict loading


def test_missing_unexpected_and_shape_conflicts_are_named(tmp_path):
    net, model = small_resnet18(10)
    state = dict(model.state_dict())
    del state["layer1.0.bn1.weight"]
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    with pytest.raises(InitError) as info:
        apply_init(model, state, net, source="w.pt")
    message = str(info.value)
    assert "from w.pt: keys 1 missing, 1 unexpected, 1 with the wrong shape" in message
    assert "missing (1): layer1.0.bn1.weight" in message
    assert "unexpected (1): layer5.0.conv1.weight" in message
    assert "conv1.weight (file 64×3×3×3, model 64×3×7×7)" in message


def test_long_lists_are_cut_with_a_count():
    net, model = small_resnet18(10)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("layer4")}
    # layer4 has 30 keys; its 5 BN step counters are not required (see the next test)
    with pytest.raises(InitError, match=r"missing \(25\): layer4\.0\.conv1\.weight, .*\(20 more\)"):
        apply_init(model, state, net)


def test_a_file_without_bn_step_counters_still_loads():
    net, model = small_resnet18(10)
    reference = to_module(net)
    state = {k: v for k, v in reference.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    assert apply_init(model, state, net) == []
    same_logits(model, reference)


def test_head_is_reinitialised_when_only_num_classes_differs():
    imagenet = torchvision.models.resnet18()  # 1000 classes
    net, model = small_resnet18(2)
    fresh_fc = model.fc.weight.detach().clone()
    notes = apply_init(model, imagenet.state_dict(), net)
    assert notes == ["re-initialised fc (num_classes 1000 → 2); new tensors: fc.weight, fc.bias"]
    theirs = imagenet.state_dict()
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            continue
        torch.testing.assert_close(value, theirs[key], rtol=0, atol=0)
    torch.testing.assert_close(model.fc.weight, fresh_fc, rtol=0, atol=0)


def test_googlenet_reinitialises_every_classifier_head():
    imagenet = torchvision.models.googlenet(aux_logits=True, init_weights=False)
    net = archc.load(SPECS / "googlenet.arch", num_classes=5)
    model = to_module(net)
    notes = apply_init(model, imagenet.state_dict(), net)
    assert notes == [f"re-initialised {head} (num_classes 1000 → 5); new tensors: {head}.weight, "
                     f"{head}.bias" for head in ("aux1.fc2", "aux2.fc2", "fc")]
    torch.testing.assert_close(model.aux1.fc1.weight, imagenet.aux1.fc1.weight, rtol=0, atol=0)


def test_head_conflict_with_another_conflict_is_an_error():
    imagenet = torchvision.models.resnet18()
    state = dict(imagenet.state_dict())
    state["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    net, model = small_resnet18(2)
    with pytest.raises(InitError, match="3 with the wrong shape"):
        apply_init(model, state, net)


def test_head_with_other_input_features_is_an_error():
    net, model = small_resnet18(2)
    state = dict(model.state_dict())
    state["fc.weight"] = torch.zeros(1000, 256)
    state["fc.bias"] = torch.zeros(1000)
    with pytest.raises(InitError, match=r"fc\.weight \(file 1000×256, model 2×512\)"):
        apply_init(model, state, net)


def test_heads_are_found_by_resolving_again():
    heads = class_heads(archc.load(SPECS / "googlenet.arch", num_classes=5))
    assert heads is not None and heads.num_classes == 5
    assert sorted(heads.layers) == ["aux1.fc2", "aux2.fc2", "fc"]
    assert class_heads(archc.load(SPECS / "vgg_d.arch")).layers.keys() == {"classifier.6"}


def test_save_weights_round_trip(tmp_path):
    net, model = small_resnet18(10)
    path = save_weights(model, tmp_path / "w.safetensors", net)
    other = to_module(net)
    assert init_model(other, net, str(path)) == []
    same_logits(model, other)
