"""archc: a declarative architecture-spec compiler for convolutional networks.

    import archc
    net = archc.load("specs/resnet34.arch", num_classes=2)   # checked, torch-free
    model = archc.build("specs/resnet34.arch", num_classes=2) # a torch.nn.Module
"""
from archc.api import CheckResult, build, check, load
from archc.compiler.diagnostics import Diagnostic, SpecError

__all__ = ["CheckResult", "Diagnostic", "SpecError", "build", "check", "load"]
__version__ = "0.1.0"
