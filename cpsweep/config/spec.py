"""What one trial is: typed, frozen sections and `TrialSpec`, with each field's role declared once.

A trial's records are a pure function of its `TrialSpec`. What a field means for identity is declared on
the field itself (`field(metadata=role(...))`), and every consumer derives its view from that one
declaration:

| role      | fields                               | sweep hash | prefix key | pack members | checkpoint |
|-----------|--------------------------------------|------------|------------|--------------|------------|
| SETTING   | sweep, data, model, optim, fisher,   | yes        | yes        | shared       | yes        |
|           | bn_refresh, engine, metrics          |            |            |              |            |
| SCHEDULE  | schedule                             | yes        | per epoch  | shared       | yes        |
| DEFICIT   | deficit                              | yes        | per epoch  | may differ   | yes        |
| WINDOW    | onset, length                        | no         | per epoch  | may differ   | yes        |
| DURATION  | epochs                               | no (1)     | per epoch  | shared       | yes        |
| SEED      | seed                                 | no (axis)  | yes        | may differ   | yes        |
| LABEL     | tags                                 | no         | no (2)     | may differ   | no         |
| PLACE     | data.data_dir, checkpoint_every      | no         | no         | shared       | no         |

(1) the sweep hashes its `epochs` / `clean_after` instead; (2) tags restate grid values already resolved
into the other fields. "Per epoch": the field enters the prefix key through the per-epoch signature of
`timeline.py` (learning rate, deficit or none, Fisher measured or not), not as a setting. The schedule acts
only through each epoch's learning rate, so trials under two schedules share the epochs where their rates
agree (a restarted schedule branches from the plain one at the window's end). Nested sections
(`DataSpec`, ...) take their parent's role unless a field declares its own.

The views themselves (the sweep hash's, the prefix key's, a pack's, a checkpoint's) are in `views.py`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from ..errors import SpecError
from ._parse import check_keys, coerce, parse, suggest, type_hints
from .plugins import DATA_KEYS
from .registry import entry


@dataclass(frozen=True)
class Role:
    """What a field means for a trial's identity (see the table in the module docstring)."""
    name: str
    hashed: bool        # a fixed setting of the sweep: in its hash, and a relaunch may not change it
    computed: bool      # decides what every epoch computes: part of every prefix key
    per_member: bool    # may differ between the members of one vmapped pack
    identity: bool      # a checkpoint taken with another value belongs to another trial


SETTING = Role("setting", hashed=True, computed=True, per_member=False, identity=True)
SCHEDULE = Role("schedule", hashed=True, computed=False, per_member=False, identity=True)
DEFICIT = Role("deficit", hashed=True, computed=False, per_member=True, identity=True)
WINDOW = Role("window", hashed=False, computed=False, per_member=True, identity=True)
DURATION = Role("duration", hashed=False, computed=False, per_member=False, identity=True)
SEED = Role("seed", hashed=False, computed=True, per_member=True, identity=True)
LABEL = Role("label", hashed=False, computed=False, per_member=True, identity=False)
PLACE = Role("place", hashed=False, computed=False, per_member=False, identity=False)
ROLES = (SETTING, SCHEDULE, DEFICIT, WINDOW, DURATION, SEED, LABEL, PLACE)


def role(r: Role, *, hashed_at_default: bool = True, keyed_at_default: bool = True) -> dict[str, Any]:
    """Field metadata declaring `r`. `hashed_at_default=False`: a setting added after results folders
    existed, left out of the sweep hash while it has its default value (so their hashes stay valid).
    `keyed_at_default=False`: likewise left out of the prefix keys (`computed_settings`) at its default, so
    that prefix checkpoints made before it existed stay valid (the engine section predates the pinned
    prefix keys and stays in them)."""
    return {"role": r, "hashed_at_default": hashed_at_default, "keyed_at_default": keyed_at_default}


@dataclass(frozen=True)
class DataSpec:
    name: str = "mnist1d"           # cifar10 | mnist | mnist1d, or a plug-in's reference package.module:function
    data_dir: str | None = field(default=None, metadata=role(PLACE))
                                    # where data sets live; None: $CPSWEEP_DATA_DIR or ~/.cache/cpsweep
    subset: int | None = None       # keep this many training examples, at most this many test ones; None: all
    augment: bool | None = None     # the paper's crop + flip; None: on for cifar10 only
    options: dict[str, Any] = field(default_factory=dict, metadata=role(SETTING, hashed_at_default=False,
                                                                          keyed_at_default=False))
                                    # a plug-in data set's options (the other keys of the data section)
    plugin: str = field(default="", metadata=role(SETTING, hashed_at_default=False, keyed_at_default=False))
                                    # a plug-in data set's identity (`plugins.py`)

    def __hash__(self) -> int:  # (options is a dict)
        return hash((self.name, self.data_dir, self.subset, self.augment, repr(sorted(self.options.items())),
                     self.plugin))


