"""Run a sweep on Ray Tune: `launch(spec_path, ...)` behind `cpsweep launch`.

One launch = one Tune experiment over the trials that the results folder does not hold yet:

1. load and validate the spec (`--smoke` shrinks it); refuse it if the folder holds a sweep of the same
   name with other fixed settings; write `spec.yaml`;
2. connect to Ray (a local instance sized to the machine, or `--address`/`RAY_ADDRESS`) and check that one
   trial's resources fit the cluster, so an impossible request fails at once instead of hanging;
3. run every trial without a finished shard, each resuming from its newest checkpoint of an earlier launch
   if there is one (so a relaunch after a crash finishes the sweep, and an extended grid runs only the new
   trials), or else branching from another trial's checkpoint where their first epochs are the same
   (`prefix.plan`; `scheduler.PrefixScheduler` hands Tune each trial once its branch point exists); Tune
   reuses its worker processes and retries a failed trial from its last checkpoint (`FailureConfig`);
4. as each trial ends, print one line and rebuild the top-level tables from the shards; at the end write
   `report.html` and print a summary.

Why not `Tuner.restore`: it cannot add trials, and its experiment state lags up to ~10 s behind the
checkpoints; finding each trial's newest checkpoint in storage covers crashes and grid extensions alike.
"""

from __future__ import annotations

import copy
import logging
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any, Sequence

import pyarrow.fs as pafs
import yaml

from .errors import CpsweepError, SpecError
from .spec import SweepSpec, TrialSpec, load_sweep, parse_sweep
from .store import Store

SMOKE = {"epochs": 3, "subset": 256, "probe_per_class": 2, "bn_refresh": 2, "batch_size": 64}
TRACKERS = ("wandb", "mlflow")


def smoke_sweep(sweep: SweepSpec) -> SweepSpec:
    """The same sweep shrunk for a quick end-to-end check: 3 epochs, windows [0, 1) and [1, 2), one seed,
    256 training examples, a tiny Fisher probe, one CPU per trial; every other axis (deficits, models,
    ...) kept."""
    raw = copy.deepcopy(sweep.raw)
    raw["name"] = f"{sweep.name}-smoke"
    raw.pop("clean_after", None)
    raw["epochs"], raw["replicates"], raw["bn_refresh"] = SMOKE["epochs"], 1, SMOKE["bn_refresh"]
    grid = dict(raw["grid"])
    grid["onset"], grid["length"] = [0, 1], [1]
    if "seed" in grid:
        grid["seed"] = grid["seed"][:1]
    raw["grid"] = grid
    raw["data"] = {**(raw.get("data") or {}), "subset": SMOKE["subset"]}
    raw["fisher"] = {**(raw.get("fisher") or {}), "probe_per_class": SMOKE["probe_per_class"]}
    optim = dict(raw.get("optim") or {})
    optim["batch_size"] = min(optim.get("batch_size", 128), SMOKE["batch_size"])
    raw["optim"] = optim
    raw["resources"] = {**(raw.get("resources") or {}), "cpu": 1}  # the GPU share is kept only if there are GPUs
    return parse_sweep(raw, sweep.source)


def join_uri(uri: str, *parts: str) -> str:
    """Append path parts to a local path or a URI, keeping a URI's query (s3://b/p?endpoint_override=...)."""
    base, sep, query = uri.partition("?")
    if "://" not in base:
        base = os.path.abspath(base)
    return "/".join([base.rstrip("/"), *parts]) + (sep + query if sep else "")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(__file__), capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() if out.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        return ""


def check_same_fixed_settings(store: Store, sweep: SweepSpec) -> None:
    """Refuse a spec whose fixed settings differ from those already in the results folder."""
    if not store.exists("spec.yaml"):
        return
    old = (yaml.safe_load(store.read_bytes("spec.yaml")) or {}).get("fixed", {})
    new = sweep.fixed_settings()
    diffs = sorted(_diff(old, new))
    if diffs:
        changes = "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in diffs[:4])
        raise SpecError("(fixed settings)", f'{store.uri} already holds sweep "{sweep.name}" run with other '
                                            f"fixed settings ({changes}); results would be mixed. Use a new "
                                            f"sweep name, another --storage, or restore the old settings",
                        sweep.source)


