"""`--init torchvision` for every builder of specs/zoo.yaml (the 68 CNNs and the ViT, Swin and
MaxViT entries): the spec maps to its torchvision
builder, and a state dict with a 1000-class head (torchvision's own module, built without
weights) loads into the 2-class archc network, naming the head's tensors as new.
Shapes only: both models live on the meta device, so even RegNet-Y-128GF costs nothing."""
from __future__ import annotations

import contextlib

import pytest
import torch
import torchvision
from torch import nn

import archc
from archc.backends.weights import apply_init, torchvision_name
from archc.tools.verify import _BUILDER_KWARGS
from archc.zoo import builder_for, load_zoo

ZOO = load_zoo()


@contextlib.contextmanager
def shapes_only():
    """Parameters and buffers move to the meta device as modules register them, and
    torch.nn.init's fills are skipped. (torch.device("meta") cannot build RegNets: their
    widths are computed with tensors and read back with .tolist().)"""
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def parameter(self, name, param):
        if param is not None:
            param = nn.Parameter(param.detach().to("meta"), param.requires_grad)
        register_parameter(self, name, param)

    def buffer(self, name, tensor, persistent=True):
        register_buffer(self, name, None if tensor is None else tensor.to("meta"), persistent)

    fills = {n: getattr(nn.init, n) for n in dir(nn.init)
             if n.endswith("_") and not n.startswith("_")}
    nn.Module.register_parameter, nn.Module.register_buffer = parameter, buffer
    for n in fills:
        setattr(nn.init, n, lambda t, *args, **kwargs: t)
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter
        nn.Module.register_buffer = register_buffer
        for n, fill in fills.items():
            setattr(nn.init, n, fill)


def _two_class(entry):
    params = {**entry.sets, "num_classes": 2}
    if entry.variant:
        params["variant"] = entry.variant
    return archc.load(entry.spec, network=entry.network, **params)


def test_the_zoo_has_every_builder():
    assert len(ZOO) >= 68  # torchvision's 68 CNNs, and the transformers since they landed


@pytest.mark.parametrize("name", sorted(ZOO))
def test_imagenet_state_dict_loads_into_a_two_class_network(name):
    entry = ZOO[name]
    net = _two_class(entry)
    assert torchvision_name(net, builder_for(net)) == name  # what --init torchvision fetches
    with torch.device("meta"):
        model = archc.build(net)
    with shapes_only():
        imagenet = torchvision.models.get_model(name, weights=None, num_classes=1000,
                                                **_BUILDER_KWARGS.get(name, {}))
    notes = apply_init(model, imagenet.state_dict(), net)
    assert notes, "the 1000-class head was not reported"
    new = [key for note in notes for key in note.split("new tensors: ")[1].split(", ")]
    state = imagenet.state_dict()
    for key in new:  # exactly the tensors whose first dimension is the class count
        assert state[key].shape[0] == 1000 and model.state_dict()[key].shape[0] == 2
    assert all("(num_classes 1000 → 2)" in note for note in notes)
