"""Inference benchmarks: archc's engines against torchvision's eager eval-mode module.

    python -m bench infer [--quick]

(i) ResNet-18 and ResNet-50, 3×224×224, batch 1 and 32, on this CPU. The baseline is
    torchvision's module (weights=None, batch norms randomised) in eval mode under no_grad;
    archc's network gets the same weights (load_state_dict, strict). archc's figures:
    * fp32: the folded network (archc.passes) under `torch.compile` with frozen weights and
      under ONNX Runtime (all cores); the row reports the faster one, and its outputs must
      equal torchvision's within 1e-4 of the largest logit ("exact");
    * int8: ONNX Runtime's static QDQ quantization of the folded graph, calibrated as a
      user's run is, on the run's training split: archc's module is put in a run folder of its
      own whose data are 40 synthetic JPEGs (32 to train on), decoded and normalised as
      validation does; its top-1 agreement with fp32 on 64 other such images is in the note
      (random weights: a check, not an accuracy).
    Every engine comes from the registry (runtime/after/engines.py KINDS): a new engine there
    is a new figure here, judged with the exact fp32 engines or as an inexact one.
    Ratios are speed-ups, torchvision time / archc time, from interleaved rounds (A B, B A, ...)
    and the fastest round of each side (bench_model.interleaved).
(s) `archc submit` end to end (a fresh process: start-up, loading, decoding, the engine `auto`
    picks, CSV) on 500 synthetic JPEGs around 500×375, against a plain loop: torchvision's
    ImageFolder + Resize(256) + CenterCrop(224) + ToTensor + Normalize, DataLoader with the same
    workers, torchvision's ResNet-18 eager in eval mode. The run folder is a ResNet-18 trained
    one epoch on 40 images; its engines are measured (once) before the timed run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision

import archc
from bench.bench_model import interleaved
from bench.report import Row

ROOT = Path(__file__).resolve().parents[1]
NETWORKS: dict[str, tuple[str, Callable[..., torch.nn.Module]]] = {
    "resnet18": ("specs/resnet18.arch", torchvision.models.resnet18),
    "resnet50": ("specs/resnet50.arch", torchvision.models.resnet50),
}
BATCHES = (1, 32)
# two classes, as the Dogs-vs-Cats runs the engines serve: int8's report scores the bench run's
# validation images (cat, dog) with the network's outputs (and a 1000-way head is 0.03% of
# ResNet-18's work)
CLASSES = 2
EXACT = 1e-4  # largest difference relative to max(1, |logits|)
FP32_TARGET, INT8_TARGET = 1.5, 2.5
INEXACT_TARGETS = {"int8": INT8_TARGET}  # an inexact engine's speed-up target, by precision
SUBMIT_IMAGES = 500
SLOW_SETUP_S = 60.0  # --quick leaves out engines whose set-up is guessed at this or more


# --------------------------------------------------------------------------- models


def randomise_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BN statistics and affine parameters: folding an identity BN would prove nothing."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                assert m.running_mean is not None and m.running_var is not None  # tracked
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model.eval()


def pair(name: str):
    """(archc's checked network, archc's module, torchvision's module) with the same weights."""
    spec, builder = NETWORKS[name]
    torch.manual_seed(0)
    theirs = randomise_norms(builder(weights=None, num_classes=CLASSES))
    net = archc.load(ROOT / spec, num_classes=CLASSES)
    mine = archc.build(net)
    mine.load_state_dict(theirs.state_dict(), strict=True)
    return net, mine.eval(), theirs


def no_grad(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], object]:
    """A zero-argument call of fn(x) without autograd."""

    def call() -> object:
        with torch.no_grad():
            return fn(x)

    return call


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """Largest difference relative to max(1, |want|)."""
    return float((got - want).abs().max()) / max(1.0, float(want.abs().max()))


# --------------------------------------------------------------------------- images


def synthetic_jpegs(root: Path, n: int) -> Path:
    """A folder of n synthetic JPEGs around 500×375 (Kaggle's test1 layout), made once."""
    from runtime.data.synth import KAGGLE_LIKE_SIZE, write_synthetic

    folder = root / f"jpegs-{n}"
    if not (folder / "test1" / f"{n}.jpg").exists():
        shutil.rmtree(folder, ignore_errors=True)
        write_synthetic(folder, n=40, seed=0, test_n=n, size=KAGGLE_LIKE_SIZE)
    return folder


