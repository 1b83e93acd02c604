"""The JSON Schema (draft 2020-12) of a sweep file, built from the declarations the parser itself reads.

`cpsweep schema` prints it and docs/sweep.schema.json is its committed copy; tests/test_schema.py keeps the
two equal and checks that the schema and `parse_sweep` give the same verdict on mutated files. An editor
with the YAML language server (VS Code's YAML extension, ...) reads it from a sweep file's first line

    # yaml-language-server: $schema=../docs/sweep.schema.json

and completes keys, lists the built-in names and flags unknown keys, wrong types and out-of-range numbers
as you type. The keys, types and defaults come from the sections' dataclasses (`spec.py`, `search.py`), the
key lists and ranges from `sweep_file.py`, the names and options from `registry.py`. What the schema cannot
see, `cpsweep validate` checks: that a plug-in imports and its options fit its signature, an installed
package's entry-point names, a window that ends after the last epoch, and combinations (adam with momentum,
an image model on 1-D signals, cosine with clean_after, a name twice on a grid axis). Numbers YAML 1.1 reads
as text (`1e-3`) pass as numbers, their range unchecked.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal, Mapping

from ._parse import SCIENTIFIC, Range, option_type, type_hints
from .registry import BUILTINS
from .search import RANGE_KEYS, RANGES as SEARCH_RANGES, SearchSpec
from .spec import DATA_KEYS, DataSpec, Resources, ScheduleSpec, TrialSpec
from .grid import DOTTED, GRID_AXES, schedule_names
from .epoch_rule import MAX_EPOCHS, MAX_SEED
from .ranges import DEFICIT_RANGES, MODEL_RANGES, RANGES, RESOURCE_RANGES
from .sweep_file import MAX_NAME, SECTIONS, TOP_KEYS, TRACKER_OPTIONS

DIALECT = "https://json-schema.org/draft/2020-12/schema"
REFERENCE = r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$"  # a plug-in: package.module:attribute (`plugins.py`)
JSON = {int: "integer", bool: "boolean", str: "string", type(None): "null"}

# What an editor shows for each key (dotted; a built-in component's options as kind.name.option).
DESCRIPTIONS = {
    "name": "The sweep's name (letters, digits, - _ .): its results folder", "description": "Free text; not read",
    "seed": "The first seed: replicates R runs seeds seed .. seed + R - 1", "replicates": "Seeds per grid point",
    "epochs": "Every trial trains this many epochs (give epochs or clean_after; null: not given)",
    "clean_after": "Clean epochs after every window: a trial trains onset + length + clean_after epochs",
    "common_end": "With epochs: accept windows that end at different epochs (unequal recovery)",
    "data": "The data set: a name, or a mapping with name and settings",
    "data.name": "A built-in data set, or your own as package.module:function (its options beside)",
    "data.data_dir": "Where data sets live; null: $CPSWEEP_DATA_DIR or ~/.cache/cpsweep",
    "data.subset": "Keep this many training examples (smoke runs); null: all",
    "data.augment": "The paper's crop + flip; null: on for cifar10 only",
    "model": "The network: a built-in name or package.module:function, or a mapping with name and options",
    "deficit": "The deficit during each window: a built-in name or package.module:function, or a mapping with "
               "name and options",
    "metrics": "Your metrics (package.module:function, or mappings with name and options), measured at the "
               "Fisher epochs",
    "optim": "The optimiser", "optim.name": "sgd or adam", "optim.lr": "Initial learning rate",
    "optim.momentum": "SGD momentum (sgd only)", "optim.weight_decay": "L2 penalty",
    "optim.batch_size": "Training batch size", "optim.beta1": "Adam only", "optim.beta2": "Adam only",
    "schedule": "The learning-rate schedule",
    "schedule.name": "exponential (lr * gamma**epoch), constant, step (times gamma every step_size epochs) or "
                     "cosine (needs epochs)",
    "schedule.gamma": "Decay factor (exponential, step)", "schedule.step_size": "Epochs between decays (step)",
    "schedule.restart_after_deficit": "Start the schedule again at the window's end",
    "fisher": "The Fisher-information trace", "fisher.every": "Measure every k epochs (and at the last); 0: never",
    "fisher.probe_per_class": "Probe set: this many clean training examples per class",
    "fisher.method": "exact (over classes), sampled, empirical (true labels) or variational",
    "fisher.samples": "Labels drawn per input (method: sampled)", "fisher.backend": "Per-sample gradients: auto, "
    "func or gram", "fisher.beta": "Weight of the log-variance term (method: variational)",
    "fisher.steps": "Adam steps on the noise (method: variational)",
    "engine": "How the arithmetic runs; the defaults are bit-for-bit reproducible on CPU",
    "engine.precision": "fp32, or bf16 autocast (the Fisher stays fp32)",
    "engine.channels_last": "NHWC layout for 2-D conv nets", "engine.compile": "torch.compile the model",
    "engine.tf32": "TF32 for fp32 matmuls and convolutions on a GPU, never in the Fisher; off: fp32 is fp32",
    "engine.deterministic": "Deterministic GPU algorithms: resume and shared prefixes bit for bit on a GPU too; "
                            "a CPU always is",
    "bn_refresh": "Batches of clean data to re-estimate BatchNorm statistics before each test; -1: all; 0: off",
    "checkpoint_every": "A checkpoint every k epochs (and at the last)",
    "grid": "The grid's axes: a trial per combination, plus each seed's baseline; a dotted setting (optim.lr) "
            "is an axis too",
    "grid.onset": "Window onsets (0-based epochs): a list, or a range {from, to, step}",
    "grid.onset.from": "The first onset", "grid.onset.to": "The last onset (included if on a step)",
    "grid.onset.step": "Epochs between onsets: the resolution",
    "grid.length": "Window lengths in epochs: a list, or a range {from, to, step}",
    "grid.seed": "Seeds (instead of seed and replicates)",
    "grid.deficit": "Deficits, each a name or a mapping with name and options", "grid.model": "Models, likewise",
    "grid.schedule": "Schedules: a name, restart (the file's schedule restarted after the window), or a mapping",
    "resources": "What one trial takes", "resources.cpu": "CPU cores per trial",
    "resources.gpu": "GPUs per trial: a fraction below 1 shares a GPU, or a whole number",
    "tracking": "Experiment trackers, each with its options", "tracking.wandb": "Any keyword of wandb.init",
    "tracking.mlflow": "MLflow's tracking_uri and experiment_name", "tracking.mlflow.tracking_uri": "Server or "
    "store", "tracking.mlflow.experiment_name": "Experiment to log to",
    "search": "Adaptive onsets: run a few of grid.onset, then refine where the critical period ends",
    "search.coarse": "Round 0: a step in epochs, or the onsets; null: 5 spread",
    "search.threshold": "In the critical period: shown to cost more than this (points)",
    "search.margin": "Out: shown to cost less than threshold + margin", "search.max_rounds": "Rounds after round 0",
    "search.max_epochs": "Epoch budget; null: none", "search.max_trials": "Trial budget; null: none",
    "model.all_cnn_c.width": "Width multiplier", "model.all_cnn_c.final_bn_relu": "BN + ReLU after the last conv",
    "model.all_cnn_c.valid_block7": "Block 7 unpadded", "model.resnet18.width": "Channels of the first stage",
    "model.mlp.hidden": "Hidden layer widths", "model.mlp.bn": "BatchNorm after each hidden layer",
    "model.cnn1d.channels": "Channels per block", "model.cnn1d.depth": "Conv blocks",
    "model.cnn1d.kernel": "Kernel size", "model.cnn1d.bias": "A bias in every conv layer",
    "deficit.blur.factor": "Downsampling factor", "deficit.noise.std": "Noise std (normalised units)",
    "deficit.label_noise.fraction": "Fraction of examples relabelled", "deficit.weight_decay.scale": "Weight "
    "decay times this", "deficit.lr_scale.scale": "Learning rate times this", "deficit.batch_size.size": "Batch size",
}


def _of(tp: Any) -> dict[str, Any]:
    """The schema of a value the parser checks against the annotation `tp` (`_parse.coerce`)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [s for a in args for s in _of(a).get("anyOf", [_of(a)])]}
    if origin is tuple:
        return {"type": "array", "items": _of(args[0])}
    if tp is float:  # YAML 1.1 reads 1e-3 as text, which the parser reads as a number
        return {"anyOf": [{"type": "number"}, {"type": "string", "pattern": rf"^\s*{SCIENTIFIC.pattern}\s*$"}]}
    return {"type": JSON[tp]} if tp in JSON else {}


