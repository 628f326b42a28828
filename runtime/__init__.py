"""The archc runtime: data, transforms, training loop, checkpoints, metrics, distributed.

It depends on `archc`; `archc` never imports `runtime`.
"""