def preprocessed(folder: Path, n: int, offset: int = 0) -> torch.Tensor:
    """n test JPEGs decoded (short side 256, centre crop) and normalised to 224, as validation."""
    from runtime.data.augment import AugmentConfig, eval_batch
    from runtime.data.folders import load_unlabelled

    paths = [folder / "test1" / f"{i}.jpg" for i in range(1 + offset, 1 + offset + n)]
    u8, _, _ = load_unlabelled(paths, 256, workers=1)
    return eval_batch(torch.from_numpy(u8), 224, AugmentConfig())


# --------------------------------------------------------------------------- (i) engines


def engine_subject(name: str, net, model, images: Path, work: Path):
    """archc's module with torchvision's weights as a `Trained` in a run folder of its own, so
    that the engine registry builds every engine for it exactly as for a user's run: int8
    calibrates on the run's training split (the synthetic JPEGs' train/ folder)."""
    import json

    from runtime.after.inference import Trained
    from runtime.data.folders import load_images, stratified_split
    from runtime.training.config import TrainConfig
    from runtime.training.run import create_run
    from runtime.training.train import cache_dir

    spec, _ = NETWORKS[name]
    config = TrainConfig.model_validate({"image_size": net.input_shape[1]})
    decode_size = max(config.cache_size, net.input_shape[1])
    data = images / "train"
    labelled = load_images(data, size=decode_size, cache_dir=cache_dir())
    train, val = stratified_split(labelled.labels, config.val_fraction, config.seed)
    split = (train.tolist(), val.tolist())
    run = work / f"{name}-engines"
    create_run(run, (ROOT / spec).read_text(encoding="utf-8"), spec, {}, config, split, data,
               labelled.classes, overwrite=True, network=net.name)
    record = json.loads((run / "record.json").read_text(encoding="utf-8"))
    return Trained(model=model, network=net, classes=list(labelled.classes),
                   image_size=net.input_shape[1], decode_size=decode_size, aug=config.augment(),
                   device=torch.device("cpu"), run_dir=run, checkpoint=f"bench-{name}",
                   epoch=None, config=config, record=record)


def engine_set(subject, batch: int, compile_it: bool = True) -> tuple[dict, dict]:
    """(runners, set-up seconds) of every engine of the registry (runtime/after/engines.py
    KINDS) that runs here, eager aside (torchvision's eager module is the baseline); a new
    engine is measured as soon as it is a row there. Without `compile_it` (--quick) the
    engines whose set-up is guessed at a minute or more (torch.compile) are left out."""
    from runtime.after.engines import KINDS

    runners, setup = {}, {}
    for name, kind in KINDS.items():
        if name == "eager" or kind.unavailable(subject) is not None:
            continue
        if not compile_it and kind.setup_guess_s >= SLOW_SETUP_S:
            continue
        if kind.prepare is not None:
            kind.prepare(subject)  # e.g. the ONNX export: once per checkpoint, not set-up
        started = time.perf_counter()
        runners[name] = kind.build(subject, batch)
        setup[name] = time.perf_counter() - started
    return runners, setup


def engine_figures(name: str, batch: int, rounds: int, work: Path, images: Path,
                   compile_it: bool = True) -> dict:
    """Speed-ups of each archc engine over torchvision's eager module, and their errors."""
    from runtime.after.engines import KINDS

    net, mine, theirs = pair(name)
    probe = preprocessed(images, 64, offset=64)
    runners, setup = engine_set(engine_subject(name, net, mine, images, work), batch, compile_it)
    x = probe[:batch] if batch <= len(probe) else probe.repeat(batch // len(probe) + 1, 1, 1,
                                                                1)[:batch]
    with torch.no_grad():
        want, want_probe = theirs(x), theirs(probe)
    out: dict = {"compile_s": setup.get("compiled", 0.0), "setup_s": setup}
    for engine, run in runners.items():
        timing = interleaved(no_grad(run, x), no_grad(theirs, x), rounds, warmup=1)
        with torch.no_grad():
            error = relative_error(run(x), want)
            agreement = float((run(probe).argmax(1) == want_probe.argmax(1)).float().mean())
        out[engine] = {**timing, "speedup": 1 / timing["ratio_of_minima"],
                       "median_speedup": 1 / timing["ratio"], "error": error,
                       "exact": error <= EXACT, "top1_agreement": agreement,
                       "precision": KINDS[engine].precision}
        print(f"{name} batch {batch} {engine}: {out[engine]['speedup']:.2f}× (median "
              f"{out[engine]['median_speedup']:.2f}×), error {error:.1e}", flush=True)
    return out


