"""The inference pass (archc/passes): folded networks compute what the eval-mode module does.

Every network of every spec in specs/ and examples/ is built at a small input, its batch norms
randomised (weight, bias, running mean and variance: folding a fresh, identity BN proves
nothing), and compared with its folded module and with the folded standalone Python source.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import archc
from archc.backends.module import class_name, to_module
from archc.compiler.graph import Call, Op, Parallel, Scope, Seq, layers
from archc.compiler.shapes import input_sizes
from archc.passes import fold_for_inference, fold_state_dict, inference_module
from archc.passes.export import inference_python_source
from archc.passes.fold import PASS_THROUGH

REPO = Path(__file__).resolve().parents[1]
SPECS = sorted([*REPO.glob("specs/*.arch"), *REPO.glob("examples/**/*.arch")])
TOLERANCE = 1e-5  # relative to the largest logit
SMALL = 32  # the input side to try first; a network that needs more gets its smallest


def _networks() -> list[tuple[Path, str]]:
    """(spec, network) for every spec file: its smallest network (by parameters), so that a
    file of fifteen RegNets costs one build, not a 645M-parameter one."""
    found = []
    for spec in SPECS:
        names = re.findall(r"^network\s+(\w+)", spec.read_text(), re.MULTILINE)
        if len(names) == 1:
            found.append((spec, names[0]))
            continue
        sizes = {}
        for name in names:
            result = archc.check(spec, network=name)
            sizes[name] = result.network.n_params if result.ok else 0  # a failure: test it
        found.append((spec, min(names, key=sizes.get)))
    return found


def _small(spec: Path, name: str):
    """The network at a small input (the smallest it accepts, at least SMALL)."""
    net = archc.load(spec, network=name)
    smallest = input_sizes(net).smallest or net.input_shape[1]
    side = max(SMALL, smallest)
    return archc.load(spec, network=name, input_shape=(net.input_shape[0], side, side))


def _foldable_pairs(scope: Scope) -> int:
    """conv→bn and fc→bn pairs that one plan runs back to back, in `scope` and below, dropout
    and identity layers skipped; tap heads left out (eval mode never runs them)."""
    pairs, called = 0, set()

    def steps(op: Op) -> list[Op]:  # a sequence flattened, pass-through layers left out
        if isinstance(op, Seq):
            return [s for o in op.ops for s in steps(o)]
        if isinstance(op, Call) and getattr(scope.child(op.child), "kind", "") in PASS_THROUGH:
            return []
        return [op]

    def visit(op: Op) -> None:
        nonlocal pairs
        flat = steps(op)
        called.update(o.child for o in flat if isinstance(o, Call))
        for before, after in zip(flat, flat[1:]):
            if isinstance(before, Call) and isinstance(after, Call):
                a, b = scope.child(before.child), scope.child(after.child)
                pairs += (getattr(a, "kind", "") in ("conv", "fc")
                          and getattr(b, "kind", "") == "bn")
        for o in flat:
            if isinstance(o, Parallel):
                for branch in o.branches:
                    visit(branch)

    visit(scope.plan)
    return pairs + sum(_foldable_pairs(c) for c in scope.children
                       if isinstance(c, Scope) and c.name in called)


def randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random BN statistics and affine parameters, random LayerNorm scales and shifts, and
    random biases: no identity anywhere, so a fold that dropped an affine would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.LayerNorm) and m.elementwise_affine:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 1.5 + 0.25)
                if m.bias is not None:  # `bias=false`: a scale only
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.5)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.25)
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=g) * 1.5 + 0.25)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.5)
            elif isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
    return model.eval()


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


def _count(model: nn.Module, cls) -> int:
    return sum(isinstance(m, cls) for m in model.modules())


def _layer_modules(model: nn.Module):
    """The modules that are layers of the spec: not the parts inside one layer's module
    (an `mlp` keeps torchvision's dropout slots, inert in eval, for its state_dict keys)."""
    def walk(module: nn.Module):
        yield module
        if not getattr(module, "archc_layer", False):
            for child in module.children():
                yield from walk(child)
    return walk(model)


@pytest.mark.parametrize("spec,name", _networks(), ids=lambda v: getattr(v, "stem", v))
def test_folded_module_and_source_equal_the_eval_module(spec, name):
    torch.manual_seed(0)
    net = _small(spec, name)
    model = randomise(to_module(net))
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        want = model(x)
        folded = inference_module(net, model)
        got = folded(x)
    assert _relative(got, want) <= TOLERANCE
    plan = fold_for_inference(net)
    # every conv→bn and fc→bn pair is folded; a bn after anything else (DenseNet's
    # pre-activation norms) stays, and the module keeps exactly those
    assert _foldable_pairs(plan.network.root) == 0
    assert len(plan.folds) == _foldable_pairs(net.root)
    kept = sum(layer.kind == "bn" for layer in layers(plan.network.root))
    assert _count(folded, nn.modules.batchnorm._BatchNorm) == kept
    assert not [m for m in _layer_modules(folded)
                if isinstance(m, nn.Dropout | nn.Dropout2d | nn.Identity)]
    assert not any(layer.kind in PASS_THROUGH for layer in layers(plan.network.root))
    assert not any(k.split(".")[0] in net.aux_outputs for k in folded.state_dict())
    # the standalone source of the folded network loads the folded weights and agrees
    scope: dict = {}
    exec(compile(inference_python_source(net), f"<{name}>", "exec"), scope)  # noqa: S102
    emitted = scope[class_name(net.name)]().eval()
    emitted.load_state_dict(folded.state_dict())
    with torch.no_grad():
        assert _relative(emitted(x), want) <= TOLERANCE


FLAT = """
network flat(num_classes=3):
    input 3x8x8
    conv3-4 relu bn
    flatten
    hidden: FC-16(bias=false) norm: bn relu dropout(0.3) identity
    fc: FC-{num_classes}
"""


def test_fc_then_bn1d_folds_and_a_norm_after_relu_stays():
    net = archc.check("<flat>", text=FLAT).network
    model = randomise(to_module(net), seed=1)
    plan = fold_for_inference(net)
    assert [(f.layer, f.norm) for f in plan.folds] == [("hidden", "norm")]
    assert len(plan.dropped) == 2  # dropout and identity
    folded = inference_module(net, model)
    assert folded.hidden.bias is not None  # the bias the fold adds
    assert _count(folded, nn.BatchNorm1d) == 0 and _count(folded, nn.BatchNorm2d) == 1
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert _relative(folded(x), model(x)) <= TOLERANCE


def test_fold_arithmetic_uses_the_running_statistics():
    """One conv, one bn with known numbers: the folded weight and bias by hand."""
    net = archc.check("<one>", text="network one:\n    input 1x3x3\n    c: conv1-1(bias=false)"
                                    "  n: bn(eps=0.0)\n").network
    state = {"c.weight": torch.full((1, 1, 1, 1), 2.0), "n.weight": torch.tensor([3.0]),
             "n.bias": torch.tensor([0.5]), "n.running_mean": torch.tensor([1.0]),
             "n.running_var": torch.tensor([4.0]), "n.num_batches_tracked": torch.tensor(7)}
    out = fold_state_dict(fold_for_inference(net), state)
    assert sorted(out) == ["c.bias", "c.weight"]
    assert float(out["c.weight"]) == pytest.approx(2.0 * 3.0 / 2.0)
    assert float(out["c.bias"]) == pytest.approx((0 - 1.0) * 3.0 / 2.0 + 0.5)


def test_the_pass_does_not_import_torch():
    code = ("import sys, archc, archc.passes; net = archc.load('specs/googlenet.arch'); "
            "archc.passes.fold_for_inference(net); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_compile_for_inference_writes_folded_source_and_weights(tmp_path):
    from archc.cli.app import app

    spec = REPO / "examples" / "mini_resnet.arch"
    weights = tmp_path / "w.safetensors"
    net = archc.load(spec)
    model = randomise(to_module(net), seed=2)
    from archc.backends.weights import save_weights

    save_weights(model, weights, net)
    out = tmp_path / "mini.py"
    result = CliRunner().invoke(app, ["compile", str(spec), "--for", "inference", "-o", str(out),
                                      "--init", str(weights)])
    assert result.exit_code == 0, result.output
    source = out.read_text()
    assert "BatchNorm" not in source and "bias=False" not in source
    from safetensors.torch import load_file

    scope: dict = {}
    exec(compile(source, str(out), "exec"), scope)  # noqa: S102
    emitted = scope["MiniResnet"]().eval()
    emitted.load_state_dict(load_file(str(out.with_suffix(".safetensors"))))
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        assert _relative(emitted(x), model(x)) <= TOLERANCE
    bad = CliRunner().invoke(app, ["compile", str(spec), "--for", "serving", "-o", str(out)])
    assert bad.exit_code != 0 and "--for must be training or inference" in bad.output


def test_compile_for_inference_prints_the_folded_table_and_what_was_folded():
    """`compile --for inference` shows the network it writes: the folded table (no bn row,
    no dropout row, fewer parameters) and one line counting the folds and removals."""
    from archc.cli.app import app

    spec = REPO / "specs" / "googlenet.arch"
    plain = CliRunner().invoke(app, ["compile", str(spec)])
    folded = CliRunner().invoke(app, ["compile", str(spec), "--for", "inference"])
    assert plain.exit_code == 0 and folded.exit_code == 0, folded.output
    assert " bn " in plain.output and "dropout" in plain.output
    assert " bn " not in folded.output and "dropout" not in folded.output.split("for inf")[0]
    plan = fold_for_inference(archc.load(spec))
    assert folded.output.rstrip().endswith(
        f"for inference: folded {len(plan.folds)} batch norms into the convs and linears "
        "before them; removed 2 auxiliary heads, 1 dropout")
    assert len(plan.folds) == 57
    assert "for inference" not in plain.output


def test_compile_emit_onnx_prints_the_onnxruntime_check(tmp_path):
    from archc.cli.app import app

    out = tmp_path / "flat.onnx"
    spec = tmp_path / "flat.arch"
    spec.write_text(FLAT, encoding="utf-8")
    for purpose in ("training", "inference"):
        result = CliRunner().invoke(app, ["compile", str(spec), "--emit", "onnx", "-o", str(out),
                                          "--for", purpose])
        assert result.exit_code == 0, result.output
        line = result.output.splitlines()[-1]
        m = re.fullmatch(r"checked with onnxruntime on 3 random inputs: max abs difference vs "
                         r"torch (\S+) \(relative (\S+), tolerance 1e-04\)", line)
        assert m, line
        max_abs, relative = float(m.group(1)), float(m.group(2))
        assert 0 <= relative <= 1e-4 and relative <= max_abs  # relative to a scale >= 1