# DATA_KEYS (imported from plugins.py, which refuses them as a data set's option names): the data section's
# own keys, DataSpec's fields but `options` and `plugin`; a plug-in data set's options are the others


def data_section(raw: Any) -> DataSpec:
    """The `data:` section: a built-in data set's settings, or a plug-in's (`name: package.module:function`)
    with its options (the section's other keys, checked against its signature) and identity."""
    raw = {"name": raw} if isinstance(raw, str) else ({} if raw is None else raw)
    if not isinstance(raw, Mapping):
        raise SpecError("data", f"expected a mapping of settings, got {raw!r}")
    e = entry("data", raw.get("name", DataSpec.name), "data.name")
    if not e.plugin:
        check_keys(raw, DATA_KEYS, "data")
        return parse(DataSpec, raw, "data")
    spec = parse(DataSpec, {k: v for k, v in raw.items() if k in DATA_KEYS}, "data")
    options = e.complete({k: v for k, v in raw.items() if k not in DATA_KEYS}, "data")
    return dataclasses.replace(spec, options=options, plugin=e.plugin)


@dataclass(frozen=True)
class Component:
    """A registry entry with its typed options (a model or a deficit): a built-in name, or a plug-in's
    reference `package.module:attribute` with its identity (`plugins.py`; empty for a built-in)."""
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    plugin: str = ""                # "<reference>@<source hash or version>": in prefix keys and checkpoints

    @property
    def label(self) -> str:
        """Its name in trial ids (`id_label`)."""
        return id_label(self.name)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **{k: list(v) if isinstance(v, tuple) else v for k, v in self.options.items()},
                **({"plugin": self.plugin} if self.plugin else {})}


@dataclass(frozen=True)
class OptimSpec:
    name: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.05                # initial learning rate
    momentum: float = 0.9           # SGD only
    weight_decay: float = 5e-4      # L2 penalty, both optimisers
    batch_size: int = 128
    beta1: float = 0.9              # Adam only
    beta2: float = 0.999            # Adam only


@dataclass(frozen=True)
class ScheduleSpec:
    name: Literal["exponential", "constant", "step", "cosine"] = "exponential"
    gamma: float = 0.97             # exponential: lr0 * gamma**epoch; step: factor every step_size epochs
    step_size: int = 30             # step only, epochs between decays
    restart_after_deficit: bool = False  # restart the schedule at epoch onset + length


@dataclass(frozen=True)
class FisherSpec:
    every: int = 1                  # measure every k epochs (and at the last); 0: never
    probe_per_class: int = 30       # probe set: this many clean training examples per class
    method: Literal["exact", "sampled", "empirical", "variational"] = "exact"
    samples: int = 1                # labels drawn per input (method: sampled)
    backend: Literal["auto", "func", "gram"] = "auto"
    beta: float = field(default=1e-24, metadata=role(SETTING, hashed_at_default=False, keyed_at_default=False))
                                    # method: variational; weight of the log-variance term, sigma_i^2 = beta /
                                    # F_ii (= engine/_fisher_variational.py's VARIATIONAL_BETA; added later:
                                    # hashed only when set); 1e-20 and 1.0e-20 both read as numbers
    steps: int = field(default=300, metadata=role(SETTING, hashed_at_default=False, keyed_at_default=False))
                                    # method: variational; Adam steps on the noise (= VARIATIONAL_STEPS)


@dataclass(frozen=True)
class EngineSpec:
    """How the arithmetic runs; the defaults give exact (bit for bit on CPU) reproducibility."""
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast of training and test forward passes
                                    # (the Fisher stays fp32); faster on GPUs with bf16 tensor cores
    channels_last: bool = False     # NHWC layout for 2-D conv nets (faster cuDNN convolutions)
    compile: bool = False           # torch.compile the model with static shapes (first epoch pays the compile
                                    # time, later epochs never recompile): the partial last training batch is
                                    # dropped, test chunks are padded, the BN refresh runs uncompiled
    tf32: bool = field(default=False, metadata=role(SETTING, hashed_at_default=False, keyed_at_default=False))
                                    # TF32 for fp32 matmuls and cuDNN convolutions on a GPU (never in the
                                    # Fisher); off: fp32 is fp32 (added later: hashed and keyed only when set)
    deterministic: bool = field(default=False, metadata=role(SETTING, hashed_at_default=False,
                                                             keyed_at_default=False))
                                    # GPU: deterministic algorithms, so resume and shared prefixes are bit for
                                    # bit there too (engine/numerics.py); CPU: always deterministic


