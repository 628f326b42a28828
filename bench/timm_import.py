"""How many of timm's convolutional families `archc import` writes exactly.

    python -m bench.timm_import [--timeout 60] [NAME ...]

For one default member per timm model module (CNNs only, none huge), runs the importer
in-process (`archc.import_network("timm:create_model", {"model_name": NAME})`, which
checks the written spec against the timm module: strict load, same outputs with the
norms randomised) under a per-model limit of CPU time (the machine may be shared, so
wall-clock time says little), and prints a Markdown table: the model, exact or not, the
first construct archc is missing, and the CPU seconds it took.
"""

from __future__ import annotations

import argparse
import re
import signal
import time
from pathlib import Path

import yaml

from archc import import_network

INDEX = Path(__file__).resolve().parent.parent / "specs" / "timm" / "index.yaml"

# One default member per timm model module whose models are convolutional (timm 1.0.31's
# timm/models/*.py; two or three where a module holds several families), the smallest
# where the default is huge. Left out as transformers, MLP-mixers or attention hybrids:
# beit, byoanet, cait, coat, convit, crossvit, csatv2, davit, deepseek_vit, deit, edgenext,
# efficientformer(_v2), efficientvim, efficientvit_mit/msra, eva, focalnet, gcvit,
# gemma4_vit, hiera, hieradet_sam2, iformer, levit, lowformer, maxxvit, mlp_mixer,
# mobilenetv5, mobilevit, mvitv2, naflexvit, nest, nextvit, pit, pvt_v2, qwen3_vit,
# sequencer, shvit, swiftformer, swin_transformer*, tiny_vit, tnt, twins, visformer,
# vision_transformer*, vitamin, volo, xcit.
MODULES = {
    "byobnet": ("repvgg_a0", "gernet_s", "mobileone_s0"),
    "convmixer": ("convmixer_768_32",),
    "convnext": ("convnext_atto",),
    "cpubone": ("cpubone_nano",),
    "cspnet": ("cspresnet50", "cspdarknet53"),
    "cspnext": ("cspnext_tiny",),
    "densenet": ("densenet121",),
    "dla": ("dla34",),
    "dpn": ("dpn68",),
    "efficientnet": ("efficientnet_b0", "tinynet_e", "fbnetc_100", "mixnet_s"),
    "fasternet": ("fasternet_t0",),
    "fastvit": ("fastvit_t8",),
    "ghostnet": ("ghostnet_100",),
    "hardcorenas": ("hardcorenas_a",),
    "hgnet": ("hgnet_tiny", "hgnetv2_b0"),
    "hrnet": ("hrnet_w18_small",),
    "inception_next": ("inception_next_atto",),
    "inception_resnet_v2": ("inception_resnet_v2",),
    "inception_v3": ("inception_v3",),
    "inception_v4": ("inception_v4",),
    "lcnetv2": ("lcnetv2_small",),
    "mambaout": ("mambaout_femto",),
    "metaformer": ("poolformer_s12", "convformer_s18"),
    "mobilenetv3": ("mobilenetv3_large_100", "lcnet_050", "mobilenetv4_conv_small"),
    "nasnet": ("nasnetalarge",),
    "nfnet": ("nf_resnet26",),
    "pnasnet": ("pnasnet5large",),
    "rdnet": ("rdnet_tiny",),
    "regnet": ("regnetx_002", "regnety_002"),
    "repghost": ("repghostnet_050",),
    "repvit": ("repvit_m0_9",),
    "res2net": ("res2net50_26w_4s",),
    "resnest": ("resnest14d",),
    "resnet": ("resnet18", "seresnext26d_32x4d"),
    "resnetv2": ("resnetv2_50",),
    "rexnet": ("rexnet_100",),
    "selecsls": ("selecsls42b",),
    "senet": ("legacy_seresnet18",),
    "sknet": ("skresnet18",),
    "starnet": ("starnet_s1",),
    "tresnet": ("tresnet_m",),
    "vgg": ("vgg11",),
    "vovnet": ("ese_vovnet19b_dw",),
    "xception": ("legacy_xception",),
    "xception_aligned": ("xception41",),
}
MODELS = tuple(name for names in MODULES.values() for name in names)
MODULE_OF = {name: module for module, names in MODULES.items() for name in names}


class TimedOut(Exception):
    """The model took longer than its limit."""


def _alarm(signum, frame):
    raise TimedOut


def first_problem(diagnostics) -> str:
    """The first error, in one short line, for the table."""
    for d in diagnostics:
        if d.is_error:
            text = re.sub(r"\s+", " ", d.message).replace("|", "\\|")
            return text[:140] + ("…" if len(text) > 140 else "")
    return "no spec written"


def run_one(name: str, timeout: int) -> tuple[bool, str, float]:
    """(exact, first missing construct, seconds) of importing timm's `name`."""
    start = time.process_time()
    signal.signal(signal.SIGPROF, _alarm)
    signal.setitimer(signal.ITIMER_PROF, timeout)  # CPU seconds of the process
    try:
        text, diagnostics = import_network("timm:create_model", {"model_name": name})
        exact, problem = text is not None, "" if text is not None else first_problem(diagnostics)
    except TimedOut:
        exact, problem = False, f"over {timeout} CPU s"
    except Exception as error:  # an importer bug: say so in the table, go on to the next
        text = re.sub(r"\s+", " ", f"{type(error).__name__}: {error}").replace("|", "\\|")
        exact, problem = False, f"importer bug: {text[:120]}"
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    return exact, problem, time.process_time() - start


def main(argv: list[str] | None = None) -> None:
    """Print the table for the models named (default: MODELS)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(MODELS))
    parser.add_argument("--timeout", type=int, default=60, help="CPU seconds per model")
    options = parser.parse_args(argv)
    written = yaml.safe_load(INDEX.read_text()) or {}
    print("| timm module | model | exact | first missing construct | CPU s | spec in specs/timm/ |")
    print("|---|---|---|---|---:|---|")
    count = 0
    for name in options.names:
        exact, problem, seconds = run_one(name, options.timeout)
        count += exact
        module = MODULE_OF.get(name, "?")
        spec = f"`{written[name]['spec']}`" if name in written else ""  # (in specs/timm/)
        print(f"| {module}.py | {name} | {'yes' if exact else 'no'} | {problem} | {seconds:.1f} "
              f"| {spec} |", flush=True)
    modules = {MODULE_OF.get(n) for n in options.names}
    rate = 100 * count / len(options.names)
    print(f"\n{count} of {len(options.names)} models exact ({rate:.0f}%),"
          f" {len(modules)} timm modules")


if __name__ == "__main__":
    main()
