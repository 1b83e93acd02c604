"""A user's metrics: callables measured at the epochs the Fisher trace is (and at initialisation), each
stored as its own column `metric.<name>` of the epochs table, drawn in the report, and usable as the
measure of the sensitivity instead of accuracy (`cpsweep report --measure metric.<name>`).

    metrics: [{name: my_metrics:corrupted_accuracy, severity: 3}]       # in a sweep file

A metric is `fn(model, data, ctx, **options) -> float`: the model in eval mode after the BN refresh, the
trial's `engine.data.Dataset` (whole tensors on the device; `data.inputs(x)` gives what the model reads),
and a `MetricContext`. It returns a number (a 0-d tensor is fine); as a measure of sensitivity a higher
value must be better, and values in [0, 1] read as points like accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config.spec import Component
from ..errors import SpecError
from ..storage.records import METRIC


@dataclass
class MetricContext:
    """What a metric receives besides the model and the data.

    Attributes:
        epoch: the epoch just trained (-1: at initialisation).
        device: where the model and the data are.
        generator: derived from (seed, epoch), on the CPU, for any randomness (e.g. a corruption's noise):
            draw on its device and move the result (the same numbers on any device).
        autocast: a context manager for the trial's precision (`with ctx.autocast(): model(x)`).
    """
    epoch: int
    device: torch.device
    generator: torch.Generator
    autocast: Callable[[], Any]


@dataclass(frozen=True)
class BoundMetric:
    column: str                     # "metric.<name>"
    fn: Callable[..., Any]
    options: dict[str, Any]


def bind(metric: Component, load: Callable[[Component], Callable[..., Any]]) -> BoundMetric:
    return BoundMetric(METRIC + metric.label, load(metric), dict(metric.options))


def measure(metrics: list[BoundMetric], model: nn.Module, data: Any, ctx: MetricContext) -> dict[str, float]:
    """Every metric's value on the model as it is now (left in eval mode).

    Raises:
        SpecError: a metric that returns something other than a number (deterministic: never retried).
    """
    out = {}
    for m in metrics:
        model.eval()
        value = m.fn(model, data, ctx, **m.options)
        try:
            out[m.column] = float(value.item() if isinstance(value, torch.Tensor) else value)
        except (TypeError, ValueError, RuntimeError):
            raise SpecError("metrics", f"{m.column[len(METRIC):]} returned a {type(value).__name__}; a metric returns "
                                       f"one number (docs/plugins.md)") from None
        if math.isinf(out[m.column]):
            raise SpecError("metrics", f"{m.column[len(METRIC):]} returned {out[m.column]}; a metric returns a "
                                       f"finite number (NaN where undefined)")
    return out
