"""Optimizers and learning-rate schedules that torch does not ship (Muon for conv nets, M-FAC,
multi-budget WSD plans); each is a config choice (`optimizer=...`, `schedule=...`) for any experiment."""
import torch


def closure_loss(closure):
    """The loss from an optimizer's optional closure (with gradients enabled), or None."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()
