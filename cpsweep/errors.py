"""Exceptions of cpsweep.

`CpsweepError` and its subclasses are user mistakes or environment problems that the command line
turns into one line on stderr and exit code 2 (no traceback). `TrialDiverged` ends a trial whose loss
became non-finite; the sweep records it as `diverged` and goes on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


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
        self.problems: tuple[SpecError, ...] = (self,)  # every mistake found; several with `SpecError.of`
        where = f"{source}: " if source else ""
        super().__init__(f"{where}{field}: {message}")

    def __reduce__(self):
        """Pickle (a Ray worker sends its exceptions to the driver): rebuilt from the constructor's arguments,
        with the message and every listed mistake kept."""
        return type(self), (self.field, self.message, self.source), {"args": self.args, "problems": self.problems}

    @classmethod
    def of(cls, errors: list[SpecError], source: str | None = None) -> SpecError:
        """One error for every mistake in `errors` (flattened), naming `source`: the first mistake's field
        and message, and a message listing up to `SHOWN` of them, one per line."""
        problems = tuple(dict.fromkeys((p.field, p.message) for e in errors for p in e.problems))
        first = cls(*problems[0], source)
        if len(problems) > 1:
            where = f"{source}: " if source else ""
            lines = [f"  {field}: {message}" for field, message in problems[:SHOWN]]
            if len(problems) > SHOWN:
                lines.append(f"  ... and {len(problems) - SHOWN} more")
            first.args = (f"{where}{len(problems)} problems; fix them and run again:\n" + "\n".join(lines),)
        first.problems = tuple(cls(f, m, source) for f, m in problems)
        return first


SHOWN = 8  # mistakes listed in one error; the rest are counted


class Problems:
    """Collects `SpecError`s so that a file's independent parts are all checked before one error is raised.

        problems = Problems()
        with problems.check():
            parse_section(...)
        problems.raise_any(source)
    """

    def __init__(self) -> None:
        self.errors: list[SpecError] = []

    @contextlib.contextmanager
    def check(self) -> Iterator[None]:
        try:
            yield
        except SpecError as e:
            self.errors.append(e)

    def raise_any(self, source: str | None = None) -> None:
        if self.errors:
            raise SpecError.of(self.errors, source)


class StorageError(CpsweepError):
    """A results folder or bucket that cannot be reached, listed, read or written."""


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

    def __reduce__(self):
        return type(self), (self.epoch, self.loss)
