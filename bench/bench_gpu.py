"""The GPU path: ResNet-34 training images/s at 224×224 with bf16 autocast, channels_last
and torch.compile switched on and off, and the fraction of step time spent waiting for
data. Without CUDA every figure is reported as not measured.
"""

from __future__ import annotations

import time

import numpy as np


def _synthetic_images(n: int, size: int = 256):
    from runtime.data import ImageSet

    rng = np.random.default_rng(0)
    return ImageSet(
        rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        rng.integers(0, 2, n).astype(np.int64),
        ["cat", "dog"],
    )


def _throughput(
    bf16: bool, channels_last: bool, compiled: str | None, steps: int, batch: int
) -> dict:
    import torch

    import archc
    from runtime.loader import BatchLoader

    device = torch.device("cuda")
    model = archc.build("specs/resnet34.arch", num_classes=2).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model, mode=compiled) if compiled else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    images = _synthetic_images(batch * 8)
    loader = BatchLoader(
        images,
        np.arange(len(images)),
        batch,
        train=True,
        out_size=224,
        device=device,
        drop_last=True,
    )
    wait = busy = 0.0
    done = 0
    for epoch in range(10_000):
        loader.set_epoch(epoch)
        it = iter(loader)
        while done < steps + 5:
            t0 = time.perf_counter()
            try:
                x, y = next(it)
            except StopIteration:
                break
            torch.cuda.synchronize()
            t1 = time.perf_counter()
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                loss = torch.nn.functional.cross_entropy(step_model(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            torch.cuda.synchronize()
            t2 = time.perf_counter()
            if done >= 5:  # the first steps warm up cuDNN and the compiler
                wait += t1 - t0
                busy += t2 - t1
            done += 1
        if done >= steps + 5:
            break
    return {
        "images_per_s": steps * batch / (wait + busy),
        "data_wait_fraction": wait / (wait + busy),
    }


def run(quick: bool = False) -> dict:
    """Every on/off combination that matters, each against the all-off baseline."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return {"measured": False, "reason": "torch missing"}
    if not torch.cuda.is_available():
        return {"measured": False, "reason": "no CUDA device on this machine: not measured"}
    steps, batch = (10, 64) if quick else (40, 128)
    configs = {
        "baseline fp32": (False, False, None),
        "bf16": (True, False, None),
        "bf16+channels_last": (True, True, None),
        "bf16+channels_last+compile": (True, True, "default"),
        "bf16+channels_last+compile+CUDA graphs": (True, True, "reduce-overhead"),
    }
    out = {name: _throughput(*flags, steps=steps, batch=batch) for name, flags in configs.items()}
    base = out["baseline fp32"]["images_per_s"]
    for row in out.values():
        row["speedup"] = row["images_per_s"] / base
    return {"measured": True, "device": torch.cuda.get_device_name(), "rows": out}


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