# --------------------------------------------------------------------------- (s) submit


def _trained_run(work: Path, images: Path) -> Path:
    """A ResNet-18 run folder (one epoch on 40 images): what `archc submit` reads."""
    run = work / "resnet18-run"
    if (run / "record.json").exists():
        return run
    from rich.console import Console

    from runtime.training.train import TrainRequest, train

    shutil.rmtree(run, ignore_errors=True)
    train(TrainRequest(spec=ROOT / "specs" / "resnet18.arch", data=images / "train", run=run,
                       params={"num_classes": 2},
                       settings={"epochs": 1, "batch_size": 20, "device": "cpu",
                                 "image_size": 224, "val_fraction": 0.25},
                       console=Console(quiet=True)))
    return run


def _submit_seconds(run: Path, test: Path, out: Path, env: dict) -> float:
    archc_exe = Path(sys.executable).with_name("archc")
    command = [str(archc_exe)] if archc_exe.exists() else [sys.executable, "-m", "archc"]
    started = time.perf_counter()
    subprocess.run([*command, "submit", str(run), "--test", str(test), "-o", str(out)],
                   check=True, env=env, capture_output=True, text=True)
    return time.perf_counter() - started


def _baseline_loop(run: Path, test: Path, view: Path, workers: int) -> tuple[float, np.ndarray]:
    """ImageFolder + transforms + DataLoader + torchvision's eager ResNet-18: (seconds, p(dog))."""
    from safetensors.torch import load_file
    from torchvision import datasets, transforms

    started = time.perf_counter()
    model = torchvision.models.resnet18(weights=None, num_classes=2)
    model.load_state_dict(load_file(str(_checkpoint_file(run))))
    model.eval()
    tf = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224),
                             transforms.ToTensor(),
                             transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    loader = torch.utils.data.DataLoader(datasets.ImageFolder(str(view), transform=tf),
                                         batch_size=64, num_workers=workers)
    probs = []
    with torch.no_grad():
        for x, _ in loader:
            probs.append(torch.softmax(model(x), 1)[:, 1].numpy())
    return time.perf_counter() - started, np.concatenate(probs)


def _checkpoint_file(run: Path) -> Path:
    for name in ("best", "last"):
        if (run / f"{name}.safetensors").exists():
            return run / f"{name}.safetensors"
    raise FileNotFoundError(f"no checkpoint in {run}")


def _flat_view(test: Path, dest: Path) -> Path:
    """An ImageFolder view of test1/ (one class folder of symlinks), in id order."""
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "all").mkdir(parents=True)
    for f in test.glob("*.jpg"):
        os.symlink(f.resolve(), dest / "all" / f"{int(f.stem):06d}.jpg")
    return dest


def submit_figures(work: Path, images: Path, rounds: int) -> dict:
    """(s) `archc submit` images/s against the plain torchvision loop, same weights, same files."""
    run = _trained_run(work, images)
    test = images / "test1"
    view = _flat_view(test, work / "imagefolder")
    env = {**os.environ, "ARCHC_CACHE": str(work / "cache")}
    out = work / "submission.csv"
    warm = _submit_seconds(run, test, out, env)  # `auto` measures the engines once, records
    workers = 2
    ours, theirs, probs = [], [], None
    for _ in range(rounds):
        ours.append(_submit_seconds(run, test, out, env))
        seconds, probs = _baseline_loop(run, test, view, workers)
        theirs.append(seconds)
    ids_probs = np.loadtxt(out, delimiter=",", skiprows=1)
    engines_json = run / "inference" / "engines.json"
    import json

    record = json.loads(engines_json.read_text()) if engines_json.exists() else {}
    assert probs is not None  # there is at least one round
    clip = np.clip(probs, 0.005, 0.995)  # what submit writes
    return {"images": SUBMIT_IMAGES, "first_run_s": warm, "ours_s": min(ours),
            "baseline_s": min(theirs), "ours_ips": SUBMIT_IMAGES / min(ours),
            "baseline_ips": SUBMIT_IMAGES / min(theirs), "speedup": min(theirs) / min(ours),
            "rounds": rounds, "max_probability_difference":
                float(np.abs(ids_probs[:, 1] - clip).max()),
            "engines": record.get("engines", {})}


