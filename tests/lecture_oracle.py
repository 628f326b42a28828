"""The seed lecture's own PyTorch code, extracted and importable: the oracle for examples/lecture.

The lecture (shared/seed/000_e34c919e6e595e3a.txt) gives the Dogs-vs-Cats practice networks as
```-fenced Python. `load_lecture()` writes those blocks, unchanged, into a temporary module after
`import torch; import torch.nn as nn`, and fixes only the two known bugs that keep the code
from running at all, without touching the networks:

- `ResNet.__init__` calls `super(Resnet, self)`: the module gets the alias `Resnet = ResNet`;
- GoogLeNet's and ResNet's `forward` read `batch_size` from the global scope: `run()` sets that
  module-level global to the batch size before every forward pass.

The third known bug, `x.size() is not out.size()` (always true, so every non-down BottleNeck
applies its 1x1 `dim_equalizer`), changes the network, not whether it runs: it stays, and the
spec examples/lecture/resnet.arch reproduces it.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

# In CI the repository is cloned with shared/ as its sibling: the same relative layout as here.
SEED = Path(__file__).resolve().parents[2] / "shared" / "seed" / "000_e34c919e6e595e3a.txt"

# VGG-16, configuration D of the paper's Table 1, in make_layers' notation ('M' = max pool).
CFG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]

# Every name the practice code defines; if the lecture changes, extraction fails loudly.
EXPECTED_NAMES = ("AlexNet", "VGG", "make_layers", "conv_1", "conv_1_3", "conv_1_5", "max_3_1",
                  "inception_module", "GoogLeNet", "conv_block_1", "conv_block_3", "BottleNeck",
                  "ResNet")

_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
_HEADER = "import torch\nimport torch.nn as nn\n\n"
# The known-bug fixes, appended after the lecture's code (so its text stays as written).
_FIXES = ("\n\n# Fix: ResNet.__init__ calls super(Resnet, self).\nResnet = ResNet\n"
          "# Fix: forward() reads batch_size from the global scope; run() sets it.\n"
          "batch_size = None\n")


def available() -> bool:
    """True when the seed lecture is present (it lives outside the repository)."""
    return SEED.is_file()


def code_blocks(text: str) -> list[str]:
    """The bodies of the ```-fenced blocks of `text`, in order."""
    return [m.group(1) for m in _FENCE.finditer(text)]


def module_source(text: str) -> str:
    """The importable module: torch imports, the lecture's code blocks, the two fixes."""
    return _HEADER + "\n\n".join(code_blocks(text)) + _FIXES


def load_lecture(directory: Path, seed: Path = SEED) -> ModuleType:
    """Write the lecture's code as `lecture_code.py` under `directory` and import it."""
    path = Path(directory) / "lecture_code.py"
    path.write_text(module_source(seed.read_text(encoding="utf-8")), encoding="utf-8")
    spec = importlib.util.spec_from_file_location("lecture_code", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop("lecture_code", None)  # a fresh import, never a stale one
    spec.loader.exec_module(module)
    missing = [name for name in EXPECTED_NAMES if not hasattr(module, name)]
    if missing:
        raise RuntimeError(f"the lecture's code no longer defines {', '.join(missing)}")
    return module


def build(module: ModuleType, name: str, num_classes: int = 2):
    """One of the practice networks, constructed exactly as the lecture's practice does."""
    builders = {
        "alexnet": lambda: module.AlexNet(num_classes=num_classes),
        "vgg": lambda: module.VGG(module.make_layers(CFG_D), num_classes=num_classes),
        "googlenet": lambda: module.GoogLeNet(base_dim=64, num_classes=num_classes),
        "resnet": lambda: module.ResNet(base_dim=64, num_classes=num_classes),
    }
    return builders[name]()


def run(module: ModuleType, model, x):
    """`model(x)`, with the global `batch_size` its forward may read set to x's batch."""
    module.batch_size = x.shape[0]
    return model(x)
