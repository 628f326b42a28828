"""Backends over a checked network: torch modules, Python source, graphviz, summary, ONNX,
weights."""

ONNX_INPUT, ONNX_OUTPUT = "input", "logits"  # the exported graph's input and output names


class InitError(Exception):
    """Weights that cannot initialise the network; the message says which keys and why.
    (Defined here, without torch, so `archc.InitError` costs no torch import.)"""
