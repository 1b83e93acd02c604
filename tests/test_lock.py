"""One launch of a sweep at a time (`sweep/lock.py`): a second launch is refused while the first runs, a
lock whose driver is gone is taken over, and `cpsweep status` tells a killed launch from a running one."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest

from cpsweep.errors import CpsweepError
from cpsweep.storage.store import Store
from cpsweep.sweep import lock as lk
from cpsweep.sweep.live import Live


def write_lock(store: Store, **fields) -> None:
    state = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time() - 5,
             "heartbeat": time.time(), "token": "other", **fields}
    store.write_bytes(json.dumps(state).encode(), lk.LOCK)


def finished_pid() -> int:
    """The id of a process of this host that has ended."""
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(p.stdout)


def test_a_second_launch_is_refused_while_the_first_holds_the_lock(tmp_path):
    store = Store(str(tmp_path))
    first = lk.LaunchLock(store, "tiny")
    first.acquire()
    held = json.loads((tmp_path / lk.LOCK).read_text())
    assert held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    with pytest.raises(CpsweepError, match=rf"sweep tiny is being launched by process {os.getpid()} on host "
                                           rf".*: a second launch would train its trials twice"):
        lk.LaunchLock(store, "tiny").acquire()
    first.release()
    assert not (tmp_path / lk.LOCK).exists()
    second = lk.LaunchLock(store, "tiny")
    second.acquire()  # free again
    second.release()
    second.release()  # (idempotent)


def test_the_holder_refreshes_its_heartbeat_until_it_releases(tmp_path):
    store = Store(str(tmp_path))
    lock = lk.LaunchLock(store, "tiny", heartbeat=0.05)
    lock.acquire()
    first = lk.read_lock(store)["heartbeat"]
    time.sleep(0.4)
    assert lk.read_lock(store)["heartbeat"] > first
    lock.release()
    assert lk.read_lock(store) is None


def test_a_lock_whose_driver_is_gone_is_taken_over(tmp_path):
    store = Store(str(tmp_path))
    write_lock(store, pid=finished_pid())  # this host, a process that ended (a killed driver)
    assert not lk.alive(lk.read_lock(store))
    lock = lk.LaunchLock(store, "tiny")
    lock.acquire()
    assert lk.read_lock(store)["token"] == lock.token
    lock.release()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a running process is the holder, unless it started after the lock was written (its id reused)
        write_lock(store, pid=other.pid, started=time.time())
        assert lk.alive(lk.read_lock(store))
        write_lock(store, pid=other.pid, started=time.time() - 10 ** 6)
        assert not lk.alive(lk.read_lock(store))
    finally:
        other.kill()
        other.wait()
    # a lock this very process wrote and no longer holds (its release cut off) does not block it
    write_lock(store, pid=os.getpid(), token="released-long-ago")
    assert not lk.alive(lk.read_lock(store))
    lock = lk.LaunchLock(store, "tiny")
    lock.acquire()
    lock.release()


def test_on_another_host_the_heartbeat_decides(tmp_path):
    store = Store(str(tmp_path))
    now = time.time()
    write_lock(store, host="head-node-of-a-cluster", pid=1, heartbeat=now - 10)
    assert lk.alive(lk.read_lock(store), now)
    assert "(last seen 10 s ago)" in lk.holder(lk.read_lock(store), now)
    with pytest.raises(CpsweepError, match=r"process 1 on host head-node-of-a-cluster"):
        lk.LaunchLock(store, "tiny").acquire()
    write_lock(store, host="head-node-of-a-cluster", pid=1, heartbeat=now - lk.STALE - 1)
    assert not lk.alive(lk.read_lock(store), now)
    os.utime(tmp_path / lk.LOCK, (now - lk.STALE - 1, now - lk.STALE - 1))  # (the storage's clock agrees)
    lock = lk.LaunchLock(store, "tiny")
    lock.acquire()
    lock.release()


def test_on_another_host_the_age_is_read_on_the_storage_clock(tmp_path):
    """A holder whose clock is hours behind this host's still refreshes the file now: the storage's clock
    (the file's modification time) says it is alive; a file untouched for longer than STALE is not."""
    store = Store(str(tmp_path))
    write_lock(store, host="head-node-of-a-cluster", pid=1, heartbeat=time.time() - 10 ** 4)
    assert not lk.alive(lk.read_lock(store))  # (by the wall clocks alone it would look stopped)
    assert abs(lk.storage_age(store)) < 5 and not (tmp_path / ".clock").exists()
    with pytest.raises(CpsweepError, match=r"last seen 0 s ago\).*if it is not running, delete .*launch.json"):
        lk.LaunchLock(store, "tiny").acquire()
    old = time.time() - lk.STALE - 60
    os.utime(tmp_path / lk.LOCK, (old, old))
    assert lk.storage_age(store) > lk.STALE
    lock = lk.LaunchLock(store, "tiny")
    lock.acquire()
    lock.release()


def test_a_holder_whose_lock_was_taken_over_stops_refreshing_it_and_says_so(tmp_path, capsys):
    store = Store(str(tmp_path))
    lock = lk.LaunchLock(store, "tiny", heartbeat=0.05)
    lock.acquire()
    write_lock(store, host="head-node-of-a-cluster", pid=1, token="theirs")
    time.sleep(0.4)
    assert lk.read_lock(store)["token"] == "theirs"
    assert "sweep tiny's launch lock was taken over by process 1 on host head-node-of-a-cluster" in \
        capsys.readouterr().err
    lock.release()
    assert lk.read_lock(store)["token"] == "theirs"  # (not this launch's to remove)


def test_a_damaged_lock_does_not_block(tmp_path):
    store = Store(str(tmp_path))
    (tmp_path / lk.LOCK).write_text("{not json")
    assert lk.read_lock(store) is None and not lk.alive(None)
    lock = lk.LaunchLock(store, "tiny")
    lock.acquire()
    lock.release()


def test_status_tells_a_killed_launch_from_a_running_one(tmp_path):
    from cpsweep.sweep.live import describe, read_live

    store = Store(str(tmp_path))
    Live(store, {"a": 40, "b": 40}, {}, tty=False, save_every=0).epoch("a", 9)
    state = read_live(store)
    assert describe(state, running=True)[0].startswith("launch in progress")
    stopped = describe(state, running=False)
    assert stopped == [stopped[0]] and "the last launch stopped before it finished (its driver is gone" in stopped[0]
    assert "10/80 epochs trained): launch the sweep again to finish it" in stopped[0]


def test_status_command_on_a_folder_whose_launch_was_killed(tmp_path):
    import shutil

    from cpsweep.results.reproduction import DATA

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), DATA, "quickstart")
    folder = tmp_path / "quickstart"
    shutil.copytree(root, folder)
    Live(Store(str(folder)), {"a": 40}, {}, tty=False, save_every=0).epoch("a", 9)  # never closed
    write_lock(Store(str(folder)), pid=finished_pid())  # its driver, killed
    # a trial that finished (its shard complete) after the last flush that added rows to the tables
    from tiny_specs import tiny_sweep

    from cpsweep.config.sweep_file import parse_sweep

    late = parse_sweep(tiny_sweep(epochs=10)).make_trial(7, 1, 0)
    Store(str(folder)).write_shard(late, [], "ok")
    p = subprocess.run([sys.executable, "-m", "cpsweep.cli", "status", str(folder)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "the last launch stopped before it finished" in p.stdout and "launch in progress" not in p.stdout
    assert ("1 finished trial(s) are in shards/ but not yet in the tables, so not counted above (the last launch "
            "stopped before adding them): launching again adds them without training them") in p.stdout


def test_launch_refuses_a_sweep_another_launch_is_running_and_writes_nothing(tmp_path):
    """Before Ray starts: one line naming the holder; the folder as it was."""
    from tiny_specs import write_spec

    from cpsweep.sweep.launch import launch

    folder = tmp_path / "res" / "tiny"
    folder.mkdir(parents=True)
    holder = lk.LaunchLock(Store(str(folder)), "tiny")
    holder.acquire()
    try:
        before = sorted(p.name for p in folder.iterdir())
        with pytest.raises(CpsweepError, match=r"sweep tiny is being launched by process"):
            launch(write_spec(tmp_path), storage=str(tmp_path / "res"))
        assert sorted(p.name for p in folder.iterdir()) == before == [lk.LOCK]
        assert lk.read_lock(Store(str(folder)))["token"] == holder.token  # still the holder's
    finally:
        holder.release()
