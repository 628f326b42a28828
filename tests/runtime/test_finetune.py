"""Fine-tuning: --init from a .pth state_dict, a safetensors file or another run folder, and
the finetune recipe's frozen backbone (weights and batch-norm statistics untouched) with a
lower backbone rate."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from rich.console import Console
from safetensors.torch import save_file

import archc
from runtime.training.loop import fit, make_optimizer
from runtime.training.train import TrainError, init_weights

from .conftest import TinyNet, make_imageset, make_loaders, small_config

SPECS = Path(__file__).resolve().parents[2] / "specs"


@pytest.fixture(scope="module")
def imagenet_resnet18(tmp_path_factory):
    """torchvision's resnet18 built without weights (1000 classes), saved three ways."""
    root = tmp_path_factory.mktemp("init")
    torch.manual_seed(0)
    reference = torchvision.models.resnet18()
    state = reference.state_dict()
    torch.save(state, root / "imagenet.pth")
    save_file({k: v.contiguous() for k, v in state.items()}, str(root / "imagenet.safetensors"))
    run = root / "run"
    run.mkdir()
    save_file({k: v.contiguous() for k, v in state.items()}, str(run / "best.safetensors"))
    return SPECS / "resnet18.arch", state, root


@pytest.mark.parametrize("source", ["imagenet.pth", "imagenet.safetensors", "run"])
def test_init_from_a_file_or_a_run_folder_reports_the_new_head(imagenet_resnet18, source):
    spec, state, root = imagenet_resnet18
    net = archc.load(spec, num_classes=2, input_shape=(3, 32, 32))
    model = archc.build(net)
    notes = init_weights(model, net, str(root / source))
    assert notes[-1] == ("re-initialised fc (num_classes 1000 → 2); new tensors: fc.weight, "
                         "fc.bias")
    torch.testing.assert_close(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"],
                               rtol=0, atol=0)
    assert model.fc.weight.shape == (2, 512)


def test_init_from_a_folder_without_weights_is_a_clear_error(tmp_path, imagenet_resnet18):
    spec, _, _ = imagenet_resnet18
    net = archc.load(spec, num_classes=2, input_shape=(3, 32, 32))
    with pytest.raises(TrainError, match="no best.safetensors or last.safetensors"):
        init_weights(archc.build(net), net, str(tmp_path))


def test_frozen_backbone_keeps_its_weights_and_bn_statistics_then_trains(tmp_path):
    config = small_config(epochs=2, freeze_epochs=1, backbone_lr_scale=0.1, lr=0.05)
    train, val = make_loaders(make_imageset(), config)
    torch.manual_seed(0)
    initial = {k: v.clone() for k, v in TinyNet().state_dict().items()}

    def factory():
        model = TinyNet()
        model.load_state_dict(initial)
        return model

    from runtime.training.checkpoint import load_checkpoint

    fit(factory, train, val, config, tmp_path, console=Console(quiet=True), stop_after=1)
    after_one, _ = load_checkpoint(tmp_path, "last")
    for key in ("body.0.weight", "body.1.weight", "body.1.running_mean", "body.1.running_var"):
        assert torch.equal(after_one[key], initial[key]), key  # frozen, BN in eval
    assert not torch.equal(after_one["fc.weight"], initial["fc.weight"])  # the head learned
    fit(factory, train, val, config, tmp_path, console=Console(quiet=True), resume=True)
    after_two, _ = load_checkpoint(tmp_path, "last")
    assert not torch.equal(after_two["body.0.weight"], initial["body.0.weight"])
    assert not torch.equal(after_two["body.1.running_mean"], initial["body.1.running_mean"])


def test_backbone_trains_at_a_fraction_of_the_head_rate():
    config = small_config(lr=0.1, backbone_lr_scale=0.1)
    rates = {}
    model = TinyNet()
    optimizer = make_optimizer(model, config, head=("fc",))
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            rates[names[id(p)]] = group["lr"]
    assert rates["fc.weight"] == pytest.approx(0.1) and rates["fc.bias"] == pytest.approx(0.1)
    assert rates["body.0.weight"] == pytest.approx(0.01)
