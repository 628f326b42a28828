"""Graph-level passes over a checked `Network`: rewrites that the whole-network view allows.

    plan = fold_for_inference(net)        # no torch: a new Network plus what was folded
    fast = inference_module(net, model)   # torch: the folded module with the model's weights

The passes read and write the resolved network (archc/compiler/graph.py), never a traced module, so
every backend (torch module, standalone Python, ONNX) can emit their result. Only the
functions that build or fill torch modules import torch, and only when they are called.
"""

from archc.passes.fold import (
    Fold,
    InferencePlan,
    InputFold,
    find_input_folds,
    fold_for_inference,
    fold_state_dict,
    inference_module,
)

__all__ = ["Fold", "InferencePlan", "InputFold", "find_input_folds", "fold_for_inference",
           "fold_state_dict", "inference_module"]
