"""The inference engines on a Vision Transformer: specs/vit.arch's vit_b_16 with tiny dimensions
(32×32 images, 8×8 patches, 2 blocks of width 64), every LayerNorm, bias, class token and
position embedding randomised so that no part is an identity and the logits are of order one.
ONNX Runtime must reproduce the eval-mode module within the engines' TOLERANCE; int8 within the
tolerance tests/runtime/test_infer_int8.py holds a CNN to.
"""
from __future__ import annotations

import logging
from pathlib import Path

import onnx
import pytest
import torch
from torch import nn

import archc
from runtime.after import engines
from runtime.after.inference import Trained
from runtime.after.quantize import quantize_file
from runtime.data.augment import AugmentConfig
from runtime.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "specs" / "vit.arch"
TINY = {"image_size": 32, "patch": 8, "depth": 2, "heads": 2, "hidden": 64, "mlp_dim": 128,
        "num_classes": 2}


def randomise_transformer(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random LayerNorm affines, biases, class token and position embedding; a head with
    std 0.5, so the logits are of order one rather than near zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or p.dim() == 3:  # biases, class token, position embedding
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 1.5 + 0.25)
        model.heads.head.weight.copy_(torch.randn(model.heads.head.weight.shape, generator=g)
                                      * 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    torch.manual_seed(0)
    network = archc.load(SPEC, network="vit_b_16", **TINY)
    model = randomise_transformer(archc.build(network))
    return Trained(model=model, network=network, classes=["cat", "dog"], image_size=32,
                   decode_size=32, aug=AugmentConfig(), device=torch.device("cpu"),
                   run_dir=tmp_path_factory.mktemp("vit-run"), checkpoint="best", epoch=None,
                   config=TrainConfig(), record={})


def _inputs(n: int, seed: int) -> torch.Tensor:
    return torch.randn((n, 3, 32, 32), generator=torch.Generator().manual_seed(seed))


def test_onnxruntime_computes_the_vits_logits(trained):
    x = _inputs(6, seed=1)
    want = engines.reference_logits(trained, x)
    assert float(want.abs().max()) > 0.5 and float(want.std()) > 0.1  # logits that differ
    engine = engines.build_engine(trained, "onnxruntime")
    assert engines.max_error(engine(x), want) <= engines.TOLERANCE
    # and a batch size the graph was not exported with
    assert engines.max_error(engine(x[:1]), want[:1]) <= engines.TOLERANCE


def test_int8_of_the_vit_stays_within_its_tolerance_and_warns_of_nothing(trained, tmp_path,
                                                                         caplog):
    fp32_file = engines.onnx_file(trained)
    int8_file = tmp_path / "vit.int8.onnx"
    calibration = (_inputs(8, seed=10 + i).numpy() for i in range(6))
    with caplog.at_level(logging.WARNING):
        quantize_file(fp32_file, int8_file, calibration)
    # per-channel LayerNorm scales on their own axis: no "Axis 1 is out-of-range" per norm
    assert not [r for r in caplog.records if "out-of-range" in r.getMessage()]
    kinds = {node.op_type for node in onnx.load(str(int8_file)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= kinds  # quantized, not a copy of fp32
    x = _inputs(32, seed=2)
    fp32 = engines.onnx_runner(fp32_file)(x)
    int8 = engines.onnx_runner(int8_file)(x)
    assert not torch.equal(int8, fp32)
    # test_infer_int8's tolerance: logits within 10% of their mean size (plus 0.01), and
    # the same top class wherever fp32 decides with a margin
    assert float((int8 - fp32).abs().mean()) <= 0.1 * float(fp32.abs().mean()) + 0.01
    probs = fp32.softmax(1)
    decided = (probs.max(1).values - probs.min(1).values) >= 0.1
    assert decided.sum() >= 8
    assert bool((int8.argmax(1) == fp32.argmax(1))[decided].all())
