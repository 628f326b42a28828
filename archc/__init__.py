"""archc: a declarative architecture-spec compiler for convolutional networks.

    import archc
    net = archc.load("specs/resnet34.arch", num_classes=2)   # checked, torch-free
    model = archc.build("specs/resnet34.arch", num_classes=2) # a torch.nn.Module
"""
from archc.api import CheckResult, build, check, load
from archc.compiler.diagnostics import Diagnostic, SpecError
from archc.tools.outputs import OutputRefused, check_outputs, foreign_entries, mark

__all__ = ["CheckResult", "Diagnostic", "OutputRefused", "SpecError", "build", "check",
           "check_outputs", "foreign_entries", "load", "mark"]
__version__ = "0.1.0"
