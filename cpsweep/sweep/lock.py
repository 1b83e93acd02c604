"""One launch of a sweep at a time, and whether a launch is still alive.

Two launches of one sweep would train the same trials twice, race on their checkpoints and shards and
leave tables that do not read. A launch therefore holds `launch.json` in the results folder while it
runs: the driver's host, process id and start time, refreshed every `HEARTBEAT` seconds by a daemon
thread, and removed when the launch ends (however it ends). A second launch finds it and stops before
anything runs, naming the holder; a lock whose holder is gone is taken over: on the same host, a process
id that no longer runs (or now belongs to a later process); on another host, a lock not refreshed for
`STALE` seconds. `cpsweep status` uses the same test to tell a running launch from one that was killed.

Taking the lock writes it and reads it back (the store has no atomic create on S3); two launches started
within the same instant can both pass that check, which the guard against a second launch minutes or
hours later does not need.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from ..errors import CpsweepError, StorageError
from ..storage.store import Store

LOCK = "launch.json"
HEARTBEAT = 15.0  # seconds between two refreshes by the launch that holds the lock
STALE = 120.0     # a lock on another host not refreshed for this long belongs to a launch that stopped


def read_lock(store: Store) -> dict[str, Any] | None:
    """The results folder's `launch.json`, or None (none, or not readable as one)."""
    try:
        if not store.exists(LOCK):
            return None
        lock = json.loads(store.read_bytes(LOCK))
    except (StorageError, ValueError):
        return None
    return lock if isinstance(lock, dict) and {"host", "pid", "started", "heartbeat"} <= set(lock) else None


def _process_runs(pid: int, started: float) -> bool:
    """Whether process `pid` of this host runs and is the one that started at `started` (not a later one
    given the same id)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # (another user's process: it runs)
        pass
    try:
        import psutil

        return psutil.Process(pid).create_time() <= started + 1.0
    except ImportError:
        return True
    except Exception:  # noqa: BLE001 (psutil.NoSuchProcess and the like: it ended meanwhile)
        return False


def alive(lock: dict[str, Any] | None, now: float | None = None) -> bool:
    """Whether the launch that wrote `lock` still runs (module docstring)."""
    if lock is None:
        return False
    if lock["host"] == socket.gethostname():
        return _process_runs(int(lock["pid"]), float(lock["started"]))
    return (time.time() if now is None else now) - float(lock["heartbeat"]) < STALE


def holder(lock: dict[str, Any], now: float | None = None) -> str:
    """'process 4242 on host h, started 2026-12-08 00:13:59 (last seen 5 s ago)'."""
    now = time.time() if now is None else now
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(lock["started"])))
    return (f"process {lock['pid']} on host {lock['host']}, started {when} (last seen "
            f"{max(0, round(now - float(lock['heartbeat'])))} s ago)")


class LaunchLock:
    """The lock of one launch: `acquire` before anything is written, `release` when the launch ends."""

    def __init__(self, store: Store, name: str, heartbeat: float = HEARTBEAT):
        self.store, self.name, self.heartbeat = store, name, heartbeat
        self.token = uuid.uuid4().hex
        self.started = time.time()
        self.held = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _write(self) -> None:
        state = {"host": socket.gethostname(), "pid": os.getpid(), "started": self.started,
                 "heartbeat": time.time(), "token": self.token}
        self.store.write_bytes(json.dumps(state, indent=1).encode(), LOCK)

    def acquire(self) -> None:
        """Take the lock, or raise `CpsweepError` naming the launch that holds it."""
        other = read_lock(self.store)
        if alive(other) and other.get("token") != self.token:
            raise CpsweepError(f"sweep {self.name} is being launched by {holder(other)}: a second launch would "
                               f"train its trials twice and damage its tables; wait for that one to end (`cpsweep "
                               f"status {self.store.uri}`), or stop it first")
        self._write()
        mine = read_lock(self.store)
        if mine is None or mine.get("token") != self.token:
            raise CpsweepError(f"sweep {self.name} was launched by another process at the same moment "
                               f"({holder(mine) if mine else 'unknown'}); wait for it to end")
        self.held = True
        self._thread = threading.Thread(target=self._beat, name="cpsweep-launch-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                self._write()
            except Exception:  # noqa: BLE001 (a storage hiccup: the next beat tries again)
                pass

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if this launch holds it (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self.held:
            self.held = False
            lock = read_lock(self.store)
            if lock is not None and lock.get("token") == self.token:
                try:
                    with self.store.errors("remove the launch lock from"):
                        self.store.fs.delete_file(self.store.path(LOCK))
                except StorageError:
                    pass  # (left behind: the next launch sees its holder is gone)
