"""Preflight: the data sets a launch needs, and the user's plug-ins, are checked before any trial is
scheduled.

A trial that cannot load its data set fails the same way on every retry and on every trial after it, so
the launch checks first: on the driver (before Ray starts or anything is written), and, once connected,
through Ray on every node that can run a trial (unless the driver's node is the only one). Each check loads the data set as a trial would
(`engine.data.load_dataset`), downloading it once under the data folder's lock if it is missing. A failure
is one `DataError` line naming the data set, the folder, the node and the fix (exit 2). On the driver, each
trial that measures the Fisher must be able to draw its probe from its (subset of the) training set.

A node that joins later (an autoscaler adding GPU workers) is not checked in advance; there a trial that
cannot load its data reports the `DataError` to the driver instead of raising (`trainable.run_trial`), so
Tune never retries it, and the trial is marked failed with that one line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from ..config.spec import DataSpec, TrialSpec, component_name
from ..config.sweep_file import SweepSpec
from ..errors import DataError, SpecError

if TYPE_CHECKING:
    from ..engine.data import Dataset

DATA_ERROR = "data_error"  # the metric a trial reports instead of raising a DataError
TRIAL_ERROR = "trial_error"  # the metric a trial reports instead of raising any other deterministic error


def _data_key(d: DataSpec) -> tuple[str, str, str]:
    """What tells one data set from another: its name, its folder, its options (not the subset a trial keeps)."""
    return d.name, d.data_dir or "", repr(sorted(d.options.items()))


def data_needs(trials: Sequence[TrialSpec]) -> list[DataSpec]:
    """The distinct data sets (name and folder) `trials` read, in a stable order."""
    seen: dict[tuple[str, str, str], DataSpec] = {}
    for t in trials:
        spec = DataSpec(name=t.data.name, data_dir=t.data.data_dir, options=t.data.options, plugin=t.data.plugin)
        seen.setdefault(_data_key(t.data), spec)
    return [seen[k] for k in sorted(seen)]


def check_data(needs: Sequence[DataSpec], trials: Sequence[TrialSpec] = (), source: str | None = None) -> None:
    """Load every data set of `needs` here (downloading or generating what is missing), and check that the
    `trials` reading it can draw their Fisher probe from it (`check_probes`; an error names `source`, the
    sweep's file).

    Raises:
        DataError: one line naming the data set, the folder and the fix.
        SpecError: a probe the training set cannot supply.
    """
    from ..engine.data import load_dataset, resolve_data_dir

    for spec in needs:
        data = load_dataset(spec.name, data_dir=resolve_data_dir(spec.data_dir), device="cpu", options=spec.options)
        check_probes(data, [t for t in trials if _data_key(t.data) == _data_key(spec)], source)


def check_probes(data: Dataset, trials: Sequence[TrialSpec], source: str | None = None) -> None:
    """A trial that measures the Fisher draws `fisher.probe_per_class` clean training examples of every class
    from its training set (`data`, cut to its `data.subset`); where a class has fewer, every such trial
    would fail after Ray started, so the launch stops here, naming the field and the largest value that fits;
    where a class has none (a subset smaller than the classes), no probe fits, and the fix is the subset.

    Raises:
        SpecError: `fisher.probe_per_class`, with the class that has too few examples; `data.subset`, with
            the class it leaves without any (`fisher.every` for a whole training set without any).
    """
    import torch

    from ..engine.data import subset_labels

    for subset, per_class in sorted({(t.data.subset or 0, t.fisher.probe_per_class) for t in trials
                                     if t.fisher.every > 0}):
        y = subset_labels(data.name, data.y_train, subset or None).cpu()
        counts = torch.bincount(y, minlength=data.num_classes)
        fewest, short = int(counts.min()), int(counts.argmin())
        probe = f"the Fisher probe takes {per_class} training example{'s' * (per_class > 1)} of every class"
        if fewest == 0 and subset:  # (fisher.probe_per_class is at least 1: lowering it cannot help)
            raise SpecError("data.subset", f"{subset} leaves class {short} of {data.name}'s training set without any "
                                           f"training example, and {probe}; raise data.subset", source)
        if fewest == 0:
            raise SpecError("fisher.every", f"{data.name}'s training set has no example of class {short} (of "
                                            f"{data.num_classes} classes), and {probe}; give it examples of every "
                                            f"class, or set fisher.every: 0 to measure no Fisher", source)
        if fewest < per_class:
            where = f"{data.name}'s training set" + (f" cut to data.subset: {subset}" if subset else "")
            fix = f"lower fisher.probe_per_class to {fewest} or less" + (" or raise data.subset" if subset else "")
            raise SpecError("fisher.probe_per_class", f"{probe}, but {where} has {fewest} of class {short}; {fix}",
                            source)


def check_plugins(trials: Sequence[TrialSpec], sweep: SweepSpec | None = None) -> None:
    """Call a sweep's plug-ins once on a small batch (`engine.dry_run`), here on the driver; only when it
    has any, since torch is imported for it (`cpsweep validate`, `launch` and `trial` alike). With `sweep`,
    a failure names its file, and the grid entry that names the plug-in when a grid axis does.

    Raises:
        SpecError: naming the plug-in's field, what went wrong and the fix.
    """
    if not any(t.plugins for t in trials):
        return
    from ..engine.dry_run import check_plugins as dry_run

    try:
        dry_run(trials)
    except SpecError as e:
        if sweep is None:
            raise
        raise SpecError(grid_field(e.field, e.message, sweep.grid), e.message, sweep.source) from None


def grid_field(field: str, message: str, grid: Mapping) -> str:
    """`model.name` or `deficit.name` as `grid.<axis>[i].name` when that grid axis lists the plug-in the
    dry run's `message` is about (it starts with the plug-in's name)."""
    kind = field.partition(".")[0]
    for i, value in enumerate(grid.get(kind) or ()):
        name = component_name(value)
        if isinstance(name, str) and message.startswith(f"{name} "):
            return f"grid.{kind}[{i}].name"
    return field


def _check_on_node(needs: list[dict]) -> str | None:
    """Run on one node by Ray: None, or the DataError's line."""
    try:
        check_data([DataSpec(**d) for d in needs])
    except DataError as e:
        return str(e)
    return None


def check_data_on_nodes(needs: Sequence[DataSpec], resources: dict[str, float]) -> int:
    """`check_data` through Ray on every alive node that can run one trial (`resources`), all at once,
    unless the driver's own node is the only one; returns how many nodes were checked.

    Raises:
        DataError: the first node's failure, naming the node.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    nodes = [n for n in ray.nodes() if n.get("Alive")
             and all(n["Resources"].get(k, 0) >= v for k, v in resources.items() if v)]
    if not nodes or [n["NodeID"] for n in nodes] == [here]:  # a local Ray: the driver's check was the check
        return 0
    probe = ray.remote(num_cpus=0)(_check_on_node)
    payload = [{"name": s.name, "data_dir": s.data_dir, "options": s.options, "plugin": s.plugin} for s in needs]
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(payload)
            for n in nodes]
    for node, error in zip(nodes, ray.get(refs)):
        if error:
            raise DataError(f"on node {node['NodeManagerAddress']}: {error}")
    return len(nodes)
