"""archc: a declarative architecture-spec compiler for convolutional networks.

    import archc
    net = archc.load("specs/resnet34.arch", num_classes=2)   # checked, torch-free
    model = archc.build("specs/resnet34.arch", num_classes=2) # a torch.nn.Module
    model = archc.build("resnet50", num_classes=2)            # a zoo network by name
    archc.list_models()                                       # ['alexnet', 'convnext_base', ...]

This module is archc's one public face: the runtime, the benchmarks, the tools and users
import from here, never from archc's inner modules. Importing it does not import torch;
the functions that need torch import it when called.
"""
from archc.api import (
    CheckResult,
    build,
    bundle,
    cache_folder,
    cache_root,
    check,
    classifier_heads,
    emit_dot,
    emit_onnx,
    emit_python,
    import_network,
    inference_module,
    init_weights,
    list_models,
    load,
    parse_assignments,
    parse_value,
    register_leaf,
    render,
    save_weights,
    to_module,
    zoo_entries,
)
from archc.backends import ONNX_INPUT, InitError
from archc.compiler.diagnostics import Diagnostic
from archc.compiler.graph import LayerNode, Network, layers
from archc.compiler.limits import get as limit
from archc.compiler.limits import hint as limit_hint
from archc.compiler.outputs import (
    OutputRefused,
    check_outputs,
    foreign_entries,
    fsync_path,
    mark,
    staged_outputs,
    write_output,
)
from archc.compiler.render import SpecError
from archc.compiler.sources import Program

__all__ = [
    "CheckResult", "Diagnostic", "InitError", "LayerNode", "Network", "ONNX_INPUT",
    "OutputRefused", "Program", "SpecError", "build", "bundle", "cache_folder", "cache_root",
    "check", "check_outputs", "classifier_heads", "emit_dot", "emit_onnx", "emit_python",
    "foreign_entries", "fsync_path", "import_network", "inference_module", "init_weights",
    "layers", "limit", "limit_hint", "list_models", "load", "mark", "parse_assignments",
    "parse_value", "register_leaf", "render", "save_weights", "staged_outputs", "to_module",
    "write_output",
    "zoo_entries",
]
__version__ = "0.1.0"
