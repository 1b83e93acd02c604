"""The `search:` section of a sweep file: find where the critical period ends instead of running every onset.

    grid:
      onset: {from: 0, to: 100, step: 5}   # the onsets a window may start at: the resolution is 5 epochs
      length: [20]
    search:                                # adaptive: run a few onsets, then refine where it matters
      coarse: 50                           # round 0: every 50 epochs of the range (0, 50, 100)
      threshold: 0.0                       # "in" the critical period: shown to cost more than this (BH)
      margin: 0.5                          # "out": shown to cost less than threshold + margin
      max_rounds: 10
      max_epochs: null                     # a budget of epochs trained; null: none

Without `search:` the same grid runs every onset of the range. With it, round 0 runs the coarse onsets of
every window length (and deficit, schedule, ... : each such group is searched on its own) for every seed;
after each round, `results/boundary.py` classifies each onset from the paired t-intervals over seeds and
adds onsets of the grid only where they can move the end of the critical period
(`sweep/adaptive.py` runs the rounds). Parsing only: no torch, no ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from ..errors import SpecError
from ._parse import Range, check_keys, parse, scientific_whole
from .epoch_rule import epoch_int

RANGE_KEYS = ["from", "to", "step"]
# the ranges of the search settings' numbers (`parse_search`; `schema.py` publishes them)
RANGES = {"threshold": Range(0, None, "must be >= 0 (points of final accuracy a window is shown to cost more than)"),
          "margin": Range(0, None, "must be > 0 (points of final accuracy)", open_low=True),
          "max_rounds": Range(0, None, "must be >= 0"),
          "max_epochs": Range(1, None, "must be >= 1 or null"),
          "max_trials": Range(1, None, "must be >= 1 or null"),
          "coarse": Range(1, None, "a step must be >= 1 epoch (or give the onsets as a list)")}


@dataclass(frozen=True)
class SearchSpec:
    coarse: int | tuple[int, ...] | None = None  # round 0: a step in epochs, or the onsets; None: 5 spread
    threshold: float = 0.0      # points of final accuracy: "in" when shown to cost more (BH over onsets)
    margin: float = 0.5         # "out" when the one-sided 95 % upper bound lies below threshold + margin
    max_rounds: int = 10        # rounds after round 0
    max_epochs: int | None = None   # stop adding rounds once this many epochs would be trained in all
    max_trials: int | None = None   # ... or this many trials would exist

    def to_dict(self) -> dict[str, Any]:
        coarse = list(self.coarse) if isinstance(self.coarse, tuple) else self.coarse
        return {"coarse": coarse, "threshold": self.threshold, "margin": self.margin,
                "max_rounds": self.max_rounds, "max_epochs": self.max_epochs, "max_trials": self.max_trials}


def parse_search(raw: Any) -> SearchSpec | None:
    """The `search:` section, checked; None when the file has none."""
    if raw is None:
        return None
    spec = parse(SearchSpec, raw, "search")
    for key, r in RANGES.items():
        if not r.holds(getattr(spec, key)):
            raise SpecError(f"search.{key}", r.message)
    return spec


def onset_range(raw: Any, path: str = "grid.onset") -> list[int]:
    """`{from: A, to: B, step: S}` -> [A, A + S, ..., <= B] (both ends whole epochs, step >= 1)."""
    check_keys(raw, RANGE_KEYS, path)
    values = {}
    for key in RANGE_KEYS:
        v = scientific_whole(raw.get(key))
        if isinstance(v, bool) or not isinstance(v, int) or v < (1 if key == "step" else 0):
            what = "a whole number of epochs >= 1" if key == "step" else "a whole number of epochs >= 0"
            raise SpecError(f"{path}.{key}", f"required: {what}, got {v!r}; e.g. {path.rpartition('.')[2]}: "
                                             "{from: 0, to: 100, step: 5}")
        values[key] = epoch_int(v, f"{path}.{key}")
    if values["to"] < values["from"]:
        raise SpecError(f"{path}.to", f"must be >= from ({values['from']}), got {values['to']}")
    return list(range(values["from"], values["to"] + 1, values["step"]))


def coarse_onsets(search: SearchSpec, lattice: Sequence[int]) -> list[int]:
    """Round 0's onsets among `lattice` (sorted): always its first and last; with a step, every onset of the
    lattice a multiple of the step away from the first (or the nearest lattice onset to it); with a list,
    those onsets; by default 5 spread evenly."""
    lattice = sorted(lattice)
    first, last = lattice[0], lattice[-1]
    if isinstance(search.coarse, tuple):
        missing = [o for o in search.coarse if o not in lattice]
        if missing:
            raise SpecError("search.coarse", f"onsets {missing} are not in grid.onset; pick coarse onsets from it")
        wanted = list(search.coarse)
    elif isinstance(search.coarse, int):
        wanted = list(range(first, last + 1, search.coarse))
    else:
        wanted = [first + (last - first) * i / 4 for i in range(5)]
    picked = {min(lattice, key=lambda o: (abs(o - w), o)) for w in wanted}
    return sorted(picked | {first, last})
