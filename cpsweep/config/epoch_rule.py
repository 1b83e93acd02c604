"""A sweep file's epoch rule: how long each trial trains (no torch, no ray).

    clean_after: K      every window [onset, onset + length) is followed by the same K clean epochs, so
                        every window gets the same recovery (the paper's protocol; the default to reach for)
    epochs: E           every trial stops at epoch E: a later window gets fewer clean epochs to recover in,
                        which confounds onset with recovery time, so windows that end at different epochs
                        also need
    common_end: true    "every trial stops at `epochs`; later windows get fewer clean epochs, and the report
                        and verdicts will say recovery differs per window"

`common_end` is not a setting of any trial: it only accepts the design, so it stays out of the sweep hash
(`SweepSpec.hash`, `fixed_settings`); spec.yaml keeps it with the raw file under `spec:`. A key set to null
is not given (`clean_after=null epochs=60` on the command line switches a file's rule).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..errors import SpecError
from ._parse import coerce, scientific_whole


def nonneg_int(value: Any, path: str, what: str = "a whole number of epochs") -> int:
    value = scientific_whole(value)  # (YAML 1.1 reads 1e3 as text)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SpecError(path, f"expected {what} >= 0, got {value!r}")
    return value


MAX_EPOCHS = 10_000  # one trial's epochs at most (the paper trains 160-300): a typo such as 1e12 would hang validate


def epoch_int(value: Any, path: str) -> int:
    """An epoch count or an epoch index: a whole number from 0 to MAX_EPOCHS."""
    epochs = nonneg_int(value, path)
    if epochs > MAX_EPOCHS:
        raise SpecError(path, f"at most {MAX_EPOCHS:,} epochs (one trial's training), got {epochs:,}")
    return epochs


MAX_SEED = 2 ** 63 - 1  # seeds are stored as int64 (trials.parquet)


def seed_int(value: Any, path: str) -> int:
    """A seed: a whole number from 0 to MAX_SEED."""
    seed = nonneg_int(value, path, "a seed")
    if seed > MAX_SEED:
        raise SpecError(path, f"a seed must be at most 2**63 - 1 (they are stored as 64-bit integers), got {seed}")
    return seed


def parse_epoch_rule(raw: Mapping[str, Any]) -> tuple[int | None, int | None, bool]:
    """(epochs, clean_after, common_end): exactly one of epochs and clean_after given, at least 1;
    `common_end` true or false, and only beside `epochs`. A key set to null is not given, so that an
    override switches a file's rule: `clean_after=null epochs=60`, or `epochs=null common_end=null
    clean_after=30`."""
    given = {k: raw[k] for k in ("epochs", "clean_after", "common_end") if raw.get(k) is not None}
    if ("epochs" in given) == ("clean_after" in given):
        raise SpecError("epochs", "give exactly one of epochs (a fixed total) or clean_after "
                                  "(clean epochs after each window)")
    epochs = positive_epochs(given["epochs"], "epochs") if "epochs" in given else None
    clean_after = positive_epochs(given["clean_after"], "clean_after") if "clean_after" in given else None
    common_end = coerce(given.get("common_end", False), bool, "common_end")
    if "common_end" in given and clean_after is not None:
        raise SpecError("common_end", "means nothing with clean_after (every window already gets clean_after "
                                      "clean epochs); remove it, or give epochs: E instead of clean_after to "
                                      "stop every trial at epoch E")
    return epochs, clean_after, common_end


def positive_epochs(value: Any, path: str) -> int:
    """A number of epochs to train: a whole number from 1 to MAX_EPOCHS."""
    value = scientific_whole(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(path, f"expected a whole number of epochs >= 1, got {value!r}")
    return epoch_int(value, path)


def check_common_end(epochs: int | None, common_end: bool, window_ends: Iterable[int]) -> None:
    """With `epochs: E`, refuse windows that end at different epochs (so recover for different numbers of
    clean epochs) unless the file says `common_end: true`. `window_ends`: onset + length of every window
    trial, over every grid axis."""
    ends = sorted(set(window_ends))
    if epochs is None or common_end or len(ends) < 2 or ends[-1] > epochs:
        return  # a window ending after epoch E is refused on its own (`sweep_file._check_window`)
    first, last = ends[0], ends[-1]
    raise SpecError("epochs", f"windows end at epochs {first} and {last}, so with a common end they get "
                              f"{epochs - first} and {epochs - last} clean epochs: give clean_after: K (the same "
                              f"K clean epochs after every window), or set common_end: true to accept unequal "
                              f"recovery")
