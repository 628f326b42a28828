"""Backends: what a checked network becomes (torch module, Python source, DOT, summary, ONNX)."""