def _bounded(schema: dict[str, Any], r: Range | None) -> dict[str, Any]:
    """`schema` with the range `r` on its numbers (each item of a list of numbers)."""
    if r is None:
        return schema
    if "anyOf" in schema:
        return {**schema, "anyOf": [_bounded(s, r) for s in schema["anyOf"]]}
    if schema.get("type") == "array" and r.each:  # (a list of numbers, each in the range)
        return {**schema, "items": _bounded(schema["items"], r)}
    if schema.get("type") not in ("integer", "number"):
        return schema
    low = {} if r.low is None else {"exclusiveMinimum" if r.open_low else "minimum": r.low}
    high = {} if r.high is None else {"exclusiveMaximum" if r.open_high else "maximum": r.high}
    return {**schema, **low, **high}


def _prop(path: str, tp: Any, default: Any = dataclasses.MISSING, r: Range | None = None) -> dict[str, Any]:
    out = {"description": DESCRIPTIONS.get(path, ""), **_bounded(_of(tp), r)}
    if default is not dataclasses.MISSING:
        out["default"] = list(default) if isinstance(default, tuple) else default
    return out


def _fields(cls: type, path: str, ranges: Mapping[str, Range], keys: Any = None) -> dict[str, Any]:
    hints = type_hints(cls)
    return {f.name: _prop(f"{path}.{f.name}", hints[f.name], f.default, ranges.get(f.name))
            for f in dataclasses.fields(cls) if keys is None or f.name in keys}


