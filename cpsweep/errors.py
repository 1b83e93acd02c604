"""Exceptions of cpsweep.

`CpsweepError` and its subclasses are user mistakes or environment problems that the command line
turns into one line on stderr and exit code 2 (no traceback). `TrialDiverged` ends a trial whose loss
became non-finite; the sweep records it as `diverged` and goes on.
"""

from __future__ import annotations


class CpsweepError(Exception):
    """A problem the user can fix; the message says what and how."""


class SpecError(CpsweepError):
    """A mistake in a sweep specification, found when it is loaded.

    Args:
        field: dotted path of the offending field, e.g. ``grid.onset`` or ``optim.lr``.
        message: what is wrong and how to fix it.
        source: the file the spec came from, if any.
    """

    def __init__(self, field: str, message: str, source: str | None = None):
        self.field = field
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {message}")


class DataError(CpsweepError):
    """A data set that cannot be found, downloaded or read."""


class TrialDiverged(Exception):
    """The training loss became non-finite.

    Args:
        epoch: the 0-based epoch in which it happened.
        loss: the offending value.
    """

    def __init__(self, epoch: int, loss: float):
        self.epoch = epoch
        self.loss = loss
        super().__init__(f"training loss became {loss} in epoch {epoch}")
