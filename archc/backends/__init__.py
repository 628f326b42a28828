"""Backends over a checked network: torch modules, Python source, graphviz, summary, ONNX,
weights."""

ONNX_INPUT, ONNX_OUTPUT = "input", "logits"  # the exported graph's input and output names
