"""Run a sweep on Ray Tune: `launch(spec, ...)` behind `cpsweep launch` and `cpsweep.launch`.

One launch = one Tune experiment over the trials that the results folder does not hold yet:

1. load and validate the spec (`--smoke` shrinks it); refuse it if the folder holds a sweep of the same
   name with other fixed settings; write `spec.yaml`;
2. connect to Ray (a local instance sized to the machine, or `--address`/`RAY_ADDRESS`) and check that one
   trial's resources fit the cluster, so an impossible request fails at once instead of hanging
   (`_cluster.py`);
3. run every trial without a finished shard, each resuming from its newest checkpoint of an earlier launch
   if there is one (so a relaunch after a crash finishes the sweep, and an extended grid runs only the new
   trials), or else branching from another trial's checkpoint where their first epochs are the same
   (`config.sharing.plan`; `prefix_order.PrefixOrder` hands Tune each trial once its branch point exists);
   each Tune trial gets a typed `TrialTask`; Tune reuses its worker processes and retries a failed trial
   from its last checkpoint (`FailureConfig`);
4. as each trial ends, print one line; every few seconds append the rows of the trials that ended to the
   top-level tables (`progress.py`, `storage/tables.py`); at the end write `report.html`, print the verdicts
   of the paper's claims the sweep can test, and a summary.

Why not `Tuner.restore`: it cannot add trials, and its experiment state lags up to ~10 s behind the
checkpoints; finding each trial's newest checkpoint in storage covers crashes and grid extensions alike.
The environment variables a launch sets for Tune are restored when it returns.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any, Collection, Iterator, Mapping, Sequence

import yaml

from ..config.grid import rewritten_values
from ..config.plugins import ship_paths
from ..config.sharing import plan, subtree_epochs
from ..config.spec import TrialSpec
from ..config.sweep_file import SweepSpec, load_sweep, parse_sweep
from ..config.variants import full_grid_sweep, smoke_sweep
from ..config.views import diff_settings
from ..engine.numerics import worker_environment
from ..errors import DataError, SpecError
from ..storage.store import SPEC_FILE, Store, join_uri, missing_slashes
from .adaptive import Search, replay, run_rounds, summary_lines
from ._cluster import (autoscaler_node_types, check_fits, check_reachable, check_shared_storage, cluster_address,
                       connect, slots)
from .checkpoint_store import newest_checkpoints, stored_prefixes
from .live import FINISH_HINT, Live
from .lock import LaunchLock
from .preflight import check_data, check_data_on_nodes, check_plugins, data_needs
from .progress import FINISHED, Progress, tune_callback
from .task import TrialTask
from .trackers import make_trackers, tracker_callback


@dataclass
class Summary:
    sweep: str
    uri: str
    counts: dict[str, int]
    seconds: float
    report: str | None


def read_spec(spec: str | os.PathLike | Mapping[str, Any] | SweepSpec) -> SweepSpec:
    """A sweep from a YAML path, a mapping with the same keys, or an already loaded `SweepSpec`."""
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, Mapping):
        return parse_sweep(dict(spec))
    return load_sweep(spec)


def git_commit() -> str:
    """The commit of the code this launch runs, recorded in every result row: $CPSWEEP_GIT_COMMIT if set
    (a driver whose files came without .git), else the checkout's HEAD (also when the folder belongs to
    another user, as in a container the cluster launcher synced it into), else ''."""
    if os.environ.get("CPSWEEP_GIT_COMMIT"):
        return os.environ["CPSWEEP_GIT_COMMIT"]
    try:
        out = subprocess.run(["git", "-c", "safe.directory=*", "rev-parse", "HEAD"], cwd=os.path.dirname(__file__),
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def check_same_fixed_settings(store: Store, sweep: SweepSpec) -> None:
    """Refuse a spec whose fixed settings differ from those already in the results folder, and a folder that
    holds results without the spec.yaml that records the settings they ran with (it cannot be checked)."""
    if not store.exists(SPEC_FILE):
        if store.exists("trials.parquet") or store.shard_ids():
            raise SpecError("(fixed settings)", f"{store.uri} holds results of a sweep but no {SPEC_FILE} (the "
                                                f"record of the settings they ran with), so a launch there could "
                                                f"mix results of other settings unseen; restore {SPEC_FILE}, or "
                                                f"use a new sweep name or another --storage", sweep.source)
        return
    doc = store.read_document(SPEC_FILE)
    old = doc.get("fixed", {})
    diffs = diff_settings(old, sweep.fixed_settings())
    if diffs:
        changes = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diffs[:4])
        raise SpecError("(fixed settings)", f'{store.uri} already holds sweep "{sweep.name}" run with other '
                                            f"fixed settings ({changes}); results would be mixed. Use a new "
                                            f"sweep name, another --storage, or restore the old settings",
                        sweep.source)
    rewritten = rewritten_values(doc.get("spec") or {}, sweep.raw)
    if rewritten:  # (the same setting, another trial id: trained again, the folder holding it twice)
        key, was, now = rewritten[0]
        raise SpecError(f"grid.{key}", f"{now} is written {was} in the results already in {store.uri}, and trial "
                                       f"ids follow the file's form: write it {was} again, or its trials are "
                                       f"trained again under other ids", sweep.source)


def thread_change(store: Store, sweep: SweepSpec) -> str | None:
    """A line for a relaunch on the CPU whose resources.cpu (each trial's thread count) differs from the
    results': the trials it resumes train their other epochs on another count, so they match neither run
    bit for bit (the reductions split differently); None when unchanged, on GPUs or without results."""
    if sweep.resources.gpu or not store.exists(SPEC_FILE):
        return None
    old = ((store.read_document(SPEC_FILE).get("spec") or {}).get("resources") or {}).get("cpu", 1)
    if max(1, int(float(old))) == max(1, int(sweep.resources.cpu)):  # (the threads a trial gets: trainable.train)
        return None
    return (f"sweep {sweep.name}: note: resources.cpu is {sweep.resources.cpu:g} where the results so far ran with "
            f"{float(old):g}; on the CPU a trial's arithmetic depends on its thread count, so the trials resumed "
            f"now match neither count's uninterrupted run bit for bit (the numerics column records the count each "
            f"trial finished with)")


def write_spec(store: Store, sweep: SweepSpec, done: int = 0) -> None:
    """spec.yaml: the hash, the fixed settings, the file as read (with the command line's overrides merged
    in, and listed under `overrides`), and `design`: the seeds planned at each
    launch that changed them, with the number of trials already finished then (`trials_done_before`: seeds
    added to a sweep with results are not a design fixed in advance, and the verdicts say so)."""
    old = store.read_document(SPEC_FILE)
    design = list(old.get("design") or [])
    seeds = [int(s) for s in sweep.grid.get("seed", sweep.seeds)]
    if not design or design[-1].get("seeds") != seeds:
        design.append({"seeds": seeds, "launched": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                       "trials_done_before": done})
    doc = {"hash": sweep.hash(), "fixed": sweep.fixed_settings(), "spec": sweep.raw, "design": design,
           **({"overrides": list(sweep.overrides)} if sweep.overrides else {})}
    store.write_bytes(yaml.safe_dump(doc, sort_keys=False).encode(), SPEC_FILE)


@contextlib.contextmanager
def restored_environment() -> Iterator[None]:
    """The caller's environment variables as they were when the block ends: a launch sets some for Tune,
    and `ray.init` sets some of its own (RAY_USAGE_STATS_ENABLED, RAY_CLIENT_MODE, PYTHONBREAKPOINT)."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """SIGTERM (Slurm's scancel and time limit, `ray job stop`, `docker stop`) handled as Ctrl-C inside the
    block: Tune stops the trials, the tables are flushed and the summary says how to finish; installed after
    Ray starts (whose own handler would abort the driver), the handler before it restored at the end."""
    import signal

    if threading.current_thread() is not threading.main_thread():  # (signals are set in the main thread only)
        yield
        return

    def as_ctrl_c(signum, frame) -> None:
        TERMINATED.set()
        handler = signal.getsignal(signal.SIGINT)  # Tune's while it runs (a graceful stop), else Python's
        if not callable(handler):  # SIGINT ignored (a driver started with & by a script): stop all the same
            raise KeyboardInterrupt
        handler(signal.SIGINT, frame)

    before = signal.signal(signal.SIGTERM, as_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)


TERMINATED = threading.Event()  # a SIGTERM came during a launch: `cpsweep launch` runs no further sweep file


def check_launch_options(storage: str, max_concurrent: int | None) -> None:
    """The launch's own options, before anything else: at least one trial at a time, and a storage that is
    a folder or a URI (a slash missing after the scheme would make a folder named "s3:")."""
    if max_concurrent is not None and (isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int)
                                       or max_concurrent < 1):
        raise SpecError("--max-concurrent", f"must be a whole number >= 1 (trials at once), got {max_concurrent!r}; "
                                            "leave it out for as many as the cluster fits")
    if not isinstance(storage, str) or not storage.strip():
        raise SpecError("--storage", f"must name a folder or a URI (e.g. results or s3://bucket/prefix), got "
                                     f"{storage!r}")
    if missing_slashes(storage):
        raise SpecError("--storage", missing_slashes(storage))


def launch(spec: str | os.PathLike | Mapping[str, Any] | SweepSpec, *, address: str | None = None,
           storage: str = "results", max_concurrent: int | None = None, smoke: bool = False, full_grid: bool = False,
           trackers: Sequence[str] = (), verbose: bool = False, report: bool = True, shared_storage: bool = False,
           share: bool = True, out=None) -> Summary:
    """Run (or finish) a sweep; see the module docstring. Returns the final status counts.

    Args:
        spec: a sweep YAML path, a mapping with its keys, or a `SweepSpec`.
        address: the Ray cluster to join (default: $RAY_ADDRESS, else a local Ray started here).
        storage: the results root (a folder, or s3://bucket/prefix); the sweep goes to <storage>/<name>.
        smoke: shrink every trial for a quick end-to-end check (results under <name>-smoke).
        full_grid: run an adaptive sweep's every onset instead of searching (results under <name>-grid).
        share: branch trials that compute the same first epochs from one prefix checkpoint.
        out: where progress lines go (None: the current sys.stdout, looked up at each line).

    Raises:
        SpecError, CpsweepError: a bad spec, an unreachable cluster, an unwritable storage, resources no
            node can offer (before anything runs).
    """
    check_launch_options(storage, max_concurrent)
    with restored_environment(), contextlib.ExitStack() as ending:
        start = time.time()
        sweep = read_spec(spec)
        if full_grid:
            sweep = full_grid_sweep(sweep)
        if smoke:
            sweep = smoke_sweep(sweep)
        tracker_callbacks = make_trackers(sweep, trackers)
        uri = join_uri(storage, sweep.name)
        store = Store(uri)
        store.check_reachable()  # (a gs:// store without credentials: seconds, not minutes)
        lock = LaunchLock(store, sweep.name)
        ending.callback(lock.release)  # (however the launch ends)
        with store.kept_only_if_used(lock.release):  # a launch refused here leaves no empty results folder
            store.check_writable()
            store.check_folders()
            lock.acquire()  # (another launch of this sweep running: refused before the folder is even read)
            check_same_fixed_settings(store, sweep)
            search = Search(sweep, out) if sweep.search is not None else None
            trials = search.trials() if search else sweep.trials()
            progress = Progress(store, trials, sweep.hash(), out)  # reads what the folder holds; writes nothing
            if search:
                replay(search, progress)  # the rounds a crashed or finished launch completed
                trials = list(progress.trials.values())
            pending = [t for t in trials if progress.status[t.trial_id] not in FINISHED]
            needs = data_needs(pending)
            check_data(needs, pending, sweep.source)  # here, before Ray starts or anything is written
            check_plugins(pending, sweep)
            resources = {"CPU": sweep.resources.cpu, "GPU": sweep.resources.gpu}
            address = cluster_address(address)
            if pending and address is not None:  # (ray.init would retry for minutes; no plan printed first)
                check_reachable(address)
            if pending:
                connect(address, verbose, ship_paths(p.partition("=")[2].partition("@")[0] for t in pending
                                                     for p in t.plugins.split(";") if p),
                        worker_environment(t.engine for t in pending))
                ending.enter_context(sigterm_as_ctrl_c())
                if smoke:
                    import ray

                    resources["GPU"] = resources["GPU"] if ray.cluster_resources().get("GPU", 0) else 0.0
                check_shared_storage(storage, shared_storage)
                check_fits(resources)
                check_data_on_nodes(needs, resources)
            adaptive = (f" (adaptive: round {search.round}, of the full grid's {len(search.all_trials)})"
                        if search else "")
            # (after the checks that need Ray: a refused launch says only why)
            print(f"sweep {sweep.name}: {len(trials)} trials{adaptive}, {len(trials) - len(pending)} already "
                  f"done, {len(pending)} to run -> {uri}", file=out, flush=True)
            note = thread_change(store, sweep) if pending else None
            if note:
                print(note, file=out, flush=True)
            write_spec(store, sweep, len(trials) - len(pending))
        progress.retire_stale()
        progress.flush()
        if search:
            doc = run_rounds(search, progress, lambda todo, future, r: run_tune(
                sweep, todo, store, resources, max_concurrent, progress, tracker_callbacks, verbose, share,
                future=future, tag=f"-r{r}"), store)
        elif pending:
            run_tune(sweep, pending, store, resources, max_concurrent, progress, tracker_callbacks, verbose, share)
        progress.finish()
        path, verdicts = None, []
        if report:
            from ..results.report import report_and_verdicts

            path, verdicts = report_and_verdicts(uri)
        counts = progress.counts()
        if progress.data_errors:  # trials on nodes that joined after the preflight
            first = next(iter(progress.data_errors.values()))
            raise DataError(f"{len(progress.data_errors)} trial(s) of sweep {sweep.name} could not load their data "
                            f"(not retried; the others' results are in {uri}): {first}")
        if search:
            print("\n".join([f"sweep {sweep.name}: the search's boundaries"] + summary_lines(doc)), file=out,
                  flush=True)
        if verdicts:
            print("\n".join(verdicts), file=out, flush=True)
        unfinished = counts.get("pending", 0) + counts.get("running", 0)  # (Ctrl-C: Tune stops, and returns)
        print(f"sweep {sweep.name}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
              + f" in {time.time() - start:.0f} s; results in {uri}" + (f", report {path}" if path else "")
              + (f"; {unfinished} trial(s) not finished (interrupted): launch again to finish them "
                 f"({FINISH_HINT})" if unfinished else ""),
              file=out, flush=True)
        return Summary(sweep.name, uri, counts, time.time() - start, path)


def plan_tasks(sweep: SweepSpec, pending: list[TrialSpec], store: Store, resources: dict[str, float],
               share: bool, out=None, future: Sequence[TrialSpec] = (),
               stale: Collection[str] = ()) -> tuple[dict[str, TrialTask], dict]:
    """Each pending trial's task: where it starts (its own newest checkpoint, a shared prefix or scratch)
    and which prefix checkpoints it leaves for others; also the plan's starts.

    `future`: trials a later round may add (an adaptive sweep): planned after the pending ones, so that
    the pending trials also save the prefix checkpoints those would branch from; they run nothing here.
    `stale`: trials whose plug-in code changed since their checkpoints: they start over."""
    newest = newest_checkpoints(store, [t.trial_id for t in pending if t.trial_id not in stale])
    starts = plan([*pending, *future], stored=stored_prefixes(store) if share else (),
                  resume={tid: epoch for tid, (epoch, _) in newest.items()}, share=share)
    ids = {t.trial_id for t in pending}
    starts = {tid: s for tid, s in starts.items() if tid in ids}
    for s in starts.values():
        s.children = [c for c in s.children if c in ids]
    shared = sum(s.epoch for s in starts.values())
    if shared:
        total = sum(t.epochs for t in pending)
        print(f"sweep {sweep.name}: {total - shared} of {total} epochs to train; {shared} come from shared "
              f"prefixes or earlier checkpoints", file=out, flush=True)
    launch_info = {"store": store.uri, "cpus": resources["CPU"], "gpus": resources["GPU"],
                   "spec_hash": sweep.hash(), "git_commit": git_commit()}
    tasks = {t.trial_id: TrialTask.plan(t, starts[t.trial_id], resume_from=newest.get(t.trial_id, (0, None))[1],
                                        **launch_info) for t in pending}
    return tasks, starts


KEEP = 2  # checkpoints kept per trial in a launch folder: the newest, and the one before it


def keep_newest_checkpoints(keep: int):
    """A Tune callback that deletes a trial's checkpoints but its newest `keep` as Tune reports them.

    Why not `CheckpointConfig(num_to_keep)`: with it Tune forces a snapshot of its experiment state (a JSON
    of every trial: O(trials)) each time a trial has saved `num_to_keep` checkpoints since the last one,
    past its own throttle (at most 5 % of the time); at 1,000 trivial trials that snapshot took most of
    the driver (docs/benchmarks.md). cpsweep never restores from that state (a relaunch finds each
    trial's newest complete checkpoint in storage: `checkpoint_store.newest_checkpoints`), and Tune restores a
    retried trial from its newest checkpoint, which is always kept."""
    from collections import deque

    from ray.tune import Callback

    class KeepNewest(Callback):
        def __init__(self):
            self.kept: dict[str, deque] = {}

        def on_checkpoint(self, iteration, trials, trial, checkpoint, **info):
            kept = self.kept.setdefault(trial.trial_id, deque())
            kept.append(checkpoint)
            while len(kept) > keep:
                old = kept.popleft()
                with contextlib.suppress(OSError):  # already gone (a retried trial's folder, a user)
                    old.filesystem.delete_dir(old.path)

        def on_trial_complete(self, iteration, trials, trial, **info):
            self.kept.pop(trial.trial_id, None)

        on_trial_error = on_trial_complete

    return KeepNewest()


def run_tune(sweep: SweepSpec, pending: list[TrialSpec], store: Store, resources: dict[str, float],
             max_concurrent: int | None, progress: Progress, callbacks: list, verbose: bool,
             share: bool = True, future: Sequence[TrialSpec] = (), tag: str = "") -> None:
    from ray import tune

    from .prefix_order import PrefixOrder
    from .trainable import run_trial

    tasks, starts = plan_tasks(sweep, pending, store, resources, share, progress.out, future, progress.stale)
    trackers = [tracker_callback(callbacks, store, {t.trial_id: t for t in pending})] if callbacks else []
    progress.live = Live(store, {t.trial_id: t.epochs for t in pending}, {t: s.epoch for t, s in starts.items()},
                         progress.out)
    searcher = PrefixOrder(tasks, starts, subtree_epochs(pending, starts), [t.trial_id for t in pending])
    trainable = tune.with_resources(run_trial, {"cpu": resources["CPU"], "gpu": resources["GPU"]})
    # (the caller's environment comes back when `launch` returns)
    if not verbose:  # Tune's new output engine prints a configuration box even at verbose=0
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    # Tune queues one suggested trial at a time for a searcher; let it queue what the cluster can start at
    # once (all, if an autoscaler may add nodes, so that it sees the demand)
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(len(pending) if autoscaler_node_types()
                                                   else max(1, min(len(pending), slots(resources))))
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=len(pending),
                                    max_concurrent_trials=max_concurrent, reuse_actors=True,
                                    trial_name_creator=lambda trial: TrialTask.id_of(trial.config),
                                    trial_dirname_creator=lambda trial: TrialTask.id_of(trial.config)),
        run_config=tune.RunConfig(name=f"launch-{time.strftime('%Y%m%d-%H%M%S')}{tag}",
                                  storage_path=store.uri_of("tune"),
                                  failure_config=tune.FailureConfig(max_failures=3),
                                  verbose=1 if verbose else 0,
                                  callbacks=[tune_callback(progress), keep_newest_checkpoints(KEEP), *trackers]))
    try:
        tuner.fit()
    finally:
        progress.live.close()
