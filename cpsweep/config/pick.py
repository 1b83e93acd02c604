"""The one trial of a sweep that `cpsweep trial` runs: its window and seed from the flags, and one value of
each other grid axis (`schedule`, `deficit`, `model`, a dotted axis such as `optim.lr`) from `--axis
AXIS=VALUE`, else the axis's first value. The trial is the sweep's own: the same spec and id as in
`SweepSpec.trials()`, so a trial run alone can be compared with, or debugged for, the sweep's.

A VALUE is read as YAML, parsed as the axis's values are (`--axis optim.lr=1e-1` is 0.1), and matches a grid
value equal to it, or, given as a name, the grid value of that name (`deficit=blur` for `{name: blur,
factor: 4}`, `model=my_models:TinyConv`, `schedule=restart`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import SpecError
from .grid import axis_value
from .spec import TrialSpec, component_name
from .sweep_file import SweepSpec
from .yaml_text import read_yaml

FIXED_BY_FLAGS = ("onset", "length", "seed")  # grid axes `cpsweep trial` takes from --onset/--length/--seed


def other_axes(sweep: SweepSpec) -> list[str]:
    """The grid axes besides onset, length and seed, in the file's order (the order of a trial id's tags)."""
    return [k for k in sweep.grid if k not in FIXED_BY_FLAGS]


def _name(value: Any) -> str | None:
    name = component_name(value)
    return name if isinstance(name, str) else None


def as_typed(value: Any) -> str:
    """A grid value as a user writes it after --axis: a component by its name, a list as a list."""
    return _name(value) or str(list(value) if isinstance(value, tuple) else value)


def _match(axis: str, text: str, values: Sequence[Any], sweep: SweepSpec) -> Any:
    try:  # read as the grid's own values are (`grid.axis_value`: 1e-1 is the 0.1 of grid.optim.lr)
        wanted = axis_value(axis, read_yaml(text), sweep.raw)
    except Exception:  # noqa: BLE001 - not YAML: taken as a name
        wanted = text
    for value in values:
        if value == wanted or axis_value(axis, value, sweep.raw) == wanted:
            return value
    named = [v for v in values if isinstance(wanted, str) and wanted in (_name(v), (_name(v) or "").rpartition(":")[2])]
    if len(named) == 1:
        return named[0]
    shown = ", ".join(as_typed(v) for v in values)
    raise SpecError(f"--axis {axis}", f"{text!r} is not one of grid.{axis}'s values: {shown}")


def pick_trial(sweep: SweepSpec, onset: int, length: int, seed: int, picks: Sequence[str] = (),
               epochs: int | None = None) -> tuple[TrialSpec, dict[str, Any], list[str]]:
    """(the trial, the value of each other grid axis, the axes left to their first value).

    Raises:
        SpecError: a pick that is not AXIS=VALUE, names no other grid axis, is given twice or matches no
            value of its axis.
    """
    axes = other_axes(sweep)
    chosen: dict[str, Any] = {}
    for item in picks:
        axis, sep, text = item.partition("=")
        if not sep or not axis:
            raise SpecError("--axis", f'"{item}" is not AXIS=VALUE; write e.g. --axis schedule=restart')
        if axis not in axes:
            raise SpecError("--axis", f'"{axis}" is not a grid axis of this sweep besides onset, length and seed; '
                                      f"its others: {', '.join(axes) or 'none'}")
        if axis in chosen:
            raise SpecError(f"--axis {axis}", "given twice; give it once")
        chosen[axis] = _match(axis, text, sweep.grid[axis], sweep)
    defaulted = [a for a in axes if a not in chosen]
    values = {a: chosen.get(a, sweep.grid[a][0]) for a in axes}
    settings = {a: v for a, v in values.items() if a != "deficit"}
    trial = sweep.make_trial(onset, length, seed, deficit=values.get("deficit"), settings=settings, epochs=epochs)
    return trial, values, defaulted
