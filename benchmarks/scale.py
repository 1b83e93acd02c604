"""The driver at scale: what a launch's own bookkeeping costs per trial at 100 / 1,000 / 10,000 trials.

1. *Bookkeeping*: synthetic trials (no training, no Ray cluster) driven through the launch's real driver
   code, in the order Tune would run them with `--slots` trials at a time: the `PrefixOrder` that hands
   out trials, the progress board's Tune callback (`Progress`, `Live`: status lines, live.json, the
   flushes of the tables), one result per epoch, and the trial's shard written when it ends (by the
   "trial": not timed). Each size runs in a fresh process, on a local folder and on a moto S3 server.
   Printed per size: driver milliseconds per trial (planning excluded, shown apart), storage operations
   per trial (file-system calls of the driver: listings, file infos, opened files, writes), the driver's
   peak memory (max RSS of that process), and the tables' files at the end.
2. *Relaunch* of each finished sweep: the seconds and the storage calls to find that nothing is left to
   run; on S3 also the HTTP requests the moto server logged.
3. *Launch*: a real `cpsweep launch` of a `--launch`-trial sweep on a local Ray whose trials train one tiny
   epoch, so the figure is what Tune and cpsweep cost per trial when training costs nothing.

    python benchmarks/scale.py                                  # everything (about 40 min on 2 cores)
    python benchmarks/scale.py --sizes 100 1000 --no-s3 --launch 0

Writes benchmarks/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from cpsweep.storage.store import join_uri

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results", "scale.json")
WINDOWS = 99  # windows per seed: onsets 0 … 98, length 1, plus the seed's baseline: 100 trials a seed


def sweep_raw(n: int, epochs: int, name: str) -> dict:
    return {"name": name, "seed": 0, "replicates": max(1, round(n / (WINDOWS + 1))), "epochs": epochs,
            "common_end": True,  # windows [0, 1) ... [98, 99) all stop at `epochs` (bookkeeping only)
            "data": {"name": "mnist1d", "subset": 200}, "model": {"name": "cnn1d", "channels": 4, "depth": 2},
            "optim": {"lr": 0.05, "batch_size": 100}, "deficit": "blur",
            "fisher": {"every": 1, "probe_per_class": 1}, "bn_refresh": 1,
            "grid": {"onset": list(range(WINDOWS)), "length": [1]}, "resources": {"cpu": 1}}


# -- 1. bookkeeping: one size in one process ----------------------------------------------------------
def bookkeeping(uri: str, n: int, epochs: int, layers: int, slots: int) -> dict:
    import pyarrow.fs as pafs

    from cpsweep.config.sharing import subtree_epochs
    from cpsweep.config.sweep_file import parse_sweep
    from synthetic_shards import CountingHandler, SyntheticShards
    from cpsweep.storage.store import Store
    from cpsweep.sweep.launch import plan_tasks
    from cpsweep.sweep.live import Live
    from cpsweep.sweep.progress import Progress, tune_callback
    from cpsweep.sweep.prefix_order import PrefixOrder

    raw = Store(uri)
    writer = SyntheticShards(raw, epochs, layers)  # the trials' side: its own file system, not counted
    handler = CountingHandler(raw.fs)
    store = Store(uri, filesystem=pafs.PyFileSystem(handler))
    sink = open(os.devnull, "w")  # noqa: SIM115 - the progress lines are not what is measured
    t0 = time.perf_counter()
    sweep = parse_sweep(sweep_raw(n, epochs, "scale"))
    trials = sweep.trials()
    progress = Progress(store, trials, sweep.hash(), sink)
    progress.flush()
    resources = {"CPU": 1.0, "GPU": 0.0}
    tasks, starts = plan_tasks(sweep, trials, store, resources, True, sink)
    progress.live = Live(store, {t.trial_id: t.epochs for t in trials}, {t: s.epoch for t, s in starts.items()},
                         sink, tty=False)
    searcher = PrefixOrder(tasks, starts, subtree_epochs(trials, starts), [t.trial_id for t in trials])
    callback = tune_callback(progress)
    plan_s = time.perf_counter() - t0
    handler.reset()
    specs = {t.trial_id: t for t in trials}
    timed, running, serial = 0.0, [], 0
    rss_at = {}

    class Trial:  # what Tune's callbacks read of a trial
        def __init__(self, config):
            self.config, self.path = config, ""

    while True:
        t = time.perf_counter()
        while len(running) < slots:
            serial += 1
            config = searcher.suggest(f"t{serial}")
            if not isinstance(config, dict):
                break
            trial = Trial(config)
            callback.on_trial_start(0, [], trial)
            start = config["task"]["branch_epoch"] or 0
            running.append([f"t{serial}", trial, start])
        if not running:
            timed += time.perf_counter() - t
            break
        # each running trial reports one epoch; the first to reach its last epoch ends
        for entry in list(running):
            tune_id, trial, epoch = entry
            result = {"epoch": epoch, "test_acc": 0.9, "training_iteration": epoch + 1}
            callback.on_trial_result(0, [], trial, result)
            searcher.on_trial_result(tune_id, result)
            entry[2] += 1
            if entry[2] >= specs[trial.config["task"]["id"]].epochs:
                timed += time.perf_counter() - t
                writer.write(specs[trial.config["task"]["id"]])  # the trial's shard: its cost, not the driver's
                t = time.perf_counter()
                callback.on_trial_complete(0, [], trial)
                searcher.on_trial_complete(tune_id, result)
                running.remove(entry)
                done = len(progress.done)
                if done in (len(trials) // 10, len(trials) // 2):
                    rss_at[done] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        callback.on_step_end(0, [])
        timed += time.perf_counter() - t
    t = time.perf_counter()
    progress.live.close()
    progress.finish()
    timed += time.perf_counter() - t
    calls = dict(handler.calls)
    files = {name: len(progress.tables.parts[name]) for name in progress.tables.parts}
    assert progress.counts()["ok"] == len(trials), progress.counts()
    return {"trials": len(trials), "epochs": epochs, "layers": layers, "plan_s": plan_s, "driver_s": timed,
            "driver_ms_per_trial": 1000 * timed / len(trials), "ops": calls,
            "ops_per_trial": sum(calls.values()) / len(trials),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_mb_at": rss_at,
            "parts": files}


def relaunch(uri: str, n: int, epochs: int) -> dict:
    """What a relaunch of the finished sweep does before it would start Ray: find what the folder holds."""
    import pyarrow.fs as pafs

    from cpsweep.config.sweep_file import parse_sweep
    from synthetic_shards import CountingHandler
    from cpsweep.storage.store import Store
    from cpsweep.sweep.launch import check_same_fixed_settings
    from cpsweep.sweep.progress import FINISHED, Progress

    t0 = time.perf_counter()
    handler = CountingHandler(Store(uri).fs)
    store = Store(uri, filesystem=pafs.PyFileSystem(handler))
    sweep = parse_sweep(sweep_raw(n, epochs, "scale"))
    check_same_fixed_settings(store, sweep)
    trials = sweep.trials()
    progress = Progress(store, trials, sweep.hash(), open(os.devnull, "w"))  # noqa: SIM115
    pending = [t for t in trials if progress.status[t.trial_id] not in FINISHED]
    assert not pending and not progress.unflushed
    return {"relaunch_s": time.perf_counter() - t0, "relaunch_ops": dict(handler.calls)}


# -- moto S3 ----------------------------------------------------------------------------------------------
class Moto:
    """A moto S3 server on a free local port, its request log counted."""

    def __init__(self, folder: str):
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = os.path.join(folder, "moto.log")
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_DEFAULT_REGION": "us-east-1"}
        server = os.path.join(os.path.dirname(sys.executable), "moto_server")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([server, "-H", "127.0.0.1", "-p", str(self.port)], stdout=log,
                                         stderr=subprocess.STDOUT, env=env)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        import pyarrow.fs as pafs

        pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{self.port}", scheme="http", allow_bucket_creation=True,
                          access_key="testing", secret_key="testing", region="us-east-1").create_dir("bucket")

    def uri(self, path: str) -> str:
        return f"s3://bucket/{path}?endpoint_override=127.0.0.1:{self.port}&scheme=http"

    def requests(self) -> int:
        with open(self.log) as f:
            return sum(1 for line in f if '"' in line and "HTTP/1.1" in line)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def child(args: argparse.Namespace) -> None:
    """One measurement in this fresh process; prints its JSON."""
    if args.child == "bookkeeping":
        out = bookkeeping(args.uri, args.n, args.epochs, args.layers, args.slots)
    else:
        out = relaunch(args.uri, args.n, args.epochs)
    print("RESULT " + json.dumps(out))


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([HERE, os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")]),
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true"}


def run_child(kind: str, uri: str, n: int, args: argparse.Namespace) -> dict:
    env = child_env()
    cmd = [sys.executable, __file__, "--child", kind, "--uri", uri, "--n", str(n), "--epochs", str(args.epochs),
           "--layers", str(args.layers), "--slots", str(args.slots)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{kind} {n} failed:\n{res.stderr[-3000:]}")
    return json.loads(next(line for line in res.stdout.splitlines() if line.startswith("RESULT "))[7:])


def relaunch_cli(storage: str, n: int, epochs: int, folder: str) -> dict:
    """`cpsweep launch` of the finished sweep again, as a user would: finds nothing to run, flushes,
    writes the report."""
    import yaml

    spec = os.path.join(folder, f"scale-{n}.yaml")
    with open(spec, "w") as f:
        yaml.safe_dump(sweep_raw(n, epochs, "scale"), f)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "cpsweep.cli", "launch", spec, "--storage", storage],
                         capture_output=True, text=True, check=False, env=child_env())
    if res.returncode != 0 or "0 to run" not in res.stdout:
        raise SystemExit(f"relaunch failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return {"cli_relaunch_s": time.perf_counter() - t0}


# -- 3. a real launch of trivial trials -------------------------------------------------------------------
def real_launch(n: int, folder: str) -> dict:
    import yaml

    raw = sweep_raw(n, 100, "scale-launch")
    raw.update(epochs=2, fisher={"every": 0}, bn_refresh=0, grid={"onset": [0], "length": [1]},
               replicates=n // 2)  # 2 trials a seed (a window, its baseline): n trials of 2 epochs
    raw["data"]["subset"] = 100
    spec = os.path.join(folder, "launch.yaml")
    with open(spec, "w") as f:
        yaml.safe_dump(raw, f)
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "cpsweep.cli", "launch", spec, "--storage", folder, "--no-share"],
                         capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"launch failed:\n{res.stdout[-2000:]}\n{res.stderr[-3000:]}")
    return {"trials": n, "wall_s": wall, "s_per_trial": wall / n, "summary": res.stdout.strip().splitlines()[-1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[100, 1000, 10000])
    p.add_argument("--s3-sizes", type=int, nargs="*", default=[100, 1000])
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--slots", type=int, default=32, help="trials running at once (a 32-GPU cluster)")
    p.add_argument("--launch", type=int, default=1000, help="trials of the real launch (0: skip)")
    p.add_argument("--child"), p.add_argument("--uri"), p.add_argument("--n", type=int)
    args = p.parse_args()
    if args.child:
        return child(args)
    rows, work = [], tempfile.mkdtemp(prefix="cpsweep-scale-")
    moto = Moto(work) if args.s3_sizes else None
    try:
        for where, sizes in (("local", args.sizes), ("s3", args.s3_sizes)):
            for n in sizes:
                storage = os.path.join(work, f"local-{n}") if where == "local" else moto.uri(f"s{n}")
                uri = join_uri(storage, "scale")
                row = {"storage": where, **run_child("bookkeeping", uri, n, args)}
                before = moto.requests() if where == "s3" else 0
                row.update(run_child("relaunch", uri, n, args))
                if where == "s3":
                    row["relaunch_http_requests"] = moto.requests() - before
                before = moto.requests() if where == "s3" else 0
                row.update(relaunch_cli(storage, n, args.epochs, work))
                if where == "s3":
                    row["cli_relaunch_http_requests"] = moto.requests() - before
                rows.append(row)
                print(f"{where:5} {row['trials']:>6} trials: driver {row['driver_ms_per_trial']:7.2f} ms/trial "
                      f"(plan {row['plan_s']:.1f} s), {row['ops_per_trial']:.2f} storage ops/trial, peak "
                      f"{row['peak_rss_mb']:.0f} MB, {sum(row['parts'].values())} part files; relaunch "
                      f"{row['relaunch_s']:.2f} s, {sum(row['relaunch_ops'].values())} ops"
                      + (f", {row['relaunch_http_requests']} HTTP requests" if where == "s3" else "")
                      + f"; cpsweep launch again {row['cli_relaunch_s']:.1f} s"
                      + (f", {row['cli_relaunch_http_requests']} HTTP requests" if where == "s3" else ""), flush=True)
                if where == "local":
                    shutil.rmtree(storage, ignore_errors=True)
    finally:
        if moto is not None:
            moto.stop()
    launch = real_launch(args.launch, work) if args.launch else None
    if launch:
        print(f"launch {launch['trials']} trivial trials on a local Ray: {launch['wall_s']:.0f} s, "
              f"{launch['s_per_trial']:.2f} s/trial; {launch['summary']}")
    shutil.rmtree(work, ignore_errors=True)
    old = {}
    if os.path.exists(RESULTS):  # rows of sizes not measured this time are kept
        with open(RESULTS) as f:
            old = json.load(f)
    measured = {(r["storage"], r["trials"]) for r in rows}
    rows = sorted([r for r in old.get("rows", []) if (r["storage"], r["trials"]) not in measured] + rows,
                  key=lambda r: (r["storage"], r["trials"]))
    print("\n| storage | trials | driver ms/trial | plan s | storage ops/trial | peak RSS MB | relaunch s "
          "| relaunch ops | relaunch HTTP | `cpsweep launch` again s | its HTTP |\n" + "|---" * 11 + "|")
    for r in rows:
        print(f"| {r['storage']} | {r['trials']:,} | {r['driver_ms_per_trial']:.2f} | {r['plan_s']:.1f} | "
              f"{r['ops_per_trial']:.2f} | {r['peak_rss_mb']:.0f} | {r['relaunch_s']:.2f} | "
              f"{sum(r['relaunch_ops'].values())} | {r.get('relaunch_http_requests', '-')} | "
              f"{r.get('cli_relaunch_s', float('nan')):.1f} | {r.get('cli_relaunch_http_requests', '-')} |")
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "w") as f:
        json.dump({"machine": os.uname().nodename, "cpus": os.cpu_count(), "epochs": args.epochs,
                   "layers": args.layers, "slots": args.slots, "rows": rows,
                   "launch": launch or old.get("launch")}, f, indent=1)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