# the settings sections of a sweep file read by a dataclass each (`data`, `model` and `deficit` have their own)
SECTIONS = {"optim": OptimSpec, "schedule": ScheduleSpec, "fisher": FisherSpec, "engine": EngineSpec}


@dataclass(frozen=True)
class Resources:
    cpu: float = 1.0                # CPU cores per trial
    gpu: float = 0.0                # GPUs per trial; a fraction lets several trials share one GPU


@dataclass(frozen=True)
class TrialSpec:
    """Everything that determines one trial; its records are a pure function of this."""
    sweep: str = field(metadata=role(SETTING))
    data: DataSpec = field(metadata=role(SETTING))
    model: Component = field(metadata=role(SETTING))
    optim: OptimSpec = field(metadata=role(SETTING))
    schedule: ScheduleSpec = field(metadata=role(SCHEDULE))
    deficit: Component = field(metadata=role(DEFICIT))
    fisher: FisherSpec = field(metadata=role(SETTING))
    onset: int = field(metadata=role(WINDOW))       # first epoch with the deficit, 0-based
    length: int = field(metadata=role(WINDOW))      # epochs with the deficit; 0 for the baseline
    epochs: int = field(metadata=role(DURATION))    # total training epochs
    seed: int = field(metadata=role(SEED))
    bn_refresh: int = field(default=50, metadata=role(SETTING))
                                    # batches of clean training data to re-estimate BN statistics before
                                    # each evaluation (the authors refresh them); -1: a full pass; 0: off
    checkpoint_every: int = field(default=1, metadata=role(PLACE))
    tags: tuple[tuple[str, Any], ...] = field(default=(), metadata=role(LABEL))
                                    # extra grid axes and their values, for the id and tables
    engine: EngineSpec = field(default=EngineSpec(), metadata=role(SETTING, hashed_at_default=False))
    metrics: tuple[Component, ...] = field(default=(), metadata=role(SETTING, hashed_at_default=False,
                                                                       keyed_at_default=False))
                                    # the user's metrics, measured at the Fisher epochs (docs/plugins.md)

    @property
    def is_baseline(self) -> bool:
        return self.deficit.name == "none" or self.length == 0

    @property
    def window_end(self) -> int:
        return self.onset + self.length

    def deficit_active(self, epoch: int) -> bool:
        """True exactly for epochs in [onset, onset + length)."""
        return not self.is_baseline and self.onset <= epoch < self.window_end

    @property
    def restart_at(self) -> int | None:
        """The epoch the learning-rate schedule starts again at (`schedule.restart_after_deficit`): the
        window's end; for a baseline, the end of the window it is matched with (its `onset`)."""
        return self.window_end if self.schedule.restart_after_deficit and self.window_end > 0 else None

    @property
    def trial_id(self) -> str:
        """Stable, readable name, e.g. `blur-o20-l40-s0`, `baseline-s0`, or `baseline-r60-s0` (a baseline
        whose schedule restarts at epoch 60)."""
        extra = "".join(f"-{k.split('.')[-1]}{_tag(v)}" for k, v in self.tags)
        if self.is_baseline:
            restart = f"-r{self.restart_at}" if self.restart_at is not None else ""
            return f"baseline{restart}{extra}-s{self.seed}"
        return f"{self.deficit.label}-o{self.onset}-l{self.length}{extra}-s{self.seed}"

    def baseline(self) -> TrialSpec:
        """The no-deficit trial this one is compared with: the same seed, settings and non-deficit axes, the
        same learning rate at every epoch (a restarted schedule restarts at the same epoch), trained as
        long. Trials whose baselines share an id share one baseline, trained as long as the longest needs
        (`SweepSpec.trials`): its first epochs are the shorter baselines, epoch for epoch."""
        tags = tuple((k, v) for k, v in self.tags if not k.startswith("deficit"))
        restart = self.window_end if self.schedule.restart_after_deficit else 0
        return dataclasses.replace(self, onset=restart, length=0, deficit=Component("none", {}), tags=tags)

    @property
    def plugins(self) -> str:
        """The identities of the plug-ins this trial runs, `kind=reference@source;...` ('' for none)."""
        used = [("data", self.data.plugin), ("model", self.model.plugin),
                ("deficit", "" if self.is_baseline else self.deficit.plugin),
                *(("metric", m.plugin) for m in self.metrics)]
        return ";".join(f"{kind}={p}" for kind, p in used if p)

    @property
    def baseline_id(self) -> str:
        """Id of the no-deficit trial this one is compared with (`baseline()`)."""
        return self.baseline().trial_id

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (what checkpoints, Tune configs and spec.yaml hold)."""
        d = dataclasses.asdict(self)
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Component):
                d[f.name] = value.to_dict()
        d["tags"] = [list(t) for t in self.tags]
        d["metrics"] = [m.to_dict() for m in self.metrics]
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrialSpec:
        """The inverse of `to_dict` (a missing section takes its defaults); settings sections are typed
        like YAML, components (checked when the sweep was parsed) taken as they are."""
        hints = type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in d:
                continue
            tp, raw = hints[f.name], d[f.name]
            if tp is Component:  # checked when the sweep was parsed: trusted, not imported again here
                values[f.name] = _trusted(raw)
            elif f.name == "metrics":
                values[f.name] = tuple(_trusted(m) for m in raw)
            elif tp is DataSpec:  # a plug-in's options as parsed (trusted), the rest typed
                options = {k: freeze(v) for k, v in (raw.get("options") or {}).items()}
                values[f.name] = dataclasses.replace(
                    parse(DataSpec, {k: v for k, v in raw.items() if k in DATA_KEYS}, f.name),
                    options=options, plugin=raw.get("plugin", ""))
            elif f.name == "tags":
                values[f.name] = tuple((k, freeze(v)) for k, v in raw)
            elif dataclasses.is_dataclass(tp):
                values[f.name] = parse(tp, raw, f.name)
            else:
                values[f.name] = coerce(raw, tp, f.name)
        return cls(**values)


def _trusted(raw: Mapping[str, Any]) -> Component:
    return Component(raw["name"], {k: freeze(v) for k, v in raw.items() if k not in ("name", "plugin")},
                     raw.get("plugin", ""))


def metrics_section(raw: Any) -> tuple[Component, ...]:
    """`metrics:` of a sweep file: a list of metric references (or mappings with `name` and options), each
    checked like a component; their column names (`metric.<attribute>`) must differ."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise SpecError("metrics", 'expected a list, e.g. metrics: [my_metrics:corrupted_accuracy]')
    out = tuple(component(m, f"metrics[{i}]", "metric") for i, m in enumerate(raw))
    labels = [m.label for m in out]
    dup = next((x for x in labels if labels.count(x) > 1), None)
    if dup:
        raise SpecError("metrics", f'two metrics named "{dup}" (their column: metric.{dup}); rename one')
    return out


