"""The GPU path: ResNet-34 training images/s at 224×224 with bf16 autocast, channels_last,
torch.compile and CUDA graphs switched on one by one, and the fraction of step time spent
waiting for data. Without CUDA every figure is reported as not measured.

The step is the trainer's: the resident `BatchLoader` (the whole uint8 set on the device,
augmented there), forward under autocast, cross-entropy, backward, SGD. `throughput` runs on
any device, so the test suite runs the same code on the CPU with a tiny network.
"""

from __future__ import annotations

import time

import numpy as np

from bench.report import Row

CONFIGS = {  # name: (bf16, channels_last, torch.compile mode or None)
    "baseline fp32": (False, False, None),
    "bf16": (True, False, None),
    "bf16 + channels_last": (True, True, None),
    "bf16 + channels_last + compile": (True, True, "default"),
    "bf16 + channels_last + compile + CUDA graphs": (True, True, "reduce-overhead"),
}


def _synthetic_images(n: int, size: int):
    """n random uint8 images of size×size: decoding is not what this benchmark measures."""
    from runtime.data.folders import ImageSet

    rng = np.random.default_rng(0)
    return ImageSet(
        rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        rng.integers(0, 2, n).astype(np.int64),
        ["cat", "dog"],
    )


def _sync(device) -> None:
    """Wait for the device, so that wall-clock times mean finished work."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def throughput(
    *,
    spec: str = "specs/resnet34.arch",
    device: str = "cuda",
    image_size: int = 224,
    cache_size: int = 256,
    batch: int = 128,
    steps: int = 40,
    warmup: int = 5,
    bf16: bool = False,
    channels_last: bool = False,
    compile_mode: str | None = None,
) -> dict:
    """Training images/s of `spec` over `steps` timed steps (after `warmup` untimed ones, which
    absorb cuDNN's autotuning and the compiler), and the fraction of that time spent waiting
    for the next batch (gather + augmentation, synchronised)."""
    import torch

    import archc
    from runtime.data.loader import BatchLoader

    dev = torch.device(device)
    model = archc.build(spec, num_classes=2).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model, mode=compile_mode) if compile_mode else model
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    images = _synthetic_images(batch * 8, cache_size)
    loader = BatchLoader(images, np.arange(len(images)), batch, train=True,
                         out_size=image_size, device=dev, drop_last=True, resident=True)
    wait = busy = 0.0
    done, epoch = 0, 0
    last = time.perf_counter()
    while done < warmup + steps:
        loader.set_epoch(epoch)
        epoch += 1
        for x, y in loader:
            _sync(dev)  # the batch is ready once its gather and augmentation have run
            ready = time.perf_counter()
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                logits = step_model(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            _sync(dev)
            end = time.perf_counter()
            if done >= warmup:
                wait += ready - last  # from the end of the previous step to a ready batch
                busy += end - ready
            last = end
            done += 1
            if done >= warmup + steps:
                break
    return {
        "images_per_s": steps * batch / (wait + busy),
        "data_wait_fraction": wait / (wait + busy),
        "resident": loader.resident,
        "final_loss": float(loss.detach()),
    }


def run(quick: bool = False) -> dict:
    """Every configuration of CONFIGS, each against the fp32 baseline (CUDA only)."""
    import torch

    if not torch.cuda.is_available():
        return {"measured": False, "reason": "no CUDA device on this machine: not measured"}
    steps, batch = (10, 64) if quick else (40, 128)
    out = {
        name: throughput(bf16=bf16, channels_last=cl, compile_mode=mode, steps=steps, batch=batch)
        for name, (bf16, cl, mode) in CONFIGS.items()
    }
    base = out["baseline fp32"]["images_per_s"]
    for row in out.values():
        row["speedup"] = row["images_per_s"] / base
    return {"measured": True, "device": torch.cuda.get_device_name(), "batch": batch,
            "steps": steps, "rows": out}


def rows(result: dict) -> list[Row]:
    """The table's rows: one per configuration, or one saying why nothing was measured."""
    what = "ResNet-34 training images/s, 224×224"
    if not result.get("measured"):
        return [Row("gpu", what, "not measured", "", None, "", None, result.get("reason", ""))]
    base = result["rows"]["baseline fp32"]["images_per_s"]
    return [
        Row("gpu", f"{what}, {name}, batch {result['batch']}", f"{r['images_per_s']:.0f} img/s",
            f"{base:.0f} img/s", r["speedup"], "", None,
            f"data wait {r['data_wait_fraction']:.1%} of step time")
        for name, r in result["rows"].items()
    ]