def _diff(a: Any, b: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    a = list(a) if isinstance(a, tuple) else a
    b = list(b) if isinstance(b, tuple) else b
    return [] if a == b else [(prefix.rstrip("."), a, b)]


def write_spec(store: Store, sweep: SweepSpec) -> None:
    doc = {"hash": sweep.hash(), "fixed": sweep.fixed_settings(), "spec": sweep.raw}
    store.write_bytes(yaml.safe_dump(doc, sort_keys=False).encode(), "spec.yaml")


def connect(address: str | None, verbose: bool) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS), else start a local Ray sized to this machine."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose,
                 logging_level=logging.INFO if verbose else logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise CpsweepError(f"cannot reach {where}: {str(e).splitlines()[0]}; start one with `ray start --head` "
                           f"(or `ray up cluster/aws.yaml`) and pass its address, or drop --address to run "
                           f"locally") from None


def check_shared_storage(storage: str, shared: bool) -> None:
    """On a cluster of several nodes, results and checkpoints must live where every node can reach them."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1 and "://" not in storage and not shared:
        raise SpecError("--storage", f"the cluster has {len(nodes)} nodes but {storage} is a local path, which "
                                     f"the other nodes cannot see; use shared storage such as "
                                     f"--storage s3://bucket/prefix (or gs://...), or, if {storage} is on a file "
                                     f"system every node mounts (NFS), add --shared-storage")


def check_fits(resources: dict[str, float]) -> None:
    """Fail at once if no node of the cluster, running or one the autoscaler may start, can ever run one
    trial (otherwise Tune would wait forever)."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    nodes += autoscaler_node_types()
    if any("*" in node or all(node.get(k, 0) >= v for k, v in resources.items() if v) for node in nodes):
        return
    have = ", ".join(f"{k}={max((n.get(k, 0) for n in nodes), default=0):g}" for k in resources)
    want = ", ".join(f"{k}={v:g}" for k, v in resources.items())
    raise SpecError("resources", f"each trial needs {want} but the largest node has {have}; lower resources "
                                 f"(e.g. resources.gpu: 0 on a machine without GPUs) or launch on a bigger "
                                 f"cluster with --address")


def autoscaler_node_types() -> list[dict[str, float]]:
    """Resources of the node types an autoscaling cluster may add (empty without an autoscaler).

    No public API exposes them. An external autoscaler (KubeRay) publishes a cluster config in the GCS; Ray's
    own autoscaler (`ray up`, or `ray start --head --autoscaling-config=FILE`, v1 or v2) publishes nothing, and
    its node types are read from the config file its monitor process was started with, which is visible on
    the head, where `cpsweep launch` runs (docs/cluster.md).
    """
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - an internal API: any failure means "unknown", not an error
        config = None
    if config is not None:
        return [dict(group.resources) for group in config.node_group_configs if group.max_count != 0]
    path = autoscaling_config_path()
    if path is None:
        return []
    try:
        with open(os.path.expanduser(path)) as f:
            raw = yaml.safe_load(f) or {}
        types = raw.get("available_node_types") or {}
        if raw.get("max_workers", 1) == 0:
            return []
        # a type without explicit resources is sized by the launcher from its instance type: assume it fits
        return [{k: float(v) for k, v in t["resources"].items()} if "resources" in t else {"*": float("inf")}
                for t in types.values() if t.get("max_workers", 1) != 0]
    except (OSError, yaml.YAMLError, AttributeError, TypeError, ValueError):
        return []


def autoscaling_config_path() -> str | None:
    """The `--autoscaling-config` of the connected cluster's autoscaler (monitor.py) if it runs on this
    machine, matched by the cluster's GCS address; None if there is none."""
    import ray
    import psutil  # ray ships it (ray/thirdparty_files, on the path once ray is imported)

    gcs = f"--gcs-address={ray.get_runtime_context().gcs_address}"
    for proc in psutil.process_iter(["cmdline"]):
        args = proc.info["cmdline"] or []
        if gcs in args and any(os.path.basename(a) == "monitor.py" for a in args[:3]):
            return next((a.split("=", 1)[1] for a in args if a.startswith("--autoscaling-config=")), None)
    return None


def find_resume_points(store: Store, ids: Sequence[str]) -> dict[str, str]:
    """Each trial's newest complete checkpoint from earlier launches: trial id -> checkpoint URI."""
    return {tid: uri for tid, (_, uri) in newest_checkpoints(store, ids).items()}


