"""One launch of a sweep at a time, and whether a launch is still alive.

Two launches of one sweep would train the same trials twice, race on their checkpoints and shards and
leave tables that do not read. A launch therefore holds `launch.json` in the results folder while it
runs: the driver's host, process id and start time, refreshed every `HEARTBEAT` seconds by a daemon
thread, and removed when the launch ends (however it ends). A second launch finds it and stops before
anything runs, naming the holder; a lock whose holder is gone is taken over: on the same host, a process
id that no longer runs (or now belongs to a later process); on another host, a lock not refreshed for
`STALE` seconds. `cpsweep status` uses the same test to tell a running launch from one that was killed.

On another host the age of a heartbeat is read on the storage's own clock when a launch takes the lock (the
lock file's modification time against that of a file written then), so clocks that differ between hosts do
not make a running launch look stopped. A lock this process wrote and no longer holds (a release cut off)
never blocks this process. Taking the lock writes it and reads it back (the store has no atomic create on
S3); two launches started within the same instant can both pass that check, which the guard against a
second launch minutes or hours later does not need. A holder that finds its lock taken over stops
refreshing it and says so.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import threading
import time
import uuid
from typing import Any

import psutil

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


HELD: set[str] = set()  # the tokens of the locks this process holds now


def _process_runs(pid: int, started: float, token: str | None) -> bool:
    """Whether the launch that wrote a lock on this host runs: process `pid` runs (not a zombie) and is the
    one that started at `started` (not a later one given the same id); in this very process, whether it
    still holds `token`."""
    if pid == os.getpid():
        return token in HELD
    try:
        p = psutil.Process(pid)
        return p.status() != psutil.STATUS_ZOMBIE and p.create_time() <= started + 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # (another user's process, or a hidden /proc: it runs)
        return True


def alive(lock: dict[str, Any] | None, now: float | None = None, age: float | None = None) -> bool:
    """Whether the launch that wrote `lock` still runs (module docstring); `age`: its heartbeat's age as the
    storage's clock tells it (else this host's clock against the holder's)."""
    if lock is None:
        return False
    if lock["host"] == socket.gethostname():
        return _process_runs(int(lock["pid"]), float(lock["started"]), lock.get("token"))
    return (_wall_age(lock, now) if age is None else age) < STALE


def _wall_age(lock: dict[str, Any], now: float | None = None) -> float:
    return (time.time() if now is None else now) - float(lock["heartbeat"])


def storage_age(store: Store) -> float | None:
    """Seconds since the lock file was last written, on the storage's clock (a file written now against
    the lock's modification time); None where the storage does not tell."""
    try:
        store.write_bytes(b"", ".clock")
        now, then = (store.fs.get_file_info(store.path(name)).mtime for name in (".clock", LOCK))
        store.fs.delete_file(store.path(".clock"))
        return (now - then).total_seconds() if now is not None and then is not None else None
    except Exception:  # noqa: BLE001 (no modification times, a storage hiccup: the heartbeat's own time)
        return None


def holder(lock: dict[str, Any], now: float | None = None, age: float | None = None) -> str:
    """'process 4242 on host h, started 2026-12-08 00:13:59 (last seen 5 s ago)'."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(lock["started"])))
    age = _wall_age(lock, now) if age is None else age
    return f"process {lock['pid']} on host {lock['host']}, started {when} (last seen {max(0, round(age))} s ago)"


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
        age = storage_age(self.store) if other is not None and other["host"] != socket.gethostname() else None
        if alive(other, age=age) and other.get("token") != self.token:
            raise CpsweepError(f"sweep {self.name} is being launched by {holder(other, age=age)}: a second launch "
                               f"would train its trials twice and damage its tables; wait for that one to end "
                               f"(`cpsweep status {self.store.uri}`) or stop it first (if it is not running, "
                               f"delete {self.store.uri_of(LOCK)})")
        self._write()
        mine = read_lock(self.store)
        if mine is None or mine.get("token") != self.token:
            raise CpsweepError(f"sweep {self.name} was launched by another process at the same moment "
                               f"({holder(mine) if mine else 'unknown'}); wait for it to end")
        self.held = True
        HELD.add(self.token)
        self._thread = threading.Thread(target=self._beat, name="cpsweep-launch-lock", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            try:
                lock = read_lock(self.store)
                if lock is not None and lock.get("token") != self.token:  # taken over: another launch runs
                    print(f"cpsweep: warning: sweep {self.name}'s launch lock was taken over by {holder(lock)}; "
                          f"two launches of it are running", file=sys.stderr, flush=True)
                    return
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
            HELD.discard(self.token)
            lock = read_lock(self.store)
            if lock is not None and lock.get("token") == self.token:
                with contextlib.suppress(OSError):  # (left behind: the next launch, this process's too, sees
                    self.store.fs.delete_file(self.store.path(LOCK))  # its holder is gone)
