"""Windows on a training setting: for the epochs [onset, onset + length) a deficit may change how the
network trains instead of what it sees (weight decay, augmentation, learning rate, batch size, the loss or
the optimiser), as in Golatkar, Achille & Soatto (2019), who removed regularisation during early or late
windows.

Such a deficit is registered with `acts_on="training"` (a plug-in says so with the `training_window`
decorator, or `fn.acts_on = "training"`) and is called once at the start of every epoch of its window
with that epoch's `TrainingSettings`, which it changes in place:

    @training_window
    def no_weight_decay(settings, scale: float = 0.0):
        settings.weight_decay *= scale

Outside the window the epoch trains with the spec's settings: nothing a window changed carries over (the
optimiser's own state, e.g. its momentum, does). Everything else is the same as for input deficits:
baselines, length matching, equal recovery, shared prefixes and verdicts.

| name          | options        | what changes during the window |
|---------------|----------------|--------------------------------|
| weight_decay  | scale (0.0)    | the optimiser's weight decay times `scale` (0: off) |
| no_augment    |                | no data augmentation (the data set must have it on) |
| lr_scale      | scale (0.1)    | the learning rate times `scale` |
| batch_size    | size (32)      | training batches of `size` examples |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TrainingSettings:
    """How one epoch trains (what a training window may change).

    Attributes:
        epoch: the 0-based epoch (read only).
        lr: the learning rate of this epoch (the schedule's).
        weight_decay: the optimiser's L2 penalty.
        batch_size: training examples per step.
        augment: whether the data set's augmentation applies.
        loss: `loss(logits, labels) -> scalar`, cross-entropy unless changed.
        optimizer: the trial's torch optimiser (to change other hyper-parameters of its param groups, e.g.
            momentum; every epoch starts with the spec's values again).
        generator: this epoch's generator, derived from (seed, epoch), for any randomness.
    """
    epoch: int
    lr: float
    weight_decay: float
    batch_size: int
    augment: bool
    optimizer: torch.optim.Optimizer
    generator: torch.Generator
    loss: Loss = F.cross_entropy


def training_window(fn: Callable) -> Callable:
    """Mark a plug-in deficit as a window on the training settings (`fn(settings, **options)`)."""
    fn.acts_on = "training"
    return fn


@training_window
def weight_decay(settings: TrainingSettings, scale: float = 0.0) -> None:
    settings.weight_decay *= scale


@training_window
def no_augment(settings: TrainingSettings) -> None:
    settings.augment = False


@training_window
def lr_scale(settings: TrainingSettings, scale: float = 0.1) -> None:
    settings.lr *= scale


@training_window
def batch_size(settings: TrainingSettings, size: int = 32) -> None:
    settings.batch_size = size