def _ranges(section: str) -> dict[str, Range]:
    return {k.partition(".")[2]: r for k, r in RANGES.items() if k.startswith(section + ".")}


def _section(cls: type, path: str, ranges: Mapping[str, Range] | None = None) -> dict[str, Any]:
    """A settings section read by `_parse.parse`: its dataclass's fields, no other key; empty: the defaults."""
    props = _fields(cls, path, _ranges(path) if ranges is None else ranges)
    return {"type": ["object", "null"], "properties": props, "additionalProperties": False}


def _name(kind: str) -> dict[str, Any]:
    """A built-in name or a plug-in's reference."""
    names = [{"enum": list(BUILTINS[kind])}] if BUILTINS[kind] else []
    return {"anyOf": [*names, {"type": "string", "pattern": REFERENCE}]}


def _component(kind: str) -> dict[str, Any]:
    """A model, deficit or metric: its name, or a mapping with name and options (a built-in's: its own only)."""
    ranges = {"deficit": DEFICIT_RANGES, "model": MODEL_RANGES}.get(kind, {})

    def options(name: str) -> dict[str, Any]:
        return {k: _prop(f"{kind}.{name}.{k}", option_type(d), d, ranges.get((name, k)))
                for k, d in BUILTINS[kind][name].options.items()}

    rules = [{"if": {"properties": {"name": {"const": name}}},
              "then": {"properties": {"name": True, **options(name)}, "additionalProperties": False}}
             for name in BUILTINS[kind]]
    name = {"description": f"A built-in {kind} or package.module:function", **_name(kind)}
    mapping = {"type": "object", "properties": {"name": name}, "required": ["name"]}
    return {"anyOf": [_name(kind), {**mapping, **({"allOf": rules} if rules else {})}]}


def _data_fields() -> dict[str, Any]:
    props = _fields(DataSpec, "data", _ranges("data"), DATA_KEYS)
    props["name"].update(_name("data"))
    return props


def _data() -> dict[str, Any]:
    props = _data_fields()
    builtin = {"properties": {"name": {"enum": list(BUILTINS["data"])}}}  # (no name: the default, a built-in)
    return {"anyOf": [_name("data"), {"type": ["object", "null"], "properties": props, "if": builtin, "then": {
        "properties": {k: True for k in DATA_KEYS}, "additionalProperties": False}}]}


def _list(items: dict[str, Any], description: str = "") -> dict[str, Any]:
    return {"description": description, "type": "array", "minItems": 1, "uniqueItems": True, "items": items}


def _grid() -> dict[str, Any]:
    epochs = {"type": "integer", "minimum": 0, "maximum": MAX_EPOCHS}
    span = {"type": "object", "properties": {k: {"description": DESCRIPTIONS[f"grid.onset.{k}"], "type": "integer",
                                                 "minimum": 1 if k == "step" else 0, "maximum": MAX_EPOCHS}
                                             for k in RANGE_KEYS},
            "required": RANGE_KEYS, "additionalProperties": False}
    names = schedule_names()
    schedule = {**_section(ScheduleSpec, "schedule"), "type": "object"}
    axes = {"onset": {"anyOf": [_list(epochs), span]}, "length": {"anyOf": [_list(epochs), span]},
            "seed": _list({**epochs, "maximum": MAX_SEED}),
            "deficit": _list({"$ref": "#/$defs/deficit"}), "model": _list({"$ref": "#/$defs/model"}),
            "schedule": _list({"anyOf": [{"enum": names}, schedule]})}
    props = {k: {**axes.get(k, {}), "description": DESCRIPTIONS.get(f"grid.{k}", "")} for k in GRID_AXES}
    sections = {"data": _data_fields(), **{k: _section(cls, k)["properties"] for k, cls in SECTIONS.items()}}
    for section, fields in sections.items():
        for k, field in fields.items():
            props[f"{section}.{k}"] = _list({x: v for x, v in field.items() if x not in ("description", "default")},
                                            f"An axis: a trial per value of {section}.{k} ({field['description']})")
    free = "|".join(s for s in DOTTED if s not in SECTIONS)  # components' options: checked when resolved
    return {"type": "object", "properties": props, "patternProperties": {rf"^({free})\.[A-Za-z_]\w*$": _list({})},
            "required": ["onset", "length"], "additionalProperties": False}


