"""Live progress: epochs done / total and the ETA from per-epoch results, a bar on a terminal, a plain line
at most every 30 s otherwise, live.json for `cpsweep status` (issue 14, item 3)."""

from __future__ import annotations

import io
import json

import pytest

from cpsweep.storage.store import Store
from cpsweep.sweep.live import Live, describe, format_seconds, read_live


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_counts_the_epochs_this_launch_trains_and_the_eta_at_its_rate(tmp_path):
    clock, out = Clock(), io.StringIO()
    # a: 10 epochs from scratch; b: 10 epochs, the first 4 from a shared prefix; c: 6 epochs, 2 from a checkpoint
    live = Live(Store(str(tmp_path)), {"a": 10, "b": 10, "c": 6}, {"b": 4, "c": 2}, out, tty=False, clock=clock)
    assert live.total == 10 + 6 + 4
    live.started("a")
    live.started("b")
    clock.t += 5
    live.epoch("a", 0)
    live.epoch("b", 4)  # b's first trained epoch is epoch 4
    assert live.epochs_done() == 2
    clock.t += 15
    for e in range(1, 4):
        live.epoch("a", e)
    assert live.epochs_done() == 5
    # brute force: the rate since the first reported epoch (t = 5 s, 1 epoch done): 4 epochs in 15 s, 15 left
    assert live.eta() == pytest.approx(15 * 15 / 4)
    live.epoch("a", 2)  # a retried trial reports an epoch again: counted once
    assert live.epochs_done() == 5
    live.ended("a")
    assert live.done["a"] == 10 and "a" not in live.at
    live.ended("c", trained=False)  # failed before training anything: leaves the total
    assert live.total == 10 + 6 and live.epochs_done() == 11
    assert live.summary() == f"training: 11/16 epochs (69%), 1 running, ETA {format_seconds(5 * 15 / 10)}"


def test_no_eta_before_a_measured_rate(tmp_path):
    """The first epoch carries the start of Ray, the workers and the data: no ETA from it alone."""
    clock = Clock()
    live = Live(None, {"a": 100}, {}, io.StringIO(), tty=False, clock=clock)
    live.started("a")
    clock.t += 30  # starting up
    for e in range(4):
        live.epoch("a", e)
        assert live.eta() is None and live.summary().endswith("ETA after the first epochs")
        clock.t += 1
    live.epoch("a", 4)  # 4 epochs in 4 s after the first: 95 left at 1 s each
    assert live.eta() == pytest.approx(95.0)


def test_a_plain_line_at_the_first_epoch_then_at_most_every_30_s(tmp_path):
    clock, out = Clock(), io.StringIO()
    live = Live(None, {"a": 100}, {}, out, tty=False, clock=clock)
    for e in range(100):
        clock.t += 7  # 7 s per epoch: lines at epochs 0, 5 (35 s later), 10, ...
        live.epoch("a", e)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("training: 1/100 epochs (1%), 1 running, ETA")
    assert lines[1].startswith("training: 6/100 epochs")
    assert len(lines) == 20  # one every 5 epochs = 35 s


def test_a_bar_on_a_terminal_and_log_lines_above_it():
    clock, out = Clock(), io.StringIO()
    live = Live(None, {"a": 50, "b": 50}, {"b": 10}, out, tty=True, clock=clock)
    live.started("a")
    clock.t += 3
    live.epoch("a", 0)
    live.write("[1/2] ok a")
    live.close()
    text = out.getvalue()
    assert "training" in text and "1/90" in text and "epoch" in text and "[1/2] ok a\n" in text


def test_live_json_and_what_status_makes_of_it(tmp_path):
    clock = Clock(1_700_000_000.0)
    store = Store(str(tmp_path))
    live = Live(store, {"a": 40, "b": 40}, {}, io.StringIO(), tty=False, clock=clock, save_every=0)
    live.started("a")
    live.started("b")
    clock.t += 10
    live.epoch("a", 9)  # the first report: the rate is measured from here
    clock.t += 10
    live.epoch("b", 4)
    state = read_live(store)
    assert state["epochs_done"] == 15 and state["epochs_total"] == 80 and not state["finished"]
    assert state["running"] == {"a": {"epoch": 10, "epochs": 40}, "b": {"epoch": 5, "epochs": 40}}
    assert state["eta_seconds"] == pytest.approx(65 * 10 / 5)
    lines = describe(state, now=clock.t + 20)  # read 20 s later: the ETA counts down
    assert lines[0].endswith(f"15/80 epochs trained (19%), ETA {format_seconds(65 * 10 / 5 - 20)}")
    assert "20 s ago" in lines[0]
    assert lines[1:] == ["  running a: epoch 10/40", "  running b: epoch 5/40"]
    live.close()
    assert read_live(store)["finished"] and describe(read_live(store))[0].startswith("last launch ended")


@pytest.mark.slow
def test_a_launch_shows_progress_within_an_epoch_and_status_sees_running_trials(watched_launch):
    """A real local launch (the one shared with test_local_ray.py, tests/watched_launch.py): a progress line
    before any trial ends, and `cpsweep status` run while it trained showed the running trials."""
    seen = watched_launch
    assert seen.returncode == 0, seen.stderr
    assert seen.status_while_running is not None, "status never showed a running trial"
    assert "launch in progress" in seen.status_while_running and "ETA" in seen.status_while_running
    assert ": epoch " in seen.status_while_running
    lines = seen.stdout.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("training: "))
    assert first < next(i for i, line in enumerate(lines) if line.startswith("[1/2]"))  # before any trial ends
    assert json.loads((seen.out / "tiny" / "live.json").read_text())["finished"]
