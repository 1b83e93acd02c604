"""A sweep file: YAML -> a validated `SweepSpec` -> its grid of `TrialSpec`s (no torch, no ray).

A sweep file names the fixed trial settings (data, model, optim, schedule, deficit, fisher, epochs), the
grid axes (`onset`, `length`, and optionally `seed`, `deficit`, `model`, `schedule` or any dotted setting
such as `optim.lr`) and the resources of one trial; `grid.onset` may be a range `{from, to, step}`, and a
`search:` section (`search.py`) runs only the onsets of it that locate the end of the critical period. `load_sweep(path)` validates everything at once: every
mistake is a `SpecError` naming the field and the fix. `SweepSpec.trials()` expands the grid into
`TrialSpec`s, always including each seed's no-deficit baseline (sensitivity is measured against it),
length-matched: one baseline per seed (and schedule) trained as long as the longest trial compared with
it, so every window is compared with the baseline's accuracy after as many epochs as the window trained;
with a restarted schedule, one baseline per window end, restarted there (`TrialSpec.baseline`).
`variants.py` derives the smoke and full-grid variants of a sweep (`cpsweep launch --smoke`, `--full-grid`).

Epoch conventions: epochs are 0-based; a window [onset, onset + length) is the set of epochs with the
deficit on. With `clean_after: K` (the paper's protocol: equal recovery) a trial trains onset + length + K
epochs. With `epochs: E` every trial trains E epochs and the window must end by E; windows ending at
different epochs then need `common_end: true` (`epoch_rule.py`).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import hashlib
import importlib.util
import itertools
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import yaml

from ..errors import Problems, SpecError
from ._parse import check_keys, coerce, parse, parse_valid
from .epoch_rule import (MAX_EPOCHS, MAX_SEED, check_common_end, epoch_int, parse_epoch_rule, positive_epochs,
                         seed_int)
from .grid import grid_problem, parse_grid, schedule_axis, set_dotted
from .search import SearchSpec, coarse_onsets, parse_search
from .plugins import importable_here
from .registry import entry
from .spec import (SECTIONS, Component, DataSpec, FisherSpec, OptimSpec, Resources, TrialSpec, component,
                   data_section, freeze, metrics_section)
from .views import hashed_settings
from .ranges import DEFICIT_RANGES, MODEL_RANGES, RANGES, RESOURCE_RANGES
from .yaml_text import apply_overrides, read_yaml, yaml_problem

MAX_NAME = 100  # characters of a sweep's name (a folder's name: file systems allow 255 bytes)
MAX_TRIALS = 100_000  # window trials in one sweep (the largest measured: 10,000, docs/benchmarks.md)

# Keys of a sweep file (which dataclass reads each settings section: `spec.SECTIONS`).
TOP_KEYS = ["name", "description", "seed", "replicates", "epochs", "clean_after", "common_end", "data", "model",
            "optim", "schedule", "deficit", "fisher", "engine", "bn_refresh", "checkpoint_every", "grid",
            "resources", "tracking", "search", "metrics"]
TRACKERS = ("wandb", "mlflow")  # experiment trackers a sweep can log to (`tracking:`, `--tracker`)
# each tracker's options in `tracking:` (None: any keyword of the tracker's own init, e.g. wandb.init)
TRACKER_OPTIONS: dict[str, tuple[str, ...] | None] = {"wandb": None, "mlflow": ("tracking_uri", "experiment_name")}


def parse_tracking(raw: Any) -> dict[str, dict[str, Any]]:
    """`tracking:`: tracker name -> its options; every name known, every option valid, every package
    importable, so that a file that validates also launches."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError("tracking", f"expected a mapping of tracker names to options, e.g. tracking: {{wandb: "
                                    f"{{project: my-project}}}}; got {raw!r}")
    problems, out = Problems(), {}
    for name, options in raw.items():
        with problems.check():
            check_keys({name: 0}, TRACKERS, "tracking")
            if options is not None and not isinstance(options, Mapping):
                raise SpecError(f"tracking.{name}", f"expected a mapping of options or nothing, got {options!r}")
            valid = TRACKER_OPTIONS[name]
            if valid is not None:  # (a tracker whose options are named: each is text)
                check_keys(dict(options or {}), valid, f"tracking.{name}")
                for key, value in dict(options or {}).items():
                    if not isinstance(value, str):
                        raise SpecError(f"tracking.{name}.{key}", f"expected text, got {value!r}")
            if importlib.util.find_spec(name) is None:
                raise SpecError(f"tracking.{name}", f"the {name} package is not installed here; pip install "
                                                    f"'cpsweep[{name}]' (or pip install {name}), or remove it")
            out[name] = dict(options or {})
    problems.raise_any()
    return out


@dataclass(frozen=True)
class SweepSpec:
    name: str
    raw: dict[str, Any]             # the file as read, for re-resolving grid overrides
    base: TrialSpec                 # the fixed settings (window and seed filled per trial)
    seeds: tuple[int, ...]
    grid: dict[str, tuple[Any, ...]]
    resources: Resources
    epochs: int | None
    clean_after: int | None
    source: str | None = None
    search: SearchSpec | None = None  # adaptive onsets (`search.py`, `sweep/adaptive.py`); None: the whole grid
    common_end: bool = False        # `epochs:` with windows ending at different epochs accepted (not hashed)
    overrides: tuple[str, ...] = ()  # `key=value` from the command line, already merged into `raw`

    def trials(self, onsets: Callable[[TrialSpec], bool] | None = None) -> list[TrialSpec]:
        """Every trial of the grid plus each seed's baseline, deduplicated, in a stable order.

        `onsets`: keep only the window trials it accepts (an adaptive search's chosen onsets) and the
        baselines they are compared with (and each seed's plain baseline), each as long as in the whole
        grid, so every round compares with the same baselines."""
        extra = [k for k in self.grid if k not in ("onset", "length", "seed", "deficit")]
        deficits = self.grid.get("deficit", (None,))
        out: dict[str, TrialSpec] = {}
        problems = Problems()  # every grid value's mistakes at once (each said once), not the first trial's
        for combo in itertools.product(*(self.grid[k] for k in extra)):
            settings = dict(zip(extra, combo))
            for seed in self.grid.get("seed", self.seeds):
                with problems.check():
                    _keep_longest(out, self.make_trial(0, 0, seed, settings=settings))
                for deficit, onset, length in itertools.product(deficits, self.grid["onset"], self.grid["length"]):
                    with problems.check():
                        t = self.make_trial(onset, length, seed, deficit=deficit, settings=settings)
                        if onsets is None or onsets(t):
                            out.setdefault(t.trial_id, t)
                        _keep_longest(out, t.baseline())
        problems.raise_any(self.source)
        if onsets is not None:  # drop the baselines (restarted ones: one per window end) no kept window uses
            used = {t.baseline_id for t in out.values() if not t.is_baseline}
            out = {tid: t for tid, t in out.items()
                   if not t.is_baseline or tid in used or t.baseline_id == tid and _unrestarted(t)}
        for t in out.values():
            base = out[t.baseline_id]
            if t.schedule.name == "cosine" and base.epochs != t.epochs:
                raise SpecError("schedule.name", f"cosine's rate depends on a trial's total epochs, so {t.trial_id} "
                                                 f"({t.epochs} epochs) cannot be compared with its seed's baseline "
                                                 f"({base.epochs}); with cosine give epochs: (a fixed total) "
                                                 f"instead of clean_after, and common_end: true if the "
                                                 f"windows end at different epochs")
        return sorted(out.values(), key=lambda t: (not t.is_baseline, t.deficit.name, t.onset, t.length,
                                                   repr(t.tags), t.seed))

    def make_trial(self, onset: int, length: int, seed: int, *, deficit: Any = None,
                   settings: Mapping[str, Any] | None = None, epochs: int | None = None) -> TrialSpec:
        """One trial of this sweep: window [onset, onset + length), with optional axis values."""
        epoch_int(onset, "onset")
        epoch_int(length, "length")
        seed_int(seed, "seed")
        if epochs is not None:
            positive_epochs(epochs, "epochs")
        raw = copy.deepcopy(self.raw)
        tags: list[tuple[str, Any]] = []
        if length == 0:  # the baseline has no deficit, so deficit settings do not make it a new trial
            settings = {k: v for k, v in (settings or {}).items() if not k.startswith("deficit")}
            deficit = None
        if deficit is not None:
            raw["deficit"] = deficit
        labels = {}
        # a whole section (model: [...]) before the options set in it (model.channels: [...]), whatever the
        # grid's order, so that the option a trial's id names is the one it trains with
        for key, value in sorted((settings or {}).items(), key=lambda kv: "." in kv[0]):
            if key == "schedule":
                raw["schedule"], value = schedule_axis(raw.get("schedule"), value)
            else:
                set_dotted(raw, key, value)
            labels[key] = value
        tags += [(key, freeze(labels[key])) for key in settings or {}]
        try:
            base = _resolve_fixed(raw, self.name, None) if (settings or deficit is not None) else self.base
        except SpecError as e:  # a grid value's mistake (the fixed settings were checked when parsed)
            raise SpecError.of([grid_problem(p, self.grid, settings or {}, deficit) for p in e.problems],
                               self.source) from None
        if length == 0:
            onset, deficit_c = 0, Component("none", {})
        else:
            deficit_c = base.deficit
        if epochs is None:
            epochs = self.epochs if self.epochs is not None else onset + length + self.clean_after
        path = "grid" if settings or deficit is not None else ""
        _check_window(onset, length, epochs, path)
        return dataclasses.replace(base, onset=onset, length=length, seed=seed, epochs=epochs,
                                   deficit=deficit_c, tags=tuple(tags))

    def hash(self) -> str:
        """Hash of the resolved spec (fixed settings, grid and seeds), 12 hex digits."""
        return _digest({"fixed": self.fixed_settings(), "grid": self.grid, "seeds": self.seeds})

    def fixed_settings(self) -> dict[str, Any]:
        """The settings shared by every trial (the fields whose role is hashed, `spec.py`) and the sweep's
        epoch rule; a sweep may not change them under the same name."""
        return {**hashed_settings(self.base), "epochs": self.epochs, "clean_after": self.clean_after}

    def total_epochs(self) -> int:
        return sum(t.epochs for t in self.trials())


def _unrestarted(baseline: TrialSpec) -> bool:
    """A seed's baseline whose rate does not restart (a restarted one restarts at its `onset`)."""
    return baseline.onset == 0


def _keep_longest(out: dict[str, TrialSpec], baseline: TrialSpec) -> None:
    """Add a baseline, or lengthen the one with its id: one baseline serves every trial matched with it,
    trained as long as the longest of them (the shorter ones are its first epochs)."""
    have = out.get(baseline.trial_id)
    if have is None or have.epochs < baseline.epochs:
        out[baseline.trial_id] = baseline


def _digest(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _check_window(onset: int, length: int, epochs: int, path: str) -> None:
    where = f"{path}.onset/length" if path else "grid.onset/length"
    if onset + length > epochs:
        raise SpecError(where, f"window [{onset}, {onset + length}) ends after the last epoch ({epochs} "
                               f"epochs); shorten the window, lower the onset or raise epochs")
    if epochs > MAX_EPOCHS:
        raise SpecError(where, f"window [{onset}, {onset + length}) makes a trial of {epochs:,} epochs (clean_after "
                        f"included), more than {MAX_EPOCHS:,}; lower the onset, the length or clean_after")


def _check_ranges(t: TrialSpec) -> list[SpecError]:
    """Every range and consistency mistake of the fixed settings (all of them, not the first)."""
    checks = [(path, r.holds(functools.reduce(getattr, path.split("."), t)), r.message) for path, r in RANGES.items()]
    checks += [(f"deficit.{option}", t.deficit.name != name or r.holds(t.deficit.options[option]), r.message)
               for (name, option), r in DEFICIT_RANGES.items()]
    checks += [(f"model.{option}", t.model.name != name or r.holds(t.model.options[option]), r.message)
               for (name, option), r in MODEL_RANGES.items()]
    checks += [("metrics", not t.metrics or t.fisher.every > 0, "are measured at the Fisher epochs, and "
                "fisher.every is 0; set fisher.every (e.g. 5)"),
               ("deficit.name", t.deficit.name != "weight_decay" or t.optim.weight_decay > 0,
                "a weight_decay window scales optim.weight_decay, which is 0 here; set optim.weight_decay > 0"),
               ("deficit.name", t.deficit.name != "no_augment" or _augments(t),
                "a no_augment window turns augmentation off, which is off here; set data.augment: true (images)")]
    found = [SpecError(path, message) for path, ok, message in checks if not ok]
    if t.optim.name == "adam" and t.optim.momentum != OptimSpec.momentum:
        found.append(SpecError("optim.momentum", "has no effect with adam; remove it or use beta1"))
    for key in ("beta", "steps"):  # the options of fisher.method: variational
        if t.fisher.method != "variational" and getattr(t.fisher, key) != getattr(FisherSpec, key):
            found.append(SpecError(f"fisher.{key}", f'is only used by fisher.method "variational", not '
                                                    f'"{t.fisher.method}"; remove it or set method: variational'))
    if t.fisher.method == "variational" and t.fisher.backend == "gram":
        found.append(SpecError("fisher.backend", 'method "variational" computes no per-sample gradients; use auto '
                                                 'or func'))
    kind = entry("model", t.model.name).input
    info = entry("data", t.data.name).data  # (a plug-in data set's kind is known once loaded: the dry run)
    data_kind = info.kind if info is not None else kind
    if kind != "any" and kind != data_kind:
        found.append(SpecError("model.name", f'model "{t.model.name}" needs {kind} inputs but data set '
                                             f'"{t.data.name}" has {data_kind}s; pick a matching model or data set'))
    return found


def _augments(t: TrialSpec) -> bool:
    info = entry("data", t.data.name).data
    default = info.default_augment if info is not None else False
    return default if t.data.augment is None else t.data.augment


def _resolve_fixed(raw: Mapping[str, Any], name: str, source: str | None) -> TrialSpec:
    """The fixed settings as a `TrialSpec` (window and seed zero); every section is checked, and all their
    mistakes raised together."""
    problems, parts = Problems(), {}
    steps = {**{k: (lambda k=k, cls=cls: parse(cls, raw.get(k), k)) for k, cls in SECTIONS.items()},
             "data": lambda: data_section(raw.get("data")),
             "model": lambda: component(raw.get("model", "cnn1d"), "model"),
             "deficit": lambda: component(raw.get("deficit", "blur"), "deficit"),
             "metrics": lambda: metrics_section(raw.get("metrics")),
             "bn_refresh": lambda: coerce(raw.get("bn_refresh", 50), int, "bn_refresh"),
             "checkpoint_every": lambda: coerce(raw.get("checkpoint_every", 1), int, "checkpoint_every")}
    for key, step in steps.items():
        with problems.check():
            parts[key] = step()
    # the range checks run on every section that parsed, and on the well-typed fields of a settings section
    # that did not (`parse_valid`; a failed component or data section stands in with defaults, and its range
    # mistakes wait), so that every mistake of the file is reported at once
    failed = set(steps) - set(parts)
    stand_in = {**{k: parse_valid(cls, raw.get(k)) for k, cls in SECTIONS.items()}, "data": DataSpec(),
                "model": component("cnn1d", "model"), "deficit": component("blur", "deficit"), "metrics": (),
                "bn_refresh": 50, "checkpoint_every": 1}
    t = TrialSpec(sweep=name, onset=0, length=0, epochs=0, seed=0, **{**stand_in, **parts})
    said = {e.field for e in problems.errors}
    problems.errors += [e for e in _check_ranges(t) if e.field not in said
                        and (e.field.split(".")[0] not in failed - set(SECTIONS))
                        and not (failed & {"model", "data"} and e.field == "model.name")]
    problems.raise_any(source)
    return t


def parse_sweep(raw: Any, source: str | None = None) -> SweepSpec:
    """Validate a sweep mapping (as read from YAML) and resolve it into a `SweepSpec`: the file's
    independent parts (top-level keys, name, epochs, each settings section, the grid, the resources) are
    all checked, and their mistakes raised together as one `SpecError`; the grid's trials are resolved
    only when those pass."""
    try:
        return _parse_sweep(raw, source)
    except SpecError as e:
        raise SpecError.of([e], source) from None


def _parse_sweep(raw: Any, source: str | None) -> SweepSpec:
    if not isinstance(raw, Mapping):
        kind = "an empty file" if raw is None else f"a YAML {type(raw).__name__}"
        raise SpecError("(top level)", f"a sweep file must be a mapping of settings (name:, grid:, ...), "
                                       f"got {kind}; see sweeps/quickstart.yaml")
    problems = Problems()
    with problems.check():
        check_keys(raw, TOP_KEYS, "")
    name = raw.get("name")
    with problems.check():
        if name is None:
            raise SpecError("name", "required: a name for the sweep (letters, digits, - _ .), used for its folder")
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name) \
                or name.strip(".") == "":
            raise SpecError("name", f"{name!r} cannot name a results folder: use letters, digits, - _ . "
                                    f"(e.g. blur_grid)")
        if "description" in raw and not isinstance(raw["description"], (str, type(None))):
            raise SpecError("description", f"expected text, got {raw['description']!r}")
        if len(name) > MAX_NAME:
            raise SpecError("name", f"is {len(name)} characters long, at most {MAX_NAME} (a folder name, with "
                                    f"-grid added for --full-grid); shorten it")
    seed = replicates = epochs = clean_after = base = grid = resources = search = None
    common_end = False
    with problems.check():
        seed = seed_int(coerce(raw.get("seed", 0), int, "seed"), "seed")
    with problems.check():
        replicates = coerce(raw.get("replicates", 1), int, "replicates")
        if replicates < 1:
            raise SpecError("replicates", "must be >= 1")
        if seed is not None and seed + replicates - 1 > MAX_SEED:
            raise SpecError("replicates", f"seeds {seed} .. {seed + replicates - 1} pass 2**63 - 1; lower seed")
    with problems.check():
        given = [k for k, default in (("seed", 0), ("replicates", 1)) if raw.get(k, default) != default]
        if given and isinstance(raw.get("grid"), Mapping) and "seed" in raw["grid"]:
            raise SpecError(given[0], f"grid.seed lists the seeds itself, so {' and '.join(given)} would be "
                                      f"ignored; drop {' and '.join(given)}, or drop grid.seed")
    with problems.check():
        epochs, clean_after, common_end = parse_epoch_rule(raw)
    with problems.check():
        base = _resolve_fixed(raw, str(name), None)
    with problems.check():
        grid = parse_grid(raw.get("grid"), raw)
    with problems.check():
        resources = parse(Resources, raw.get("resources"), "resources")
        wrong = [SpecError(f"resources.{k}", f"{r.message}, got {getattr(resources, k)}")
                 for k, r in RESOURCE_RANGES.items() if not r.holds(getattr(resources, k))
                 or k == "gpu" and resources.gpu > 1 and resources.gpu != int(resources.gpu)]
        if wrong:
            raise SpecError.of(wrong)
    with problems.check():
        parse_tracking(raw.get("tracking"))
    with problems.check():
        search = parse_search(raw.get("search"))
        if search is not None and grid is not None:
            coarse_onsets(search, grid["onset"])  # coarse onsets outside the grid are refused here
    problems.raise_any(source)
    count = math.prod(len(v) for k, v in grid.items() if k != "seed") * (len(grid["seed"]) if "seed" in grid
                                                                         else replicates)
    if count > MAX_TRIALS:  # before building them (a typo such as replicates: 100000000 would hang here)
        raise SpecError("grid", f"{count:,} window trials: more than one sweep holds (at most {MAX_TRIALS:,}); "
                                "check the grid and replicates for a typo, split the sweep, or let an adaptive "
                                "search (search:) choose the onsets", source)
    sweep = SweepSpec(name=name, raw=dict(raw), base=base, seeds=tuple(seed + r for r in range(replicates)),
                      grid=grid, resources=resources, epochs=epochs, clean_after=clean_after, source=source,
                      search=search, common_end=common_end)
    trials = sweep.trials()  # resolves every grid point: every window and every override is checked here
    check_common_end(epochs, common_end, {t.window_end for t in trials if not t.is_baseline})
    return sweep


def load_sweep(path: str | os.PathLike, overrides: Sequence[str] = ()) -> SweepSpec:
    """Read and validate a sweep YAML file (with `yaml.safe_load`), with command-line `overrides`
    (`apply_overrides`) merged in and recorded."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
        raw = read_yaml(text)  # yaml.safe_load's loader, keys given twice refused
    except OSError as e:
        hint = ("; if it is an override, write key=value" if "=" not in path and not os.path.exists(path)
                and not path.endswith((".yaml", ".yml")) and os.sep not in path else "")
        raise SpecError("(file)", f"cannot read the spec: {e.strerror}{hint}", path) from None
    except UnicodeDecodeError as e:
        raise SpecError("(file)", f"not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r}); a sweep "
                                  f"file is a YAML text file, e.g. sweeps/quickstart.yaml", path) from None
    except yaml.YAMLError as e:
        raise SpecError("(file)", f"not valid YAML: {yaml_problem(e)}", path) from None
    importable_here([os.path.dirname(os.path.abspath(path))])  # plug-ins next to the sweep file
    sweep = parse_sweep(apply_overrides(raw, overrides, path), path)
    return dataclasses.replace(sweep, overrides=tuple(overrides)) if overrides else sweep
