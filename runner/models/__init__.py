"""Small reusable networks. Every model takes `input_shape` and `n_classes` from the data set."""
from __future__ import annotations

import torch


def param_layers(model: torch.nn.Module) -> list[tuple[str, list[torch.nn.Parameter]]]:
    """The model's layers in registration order: each module that owns parameters directly, with
    them. For the sequential nets here (mlp, cnn) this is the forward order, input side first."""
    out = []
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False)]
        if params:
            out.append((name, params))
    return out
