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

from archc import import_network

# One default member per timm model module (two where a module holds two families).
MODELS = (
    "resnet18", "seresnext26d_32x4d", "repvgg_a0", "gernet_s", "mobileone_s0", "dla34",
    "hrnet_w18_small", "cspresnet50", "cspdarknet53", "res2net50_26w_4s", "skresnet18",
    "resnest14d", "rexnet_100", "dpn68", "ghostnet_100", "repghostnet_050", "mixnet_s",
    "nf_resnet26", "tresnet_m", "inception_v3", "inception_v4", "inception_resnet_v2",
    "efficientnet_b0", "tinynet_e", "fbnetc_100", "mobilenetv3_large_100", "lcnet_050",
    "mobilenetv4_conv_small", "regnetx_002", "regnety_002", "densenet121", "vgg11",
    "convnext_atto", "selecsls42b", "xception41", "legacy_seresnet18", "resnetv2_50",
    "ese_vovnet19b_dw", "hgnet_tiny", "hgnetv2_b0", "rdnet_tiny", "starnet_s1",
)


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
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    return exact, problem, time.process_time() - start


def main(argv: list[str] | None = None) -> None:
    """Print the table for the models named (default: MODELS)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(MODELS))
    parser.add_argument("--timeout", type=int, default=60, help="CPU seconds per model")
    options = parser.parse_args(argv)
    print("| model | exact | first missing construct | CPU s |")
    print("|---|---|---|---|")
    count = 0
    for name in options.names:
        exact, problem, seconds = run_one(name, options.timeout)
        count += exact
        print(f"| {name} | {'yes' if exact else 'no'} | {problem} | {seconds:.1f} |", flush=True)
    print(f"\n{count} of {len(options.names)} exact")


if __name__ == "__main__":
    main()
