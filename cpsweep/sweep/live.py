"""Live progress of a running launch, driven by every trained epoch a trial reports to Tune.

`Live` counts the epochs trained in this launch against the epochs it has to train (its trials' epochs
minus those that come from shared prefixes or earlier checkpoints) and estimates the time left from the
rate so far. On a terminal it draws a tqdm bar (epochs done / total, rate, ETA); otherwise it prints a
plain line at the first epoch, then at most every `every` seconds. It also writes `live.json` to the
results folder (at most every `save_every` seconds) for `cpsweep status`: each running trial's epoch, the
sweep's epochs done and total, and the ETA, with the time they were true.

The one-line-per-finished-trial log of `progress.Progress` goes through `Live.write`, so on a terminal the
bar stays below the lines.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from ..storage.store import Store

LIVE = "live.json"


MEASURED = 4  # epochs done after the first reported one before an ETA is shown


class Live:
    """Epochs done / total and an ETA for one launch (pickled with Tune's callback: the bar is not)."""

    def __init__(self, store: Store | None, epochs: Mapping[str, int], starts: Mapping[str, int],
                 out: TextIO | None = None, tty: bool | None = None, every: float = 30.0, save_every: float = 10.0,
                 clock: Callable[[], float] = time.time):
        self.store, self.out, self.every, self.save_every, self.clock = store, out, every, save_every, clock
        self.epochs = dict(epochs)                      # trial id -> its total epochs
        self.start = {t: int(starts.get(t, 0)) for t in epochs}  # epochs it does not train here
        self.done: dict[str, int] = {t: 0 for t in epochs}       # epochs trained in this launch
        self.done_sum = 0                               # their sum (kept, not summed per event)
        self.at: dict[str, int] = {}                    # running trial -> epochs it has reached
        self.total = sum(self.epochs[t] - self.start[t] for t in epochs)
        self.tty = tty
        self.began: float | None = None
        self.first: tuple[float, int] | None = None    # (time, epochs done) at the first reported epoch
        self.printed = self.saved = float("-inf")
        self._bar: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_bar": None, "out": None}

    # -- events ------------------------------------------------------------------------------------------
    def epoch(self, tid: str, epoch: int) -> None:
        """Trial `tid` reported its 0-based trained epoch `epoch`."""
        if tid not in self.epochs:
            return
        now = self.clock()
        if self.began is None:
            self.began = now
        self.at[tid] = epoch + 1
        self._set_done(tid, min(max(self.done[tid], epoch + 1 - self.start[tid]), self.epochs[tid]))
        if self.first is None:
            self.first = (now, self.done_sum)
        self.show(now)

    def _set_done(self, tid: str, done: int) -> None:
        self.done_sum += done - self.done[tid]
        self.done[tid] = done

    def started(self, tid: str) -> None:
        if tid in self.epochs:
            self.at.setdefault(tid, self.start[tid])
            if self.began is None:
                self.began = self.clock()

    def ended(self, tid: str, trained: bool = True) -> None:
        """Trial `tid` ended: all its epochs count as done if it `trained` them (ok or diverged), else (it
        failed) it leaves the total."""
        if tid not in self.epochs:
            return
        self.at.pop(tid, None)
        if trained:
            self._set_done(tid, self.epochs[tid] - self.start[tid])
        else:
            self.total -= self.epochs[tid] - self.start[tid] - self.done[tid]
            self.epochs[tid] = self.start[tid] + self.done[tid]
        self.show(self.clock())

    # -- figures -----------------------------------------------------------------------------------------
    def epochs_done(self) -> int:
        return self.done_sum

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left at the rate measured since the first reported epoch (so the start of Ray, of the
        workers and of the first epoch do not count); None until `MEASURED` more epochs are done."""
        now = self.clock() if now is None else now
        if self.first is None:
            return None
        (t0, d0), done = self.first, self.epochs_done()
        if done - d0 < MEASURED or now <= t0:
            return None
        return max(0, self.total - done) * (now - t0) / (done - d0)

    def summary(self, now: float | None = None) -> str:
        """'training: 120/1,020 epochs (12%), 2 running, ETA 14 min'."""
        done, total = self.epochs_done(), max(self.total, 1)
        eta = self.eta(now)
        return (f"training: {done:,}/{self.total:,} epochs ({100 * done / total:.0f}%), {len(self.at)} running, "
                f"ETA {format_seconds(eta) if eta is not None else 'after the first epochs'}")

    # -- output ------------------------------------------------------------------------------------------
    def stream(self) -> TextIO:
        return self.out or sys.stdout

    def on_terminal(self) -> bool:
        if self.tty is None:
            try:
                self.tty = bool(self.stream().isatty())
            except (AttributeError, ValueError):
                self.tty = False
        return self.tty

    def show(self, now: float, force_save: bool = False) -> None:
        if self.on_terminal():
            bar = self.bar()
            bar.total = self.total
            bar.n = self.epochs_done()
            bar.set_postfix_str(f"{len(self.at)} running", refresh=False)
            bar.refresh()
        elif now - self.printed >= self.every:
            self.printed = now
            print(self.summary(now), file=self.stream(), flush=True)
        if force_save or now - self.saved >= self.save_every:
            self.saved = now
            self.save(now)

    def bar(self) -> Any:
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, unit="epoch", file=self.stream(), dynamic_ncols=True,
                             desc="training", smoothing=0.05)
        return self._bar

    def write(self, line: str) -> None:
        """A log line (a finished trial) printed above the bar."""
        if self._bar is not None:
            self._bar.write(line, file=self.stream())
        else:
            print(line, file=self.stream(), flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self.save(self.clock(), finished=True)

    def save(self, now: float, finished: bool = False) -> None:
        """live.json: what `cpsweep status` shows about a running launch."""
        if self.store is None:
            return
        eta = None if finished else self.eta(now)
        running = {} if finished else {t: {"epoch": e, "epochs": self.epochs[t]} for t, e in sorted(self.at.items())}
        state = {"updated": now, "finished": finished, "epochs_done": self.epochs_done(), "epochs_total": self.total,
                 "eta_seconds": eta, "running": running}
        self.store.write_bytes(json.dumps(state, indent=1).encode(), LIVE)


def read_live(store: Store) -> dict[str, Any] | None:
    """The launch's live.json, or None if there is none (or it cannot be parsed)."""
    if not store.exists(LIVE):
        return None
    try:
        return json.loads(store.read_bytes(LIVE))
    except ValueError:
        return None


# how a launch that stopped is finished: said by `cpsweep status` and by the interrupted launch itself
FINISH_HINT = "finished trials are kept, interrupted ones resume from their last checkpoint"


def describe(state: Mapping[str, Any], now: float | None = None, running: bool = True) -> list[str]:
    """`cpsweep status` lines for a live.json: the launch's epochs and ETA as of its last update, then one
    line per running trial; or, for a launch that is no longer `running` (its driver gone, `lock.alive`)
    though it never finished, that it stopped and how to finish it."""
    now = time.time() if now is None else now
    age = max(0.0, now - state["updated"])
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state["updated"]))
    if state.get("finished"):
        return [f"last launch ended {when}"]
    if not running:
        return [f"the last launch stopped before it finished (its driver is gone; last progress {when}, "
                f"{state['epochs_done']:,}/{state['epochs_total']:,} epochs trained): launch the sweep again to "
                f"finish it ({FINISH_HINT})"]
    total = max(int(state["epochs_total"]), 1)
    eta = state.get("eta_seconds")
    left = "unknown yet" if eta is None else format_seconds(max(0.0, eta - age))
    head = (f"launch in progress (as of {when}, {format_seconds(age)} ago): {state['epochs_done']:,}/"
            f"{state['epochs_total']:,} epochs trained ({100 * state['epochs_done'] / total:.0f}%), ETA {left}")
    lines = [head]
    lines += [f"  running {tid}: epoch {r['epoch']}/{r['epochs']}" for tid, r in state.get("running", {}).items()]
    return lines


def format_seconds(seconds: float) -> str:
    """'45 s', '14 min', '3 h 05 min', '2 d 4 h'."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"
