"""The Ray cluster a launch runs on: connecting, and the checks that fail at once instead of hanging
(resources no node can ever offer, a local results path on a cluster of several nodes).

Ray's autoscaler publishes the node types it may add through no public API; `autoscaler_node_types` reads
them from the autoscaler's state or its config file, as its docstring explains.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence

import yaml

from ..errors import CpsweepError, SpecError


def connect(address: str | None, verbose: bool, ship: Sequence[str] = (), env: Mapping[str, str] | None = None) -> None:
    """Join the cluster at `address` (`cluster_address`, checked reachable by the caller), else start a new
    local Ray sized to this machine; `ship`: local module files and package folders every worker must
    import (a sweep's plug-ins), and `env`: environment variables every worker starts with, both sent with
    the job as Ray's runtime environment (`py_modules`, `env_vars`)."""
    import ray

    if ray.is_initialized():
        return
    if address is None:
        local_ray_environment()
    try:
        # "local": always a new Ray of this launch, never the cluster a `ray start` on this machine left in
        # /tmp/ray/ray_current_cluster (which a bare ray.init() would join, or wait for if it is gone)
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=verbose,
                 logging_level=logging.INFO if verbose else logging.ERROR,
                 **runtime_environment(ship, env or {}))
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise CpsweepError(f"cannot reach {where}: {str(e).splitlines()[0]}; start one with `ray start --head` "
                           f"(or `ray up cluster/aws.yaml`) and pass its address, or drop --address to run "
                           f"locally") from None


def cluster_address(address: str | None) -> str | None:
    """The cluster a launch joins: `address`, else $RAY_ADDRESS; None: a new local Ray."""
    return address or os.environ.get("RAY_ADDRESS") or None


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail at once when nothing answers at a cluster's `host:port` (or `ray://host:port`): `ray.init` would
    retry for minutes, printing only its own warnings. `auto` and other forms are left to Ray."""
    host, sep, port = address.partition("://")[2 if "://" in address else 0].rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise CpsweepError(f"cannot reach the Ray cluster at {address}: nothing answers at {host}:{port} "
                           f"({e.strerror or e}); check the address (`ray status` on the head prints it), start "
                           f"the cluster with `ray start --head` or `ray up cluster/aws.yaml`, or drop --address "
                           f"to run locally") from None


def runtime_environment(ship: Sequence[str], env: Mapping[str, str]) -> dict:
    """`ray.init`'s runtime_env argument for `connect` (none when there is nothing to send)."""
    runtime_env = {**({"py_modules": list(ship)} if ship else {}), **({"env_vars": dict(env)} if env else {})}
    return {"runtime_env": runtime_env} if runtime_env else {}


def local_ray_environment() -> None:
    """Settings for a Ray that a launch starts on this machine, whose servers listen on every interface:
    Ray's token authentication always on (a `RAY_AUTH_MODE` other than `token` is dropped, and `ray.init`
    turns the mode on and makes a token in ~/.ray/auth_token, as it does by default since Ray 2.59), and
    no Prometheus metrics exporters, the only ports that would answer without a token. The caller restores
    the environment afterwards (`launch.restored_environment`)."""
    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        del os.environ["RAY_AUTH_MODE"]
    os.environ["RAY_enable_metrics_collection"] = "0"
    # Ray's autoscaler monitor and dashboard start read-only Prometheus exporters on every interface with
    # no switch to turn them off; point both at a port this process holds, so that they cannot bind
    # (each logs the failure and runs on without it)
    port = str(_held_port())
    os.environ["AUTOSCALER_METRIC_PORT"] = os.environ["DASHBOARD_METRIC_PORT"] = port


_HELD: list[socket.socket] = []


def _held_port() -> int:
    """A TCP port bound (not listening) on every interface by this process for its lifetime."""
    if not _HELD:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("0.0.0.0", 0))
        _HELD.append(sock)
    return _HELD[0].getsockname()[1]


def check_shared_storage(storage: str, shared: bool) -> None:
    """On a cluster of several nodes, or one whose autoscaler may add nodes (`ray up` clusters start with
    the head alone), results and checkpoints must live where every node can reach them."""
    import ray

    if "://" in storage or shared:
        return
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1:
        what = f"the cluster has {len(nodes)} nodes"
    elif autoscaler_node_types():
        what = "the cluster's autoscaler may add nodes"
    else:
        return
    raise SpecError("--storage", f"{what} but {storage} is a local path, which the other nodes cannot see; use "
                                 f"shared storage such as --storage s3://bucket/prefix (or gs://...), or, if "
                                 f"{storage} is on a file system every node mounts (NFS), add --shared-storage")


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
        # no public API exposes the autoscaler's node types (ray.autoscaler.sdk only requests resources)
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


def slots(resources: dict[str, float]) -> int:
    """How many trials the cluster's current nodes can run at once."""
    import ray

    total = ray.cluster_resources()
    return int(min((total.get(k, 0) // v for k, v in resources.items() if v), default=1))
