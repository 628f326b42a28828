"""The check every PyTorch import ends with: does the written spec reproduce its source?

The IR is written as .arch text (the unparser), checked and built again by archc, loaded
with the source module's state_dict strictly (so every key lines up), and both are run
on the same input after every batch norm's weight, bias, running mean and running
variance (and every layer and group norm's weight and bias) is randomised: with fresh
statistics many different networks compute nearly the same thing, and the comparison
could not fail.
"""

from __future__ import annotations

import torch
from torch import nn

from archc.compiler import ir
from archc.compiler.diagnostics import Diagnostics
from archc.compiler.unparse import unparse

E_MISMATCH = "E203"
TOLERANCE = 1e-5  # of the largest output, as the zoo's oracle


def randomize_norms(model: nn.Module, seed: int = 0) -> None:
    """Give every batch norm random affine parameters and running statistics, and every
    layer and group norm random affine parameters (fresh ones are the identity, under
    which a transformer's norms could be left out unnoticed). Parameters that their init
    leaves all zeros (ViT's class token and head) get small random values: a zero head
    gives zero logits, and any spec would match them."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.numel() and not p.any():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.1)
        for m in model.modules():
            if isinstance(m, (nn.LayerNorm, nn.GroupNorm)) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=generator) + 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.2)
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                if m.affine:
                    m.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                    m.bias.copy_(torch.randn(n, generator=generator) * 0.2)
                if m.running_mean is not None and m.running_var is not None:  # tracked stats
                    m.running_mean.copy_(torch.randn(n, generator=generator) * 0.2)
                    m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)


def rebuild(spec: ir.SpecFile, shape: tuple, diags: Diagnostics, where: ir.Span):
    """archc's module of the spec (checked at `shape`), or None with the checker's errors."""
    from archc.backends.module import to_module
    from archc.compiler.checker import check_spec

    text = unparse(spec)
    result = check_spec(spec.path, input_shape=tuple(shape), text=text)
    if not result.ok:
        for d in result.diagnostics:
            if d.is_error:
                diags.error(
                    E_MISMATCH,
                    where,
                    f"archc rejects the spec it wrote: {d.message} ({d.span.file}:{d.span.line})",
                    "this is a bug in the importer; please report it",
                )
        return None
    assert result.network is not None  # `ok` means a network was built
    with torch.device("meta"):  # every weight is overwritten by the source's: skip init
        module = to_module(result.network, init="none")
    return module.to_empty(device="cpu")


def verify_spec(
    spec: ir.SpecFile, source: nn.Module, shape: tuple, diags: Diagnostics, where: ir.Span
) -> bool:
    """True when the spec's module loads `source`'s weights strictly and computes the same."""
    rebuilt = rebuild(spec, shape, diags, where)
    if rebuilt is None:
        return False
    randomize_norms(source)
    try:
        rebuilt.load_state_dict(source.state_dict(), strict=True)
    except RuntimeError as error:
        diags.error(
            E_MISMATCH,
            where,
            "the written spec's weights do not line up with the "
            "source module's: " + _first_keys(str(error)),
            "this is a bug in the importer; please report it",
        )
        return False
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = _main(source.eval()(x)), _main(rebuilt.eval()(x))
    if expected.shape != got.shape:
        diags.error(
            E_MISMATCH,
            where,
            f"the written spec outputs {tuple(got.shape)}, the source {tuple(expected.shape)}",
        )
        return False
    deviation = (got - expected).abs().max().item()
    scale = expected.abs().max().item()
    if not deviation <= TOLERANCE * max(scale, 1e-6):
        diags.error(
            E_MISMATCH,
            where,
            f"the written spec computes something else: outputs "
            f"differ by {deviation:.3g} (largest output {scale:.3g})",
            "this is a bug in the importer; please report it",
        )
        return False
    return True


def _main(output):
    """The main output of a module that may return (logits, *aux) or a named tuple."""
    return output[0] if isinstance(output, (tuple, list)) else output


def _first_keys(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    return " ".join(lines[1:3])[:300] if len(lines) > 1 else message[:300]
