"""What a trial does at each epoch, from its spec alone (no torch): learning rate, deficit, Fisher.

These three decide an epoch's computation and record besides the fixed settings, so shared-prefix
planning (`sharing.py`) and the training loop (`engine/trial.py`) both read them from here.
"""

from __future__ import annotations

import math

from .spec import ScheduleSpec, TrialSpec


def lr_at(schedule: ScheduleSpec, lr0: float, epoch: int, epochs: int, restart_at: int | None = None) -> float:
    """Learning rate of `epoch` (0-based) from the global epoch index.

    With `restart_at` (the window's end, when `restart_after_deficit` is set) the schedule starts again
    at that epoch, as if training began there.
    """
    if restart_at is not None and epoch >= restart_at:
        epoch, epochs = epoch - restart_at, epochs - restart_at
    if schedule.name == "exponential":
        return lr0 * schedule.gamma ** epoch
    if schedule.name == "step":
        return lr0 * schedule.gamma ** (epoch // schedule.step_size)
    if schedule.name == "cosine":
        return lr0 * 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))
    return lr0


def trial_lr(trial: TrialSpec, epoch: int) -> float:
    """The learning rate `trial` trains `epoch` with."""
    return lr_at(trial.schedule, trial.optim.lr, epoch, trial.epochs, trial.restart_at)


def fisher_due(trial: TrialSpec, epoch: int) -> bool:
    """Whether the Fisher trace is measured after `epoch`: every `fisher.every` epochs and at the last."""
    every = trial.fisher.every
    return bool(every) and ((epoch + 1) % every == 0 or epoch == trial.epochs - 1)
