"""A deficit plug-in: any callable `(x, y, ctx, **options) -> (x, y)`, called on every training batch
of the window [onset, onset + length).

`ctx.generator` is this epoch's generator, derived from the trial's seed and the epoch, so the trial stays
a pure function of its spec and seed (a resumed trial draws the same masks). Return tensors shaped like
the inputs; never change `x` in place.
"""

from __future__ import annotations

import torch


def sensor_dropout(x: torch.Tensor, y: torch.Tensor, ctx, fraction: float = 0.5):
    """Silence a random `fraction` of each input's positions (a sensor that drops out), fresh every batch."""
    keep = torch.rand(x.shape[0], 1, x.shape[-1], generator=ctx.generator, device=ctx.generator.device)
    return x * (keep >= fraction).to(x.device, x.dtype), y