def chosen_engine(result: dict) -> str:
    """The engine `auto` picks for the submit job, from the recorded figures."""
    from runtime.after.engines import fastest

    engines = result.get("engines") or {}
    return fastest({"engines": engines}, result["images"]) if engines else "eager"


# --------------------------------------------------------------------------- suite


def run(quick: bool = False) -> dict:
    """Every figure of the inference suite."""
    work = Path(tempfile.gettempdir()) / "archc_bench_infer"
    work.mkdir(exist_ok=True)
    images = synthetic_jpegs(work, SUBMIT_IMAGES)
    rounds = {1: 3 if quick else 15, 32: 2 if quick else 5}
    result: dict = {"torch_threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    for name in NETWORKS:
        for batch in BATCHES:
            # --quick leaves out ResNet-50's compiles (minutes of CPU each on two cores)
            compile_it = not (quick and name == "resnet50")
            result[f"{name}/b{batch}"] = engine_figures(name, batch, rounds[batch], work, images,
                                                        compile_it)
    result["submit"] = submit_figures(work, images, 1 if quick else 3)
    return result


def _exact_kinds() -> list[str]:
    """The engines the registry calls exact (eager aside), measured or not."""
    from runtime.after.engines import KINDS

    return [k for k, kind in KINDS.items() if kind.exact and k != "eager"]


def _fp32_best(v: dict) -> tuple[str, dict]:
    measured = [k for k in _exact_kinds() if k in v]
    exact = [k for k in measured if v[k]["exact"]]
    name = max(exact or measured, key=lambda k: v[k]["speedup"])
    return name, v[name]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def _inexact_kinds(v: dict) -> list[str]:
    """The measured engines the registry calls inexact (int8), in the registry's order."""
    from runtime.after.engines import KINDS

    return [k for k, kind in KINDS.items() if not kind.exact and k in v]


def _inexact_row(name: str, batch: str, engine: str, q: dict) -> Row:
    """An inexact engine (int8) against torchvision eager, its agreement with fp32 noted."""
    from runtime.after.engines import KINDS

    target = INEXACT_TARGETS.get(KINDS[engine].precision)
    return Row("i", f"{name}, batch {batch}, {engine} (inexact {KINDS[engine].precision}) "
                    "vs torchvision eager",
               _ms(q["archc_min_s"]), _ms(q["torchvision_min_s"]), q["speedup"],
               f"≥ {target}×" if target else "", q["speedup"] >= target if target else None,
               f"top-1 agreement with fp32 {q['top1_agreement']:.0%} on 64 images; "
               f"median ratio {q['median_speedup']:.2f}×")


def rows(result: dict) -> list[Row]:
    """(i) one fp32 and one int8 row per network and batch, then (s) submit end to end."""
    out = []
    for key, v in result.items():
        if "/b" not in key:
            continue
        name, batch = key.split("/b")
        engine, best = _fp32_best(v)
        versus = "; ".join(f"{k} {v[k]['speedup']:.2f}×" if k in v
                           else f"{k} not measured (--quick)"
                           for k in _exact_kinds() if k != engine)
        out.append(Row("i", f"{name}, batch {batch}, fp32 ({engine}) vs torchvision eager",
                       _ms(best["archc_min_s"]), _ms(best["torchvision_min_s"]),
                       best["speedup"], f"≥ {FP32_TARGET}×",
                       best["speedup"] >= FP32_TARGET and best["exact"],
                       f"max error {best['error']:.1e} (exact ≤ {EXACT:.0e}); {versus}; "
                       f"median ratio {best['median_speedup']:.2f}×; {best['rounds']} rounds"))
        out += [_inexact_row(name, batch, engine, v[engine]) for engine in _inexact_kinds(v)]
    s = result.get("submit")
    if s:
        out.append(Row("s", f"`archc submit` end to end, {s['images']} JPEGs ~500×375, ResNet-18 "
                       "vs ImageFolder + eager loop", f"{s['ours_ips']:.1f} img/s",
                       f"{s['baseline_ips']:.1f} img/s", s["speedup"], "", None,
                       f"engine auto → {chosen_engine(s)}; fresh process each run; first run "
                       f"(measures engines) {s['first_run_s']:.0f} s; max |Δp| "
                       f"{s['max_probability_difference']:.1e}"))
    return out