def newest_checkpoints(store: Store, ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Each trial's newest complete checkpoint from earlier launches: trial id -> (epoch, checkpoint URI)."""
    import json

    from .trainable import CHECKPOINT_FILES

    best: dict[str, tuple[int, str]] = {}
    if not store.exists("tune"):
        return {}
    wanted = set(ids)
    for launch in store.fs.get_file_info(pafs.FileSelector(store.path("tune"))):
        if launch.type != pafs.FileType.Directory:
            continue
        for tid in wanted:
            folder = f"{launch.path}/{tid}"
            infos = store.fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
            for ckpt in infos:
                if not ckpt.base_name.startswith("checkpoint_"):
                    continue
                files = store.fs.get_file_info([f"{ckpt.path}/{name}" for name in CHECKPOINT_FILES])
                if any(info.type != pafs.FileType.File or not info.size for info in files):
                    continue  # cut off while Tune uploaded it, one file after the other (a killed driver or node)
                try:
                    with store.fs.open_input_stream(f"{ckpt.path}/meta.json") as f:
                        epoch = int(json.loads(f.read())["epoch"])
                except (OSError, ValueError, KeyError):
                    continue  # an incomplete checkpoint
                if epoch > best.get(tid, (-1, ""))[0]:
                    rel = ckpt.path[len(store.root):]
                    best[tid] = (epoch, join_uri(store.uri, rel.strip("/")))
    return best


@dataclass
class Summary:
    sweep: str
    uri: str
    counts: dict[str, int]
    seconds: float
    report: str | None


def launch(spec_path: str, *, address: str | None = None, storage: str = "results", max_concurrent: int | None = None,
           smoke: bool = False, trackers: Sequence[str] = (), verbose: bool = False, report: bool = True,
           shared_storage: bool = False, share: bool = True, out=None) -> Summary:
    """Run (or finish) a sweep; see the module docstring. Returns the final status counts.

    Progress lines go to `out` (None: the current sys.stdout, looked up at each line).
    """
    start = time.time()
    sweep = load_sweep(spec_path)
    if smoke:
        sweep = smoke_sweep(sweep)
    tracker_callbacks = make_trackers(sweep, trackers)
    uri = join_uri(storage, sweep.name)
    store = Store(uri)
    store.check_writable()
    check_same_fixed_settings(store, sweep)
    trials = sweep.trials()
    done = store.finished_ids()
    pending = [t for t in trials if t.trial_id not in done]
    print(f"sweep {sweep.name}: {len(trials)} trials, {len(trials) - len(pending)} already done, "
          f"{len(pending)} to run -> {uri}", file=out, flush=True)
    resources = {"CPU": sweep.resources.cpu, "GPU": sweep.resources.gpu}
    if pending:
        connect(address, verbose)
        if smoke:
            import ray

            resources["GPU"] = resources["GPU"] if ray.cluster_resources().get("GPU", 0) else 0.0
        check_shared_storage(storage, shared_storage)
        check_fits(resources)
    write_spec(store, sweep)
    from .progress import Progress

    progress = Progress(store, trials, done, sweep.hash(), out)
    progress.write_tables()
    if pending:
        run_tune(sweep, pending, store, resources, max_concurrent, progress, tracker_callbacks, verbose, share)
    progress.finish()
    path = None
    if report:
        from .report import write_report

        path = write_report(uri)
    counts = progress.counts()
    print(f"sweep {sweep.name}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
          + f" in {time.time() - start:.0f} s; results in {uri}" + (f", report {path}" if path else ""),
          file=out, flush=True)
    return Summary(sweep.name, uri, counts, time.time() - start, path)


def stored_prefixes(store: Store) -> set[str]:
    """Keys of the complete prefix checkpoints in the results folder (`trainable.save_prefix`)."""
    if not store.exists("prefixes"):
        return set()
    folders = store.fs.get_file_info(pafs.FileSelector(store.path("prefixes")))
    keys = [f.base_name for f in folders if f.type == pafs.FileType.Directory]
    metas = store.fs.get_file_info([store.path("prefixes", k, "meta.json") for k in keys])
    return {k for k, m in zip(keys, metas) if m.type == pafs.FileType.File and m.size}


def slots(resources: dict[str, float]) -> int:
    """How many trials the cluster's current nodes can run at once."""
    import ray

    total = ray.cluster_resources()
    return int(min((total.get(k, 0) // v for k, v in resources.items() if v), default=1))


def run_tune(sweep: SweepSpec, pending: list[TrialSpec], store: Store, resources: dict[str, float],
             max_concurrent: int | None, progress, callbacks: list, verbose: bool, share: bool = True) -> None:
    from ray import tune

    from .prefix import plan, subtree_epochs
    from .scheduler import PrefixScheduler
    from .trainable import run_trial

    newest = newest_checkpoints(store, [t.trial_id for t in pending])
    resume = {tid: uri for tid, (_, uri) in newest.items()}
    starts = plan(pending, stored=stored_prefixes(store) if share else (),
                  resume={tid: epoch for tid, (epoch, _) in newest.items()}, share=share)
    shared = sum(s.epoch for s in starts.values())
    if shared:
        total = sum(t.epochs for t in pending)
        print(f"sweep {sweep.name}: {total - shared} of {total} epochs to train; {shared} come from shared "
              f"prefixes or earlier checkpoints", file=progress.out, flush=True)
    commit = git_commit()
    configs = {t.trial_id: {"t": {"id": t.trial_id, "trial": t.to_dict(), "resume_from": resume.get(t.trial_id),
                                  "start": starts[t.trial_id].to_config()}} for t in pending}
    scheduler = PrefixScheduler(configs, starts, subtree_epochs(pending, starts), [t.trial_id for t in pending])
    trainable = tune.with_resources(run_trial, {"cpu": resources["CPU"], "gpu": resources["GPU"]})
    name = f"launch-{time.strftime('%Y%m%d-%H%M%S')}"
    if not verbose:  # Tune's new output engine prints a configuration box even at verbose=0
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    # Tune queues one suggested trial at a time for a searcher; let it queue what the cluster can start at
    # once (all, if an autoscaler may add nodes, so that it sees the demand)
    os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(len(pending) if autoscaler_node_types()
                                                   else max(1, min(len(pending), slots(resources))))
    tuner = tune.Tuner(
        trainable,
        param_space={"store": store.uri, "cpus": resources["CPU"], "gpus": resources["GPU"],
                     "spec_hash": sweep.hash(), "git_commit": commit},
        tune_config=tune.TuneConfig(search_alg=scheduler, num_samples=len(pending),
                                    max_concurrent_trials=max_concurrent, reuse_actors=True,
                                    trial_name_creator=lambda trial: trial.config["t"]["id"],
                                    trial_dirname_creator=lambda trial: trial.config["t"]["id"]),
        run_config=tune.RunConfig(name=name, storage_path=join_uri(store.uri, "tune"),
                                  failure_config=tune.FailureConfig(max_failures=3),
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                                  verbose=1 if verbose else 0,
                                  callbacks=[tune_callback(progress), *callbacks]))
    tuner.fit()


def tune_callback(progress):
    """A Tune callback that feeds the sweep's `Progress` board."""
    from ray.tune import Callback

    class ProgressCallback(Callback):
        def on_trial_start(self, iteration, trials, trial, **info):
            progress.started(trial.config["t"]["id"])

        def on_trial_complete(self, iteration, trials, trial, **info):
            progress.finished(trial.config["t"]["id"])

        def on_trial_error(self, iteration, trials, trial, **info):
            progress.failed(trial.config["t"]["id"], f"failed after retries; see {trial.path}/error.txt")

    return ProgressCallback()


def make_trackers(sweep: SweepSpec, names: Sequence[str]) -> list:
    """Ray's W&B / MLflow logger callbacks, from `--tracker` names and the spec's `tracking` section."""
    settings = dict(sweep.raw.get("tracking") or {})
    wanted = list(dict.fromkeys([*settings, *names]))
    callbacks = []
    for name in wanted:
        if name not in TRACKERS:
            raise SpecError("tracking", f'unknown tracker "{name}"; valid trackers: {", ".join(TRACKERS)}')
        options = dict(settings.get(name) or {})
        try:
            if name == "wandb":
                import wandb  # noqa: F401
                from ray.air.integrations.wandb import WandbLoggerCallback

                callbacks.append(WandbLoggerCallback(project=options.pop("project", sweep.name), **options))
            else:
                import mlflow  # noqa: F401
                from ray.air.integrations.mlflow import MLflowLoggerCallback

                callbacks.append(MLflowLoggerCallback(experiment_name=options.pop("experiment_name", sweep.name),
                                                      **options))
        except ImportError:
            raise CpsweepError(f"the {name} tracker needs its package: pip install 'cpsweep[{name}]' "
                               f"(or pip install {name})") from None
        except TypeError as e:
            raise SpecError(f"tracking.{name}", f"{e}; see Ray's {name} logger callback options") from None
    return callbacks