def build() -> dict[str, Any]:
    """The schema of a sweep file, as a JSON-able dict."""
    resources = _section(Resources, "resources", RESOURCE_RANGES)
    resources["properties"]["gpu"].update({"if": {"type": "number", "exclusiveMinimum": 1},
                                           "then": {"type": "integer"}})  # above 1: a whole number
    trackers = {name: {"description": DESCRIPTIONS[f"tracking.{name}"], "type": ["object", "null"]}
                for name in TRACKER_OPTIONS}
    for name, options in TRACKER_OPTIONS.items():  # None: any keyword of the tracker's own init
        if options is not None:
            trackers[name].update(additionalProperties=False, properties={
                o: {"description": DESCRIPTIONS.get(f"tracking.{name}.{o}", ""), "type": "string"} for o in options})
    trial, hints = {f.name: f for f in dataclasses.fields(TrialSpec)}, type_hints(TrialSpec)
    top = {"name": {"type": "string", "pattern": r"^[\w.-]+$", "maxLength": MAX_NAME},
           "description": {"type": ["string", "null"]}, "seed": {"type": "integer", "minimum": 0, "maximum": MAX_SEED},
           "replicates": {"type": "integer", "minimum": 1, "default": 1},
           "epochs": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_EPOCHS},  # (null: not given,
           "clean_after": {"type": ["integer", "null"], "minimum": 1, "maximum": MAX_EPOCHS},  # `epoch_rule.py`)
           "common_end": {"type": ["boolean", "null"], "default": False}, "data": _data(),
           "model": {"$ref": "#/$defs/model"}, "deficit": {"$ref": "#/$defs/deficit"},
           **{k: _section(cls, k) for k, cls in SECTIONS.items()},
           **{k: _prop(k, hints[k], trial[k].default, RANGES.get(k)) for k in ("bn_refresh", "checkpoint_every")},
           "grid": _grid(), "resources": resources, "search": _section(SearchSpec, "search", SEARCH_RANGES),
           "tracking": {"type": ["object", "null"], "properties": trackers, "additionalProperties": False},
           "metrics": {"type": ["array", "null"], "items": {"$ref": "#/$defs/metric"}}}
    props = {k: {**top.get(k, {}), "description": DESCRIPTIONS.get(k, "")} for k in TOP_KEYS}
    builtin = {"enum": list(BUILTINS["data"])}  # a built-in data set (the default too): grid axes data.<its keys> only
    data_axes = {"description": DESCRIPTIONS["grid"], "propertyNames": {"anyOf": [
        {"not": {"pattern": r"^data\."}}, {"enum": [f"data.{k}" for k in DATA_KEYS]}]}}
    return {"$schema": DIALECT, "title": "cpsweep sweep file",
            "description": "A cpsweep sweep file (generated by `cpsweep schema`; `cpsweep validate` checks the rest)",
            "type": "object", "properties": props, "required": ["name", "grid"],
            "oneOf": [_given("epochs", "integer"), _given("clean_after", "integer")], "additionalProperties": False,
            # common_end only beside epochs; grid.seed lists the seeds itself: seed and replicates at their defaults
            "allOf": [{"if": _given("common_end", "boolean"), "then": _given("epochs", "integer")},
                      {"if": {"required": ["grid"], "properties": {"grid": {"required": ["seed"]}}},
                       "then": {"properties": {k: {"const": v, "description": f"{k}: not beside grid.seed (it "
                                                                              "lists the seeds itself)"}
                                               for k, v in (("seed", 0), ("replicates", 1))}}}],
            "if": {"properties": {"data": {"anyOf": [builtin, {"type": ["object", "null"], "properties": {
                "name": builtin}}]}}}, "then": {"properties": {"grid": data_axes}},
            "$defs": {kind: _component(kind) for kind in ("model", "deficit", "metric")}}


def _given(key: str, kind: str) -> dict[str, Any]:
    """`key` given: present and not null (a key set to null counts as absent in the epoch rule)."""
    return {"required": [key], "properties": {key: {"type": kind, "description": DESCRIPTIONS[key]}}}


def schema_text() -> str:
    """The schema as `cpsweep schema` prints it (and docs/sweep.schema.json holds it)."""
    return json.dumps(build(), indent=2) + "\n"