def component_name(value: Any) -> Any:
    """The name a component value (`blur`, `{name: blur, factor: 4}`, a plug-in reference) gives, as written."""
    return value.get("name") if isinstance(value, Mapping) else value


def component(raw: Any, path: str, what: str | None = None) -> Component:
    """A model or deficit from its YAML form: a name or reference, or a mapping with `name` and options
    (checked against the registry entry, a plug-in's identity recorded)."""
    what = what or path.split(".")[0]
    if isinstance(raw, str):
        raw = {"name": raw}
    if isinstance(raw, Mapping) and "name" not in raw:  # (a misspelt "name" is said as such)
        close = next((k for k in raw if suggest(str(k), ["name"])), None)
        if close is not None:
            raise SpecError(f"{path}.{close}", f'unknown key "{close}" (did you mean "name"?); "name" names the {what}')
        raise SpecError(f"{path}.name", f'required: the {what} (a built-in name or "package.module:function"), '
                                        f"beside its options")
    if not isinstance(raw, Mapping):
        raise SpecError(path, f'expected a {what} name (or "package.module:function") or a mapping with "name"')
    e = entry(what, raw["name"], f"{path}.name")
    return Component(raw["name"], e.complete({k: v for k, v in raw.items() if k != "name"}, path), e.plugin)


def id_label(name: str) -> str:
    """A component's name as trial ids write it: a plug-in's reference `package.module:attribute` as its
    attribute name (no colon in folder names), a built-in's as it is."""
    return name.rpartition(":")[2]


def _tag(value: Any) -> str:
    if isinstance(value, Mapping):
        return _tag(str(value.get("name", ""))) or "x"
    if isinstance(value, str):  # a name, or a plug-in's reference
        return id_label(value)
    if isinstance(value, (tuple, list)):  # e.g. model.hidden: [256, 256] -> "256x256"
        return "x".join(_tag(v) for v in value)
    return str(value)


def freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value
