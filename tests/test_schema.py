"""The JSON Schema of sweep files (`cpsweep schema`, docs/sweep.schema.json) is current and agrees with the
parser: every shipped sweep file passes both, and on files mutated systematically from the parser's own
declarations (every declared key misspelt, every setting given its default, values of every JSON type,
each range's bounds and just beyond, every built-in name, plug-in references) the schema's verdict
(valid or not) equals `parse_sweep`'s (a `SpecError` or not). A key added to the parser's declarations
reaches the schema by itself; one the schema does not describe fails here."""

from __future__ import annotations

import copy
import dataclasses
import glob
import json
import os
import sys
import typing

import jsonschema
import pytest
import yaml

from cpsweep.cli import main
from cpsweep.config import grid as grid_axes
from cpsweep.config import search, sweep_file
from cpsweep.config._parse import option_type
from cpsweep.config.registry import BUILTINS
from cpsweep.config.schema import build, schema_text
from cpsweep.config.spec import DATA_KEYS, DataSpec, Resources
from cpsweep.config.sweep_file import load_sweep, parse_sweep
from cpsweep.errors import SpecError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED = os.path.join(ROOT, "docs", "sweep.schema.json")
FILES = sorted(os.path.relpath(p, ROOT) for pattern in ("sweeps/**/*.yaml", "examples/*/*.yaml")
               for p in glob.glob(os.path.join(ROOT, pattern), recursive=True))
SCHEMA = build()
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
with open(os.path.join(ROOT, "sweeps", "quickstart.yaml")) as _f:
    BASE = {**yaml.safe_load(_f), "replicates": 1}  # (one seed: a fast parse)
DELETE = object()
# Values of every JSON type, and numbers about the usual bounds ("1e-8": a number YAML 1.1 reads as text).
POOL = [True, False, 2.5, 7, 1, 0, -1, "text", "1e-8", None, [0], ["a"], {"a": 1}]
# Rules across fields that the schema leaves to `cpsweep validate`: the context a value is tried in.
CONTEXT = {"fisher.beta": {"fisher.method": "variational"}, "fisher.steps": {"fisher.method": "variational"},
           "schedule.name=cosine": {"clean_after": DELETE, "epochs": 100, "common_end": True},
           "epochs": {"clean_after": DELETE, "grid.onset": [0], "grid.length": [1], "grid.schedule": DELETE},
           "deficit=no_augment": {"data.augment": True},
           **{f"model={m}": {"data.name": "cifar10"} for m, e in BUILTINS["model"].items() if e.input == "image"},
           **{f"data={d}": {"model.name": "mlp"} for d in BUILTINS["data"]}}
PLUGIN = '''
def tiny_model(in_shape, num_classes, width: int = 4):
    return None

def tiny_deficit(x, y, ctx, p: float = 0.5):
    return x, y

def tiny_data(data_dir, n: int = 10):
    return None

def tiny_metric(model, data, ctx):
    return 0.0
'''


def mutate(changes: dict[str, typing.Any]) -> dict[str, typing.Any]:
    """BASE with each change set: "optim.lr" is a key of a section, "grid/optim.lr" a grid axis."""
    raw = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, leaf = path.split("/") if "/" in path else path.split(".")
        node = raw
        for key in parents:
            child = node.get(key)
            node[key] = dict({"name": child} if isinstance(child, str) else child or {})
            node = node[key]
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = copy.deepcopy(value)
    return raw


def verdicts(raw: dict[str, typing.Any]) -> tuple[bool, bool]:
    """(the schema accepts it, the parser accepts it)."""
    try:
        parse_sweep(raw)
        parsed = True
    except SpecError:
        parsed = False
    return VALIDATOR.is_valid(raw), parsed


def disagreements(cases: list[tuple[str, dict[str, typing.Any]]]) -> list[str]:
    out = []
    for label, changes in cases:
        context = {k: v for key in (label, label.partition("=")[0]) for k, v in CONTEXT.get(key, {}).items()}
        schema_ok, parser_ok = verdicts(mutate({**context, **changes}))
        if schema_ok != parser_ok:
            out.append(f"{label} {changes}: schema {'accepts' if schema_ok else 'rejects'}, parser "
                       f"{'accepts' if parser_ok else 'rejects'}")
    return out


def misspelt(key: str) -> str:
    return key + key[-1]


def values(tp: typing.Any, default: typing.Any, r: typing.Any = None) -> list[typing.Any]:
    """Values to try for a setting: the pool, its default, its Literal values, its range's bounds and beyond."""
    out = [*POOL, list(default) if isinstance(default, tuple) else default]
    out += [a for arm in [tp, *typing.get_args(tp)] if typing.get_origin(arm) is typing.Literal
            for a in typing.get_args(arm)]
    if r is not None:
        out += [b + d for b in (r.low, r.high) if b is not None for d in (0, -1, 1)]
    return out


def section_cases(section: str, cls: type, ranges: dict, keys: typing.Any = None) -> list:
    hints, cases = typing.get_type_hints(cls), []
    for f in dataclasses.fields(cls):
        if keys is not None and f.name not in keys:
            continue
        path = f"{section}.{f.name}"
        cases.append((f"{path} misspelt", {f"{section}.{misspelt(f.name)}": f.default}))
        cases += [(f"{path}={v}" if isinstance(v, str) else path, {path: v})
                  for v in values(hints[f.name], f.default, ranges.get(f.name))]
        cases += [(f"{path} on the grid", {f"grid/{path}": v}) for v in ([f.default], [], f.default, ["text"])]
        cases.append((f"{path} misspelt on the grid", {f"grid/{section}.{misspelt(f.name)}": [1]}))
    return cases


def ranges_of(section: str) -> dict:
    return {k.partition(".")[2]: r for k, r in sweep_file.RANGES.items() if k.startswith(section + ".")}


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """A plug-in module that exists (every kind), importable as `cpsweep_schema_plugin`."""
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "cpsweep_schema_plugin.py").write_text(PLUGIN)
    sys.path.insert(0, str(folder))
    yield "cpsweep_schema_plugin"
    sys.path.remove(str(folder))


def test_the_committed_schema_is_what_cpsweep_schema_generates():
    with open(COMMITTED, encoding="utf-8") as f:
        committed = f.read()
    assert committed == schema_text(), ("docs/sweep.schema.json differs from what the parser's declarations give "
                                        "now; regenerate it: cpsweep schema -o docs/sweep.schema.json")


def test_cpsweep_schema_prints_it_and_writes_it(capsys, tmp_path):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == SCHEMA
    assert main(["schema", "-o", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text()) == SCHEMA
    capsys.readouterr()
    assert main(["schema", "-o", str(tmp_path / "new" / "s.json")]) == 0  # as `report -o`: the folder is made
    assert capsys.readouterr().out.strip() == f"{tmp_path / 'new' / 's.json'} (created the folder {tmp_path / 'new'})"
    assert json.loads((tmp_path / "new" / "s.json").read_text()) == SCHEMA
    (tmp_path / "file").write_text("not a folder")
    assert main(["schema", "-o", str(tmp_path / "file" / "s.json")]) == 2  # one line, exit 2
    err = capsys.readouterr().err
    assert err.startswith(f"cpsweep: error: cannot write {tmp_path / 'file' / 's.json'}") and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "new", "s.json"]  # no temporary file left


def test_the_schema_is_valid_and_describes_every_key():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert list(SCHEMA["properties"]) == sweep_file.TOP_KEYS
    assert set(grid_axes.GRID_AXES) <= set(SCHEMA["properties"]["grid"]["properties"])

    def undescribed(node: typing.Any, path: str) -> list[str]:
        if isinstance(node, list):
            return [p for i, n in enumerate(node) for p in undescribed(n, f"{path}[{i}]")]
        if not isinstance(node, dict):
            return []
        mine = [f"{path}.{k}" for k, v in node.get("properties", {}).items()
                if isinstance(v, dict) and not v.get("description")]
        return mine + [p for k, v in node.items() if k != "if" for p in undescribed(v, f"{path}.{k}")]

    assert not undescribed(SCHEMA, ""), "keys without a description (add them to schema.DESCRIPTIONS)"


@pytest.mark.parametrize("path", FILES)
def test_every_shipped_sweep_file_passes_the_schema_and_the_parser(path):
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        text = f.read()
    raw = yaml.safe_load(text)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(raw)]
    assert not errors, errors
    load_sweep(os.path.join(ROOT, path))
    first = text.splitlines()[0]
    if first.startswith("# yaml-language-server: $schema="):  # the editor's pointer resolves to the schema
        target = os.path.join(ROOT, os.path.dirname(path), first.partition("=")[2])
        assert os.path.samefile(target, COMMITTED), first


def test_keys_types_and_ranges_get_the_same_verdict():
    cases = [(f"{misspelt(k)} (top level)", {misspelt(k): 1}) for k in sweep_file.TOP_KEYS]
    for k in ("seed", "replicates", "clean_after", "common_end", "epochs", "bn_refresh", "checkpoint_every", "name",
              "description"):
        cases += [(k, {k: v}) for v in values(None, None, sweep_file.RANGES.get(k))]
    cases += [("name", {"name": "two words"}), ("grid", {"grid": None}), ("grid.onset", {"grid.onset": DELETE})]
    for section, cls in sweep_file.SECTIONS.items():
        cases += section_cases(section, cls, ranges_of(section))
    cases += section_cases("data", DataSpec, ranges_of("data"), DATA_KEYS)
    cases += section_cases("resources", Resources, sweep_file.RESOURCE_RANGES)
    cases += [(f"search.{k}", c) for k, c in section_cases("search", search.SearchSpec, search.RANGES)
              if "grid" not in k]
    for axis in grid_axes.GRID_AXES:
        cases += [(f"grid.{axis}", {f"grid/{axis}": v}) for v in ([], 7, *([v] for v in POOL))]
        cases.append((f"grid.{axis} misspelt", {f"grid/{misspelt(axis)}": [0]}))
    for k in search.RANGE_KEYS:
        onsets = {"from": 0, "to": 60, "step": 60}
        cases += [("grid.onset range", {"grid/onset": {**onsets, k: v}}) for v in POOL]
        cases.append(("grid.onset range misspelt", {"grid/onset": {**{x: v for x, v in onsets.items() if x != k},
                                                                   misspelt(k): onsets[k]}}))
    for name, options in sweep_file.TRACKER_OPTIONS.items():
        cases.append((f"tracking.{misspelt(name)}", {"tracking": {misspelt(name): {}}}))
        cases += [(f"tracking.{name}.{o}", {"tracking": {name: {misspelt(o): "x"}}}) for o in options or ()]
    cases += [("tracking", {"tracking": v}) for v in POOL if v is not None]
    found = disagreements(cases)
    assert not found, f"{len(found)} of {len(cases)} mutations: " + "\n".join(found[:40])


def test_names_and_component_options_get_the_same_verdict():
    cases = []
    for kind in ("model", "deficit", "data"):
        for name, e in BUILTINS[kind].items():
            label = f"{kind}={name}"
            cases += [(label, {kind: name}), (label, {f"{kind}.name": name}), (label, {kind: {"name": name, "x": 1}})]
            if kind != "data":
                cases += [(label, {kind: name, f"grid/{kind}": v}) for v in ([name], [{"name": name}])]
            for option, default in e.options.items():
                bounds = {"deficit": sweep_file.DEFICIT_RANGES, "model": sweep_file.MODEL_RANGES}.get(kind, {})
                r = bounds.get((name, option))
                cases += [(label, {kind: {"name": name, option: v}})
                          for v in values(option_type(default), default, r)]
                cases.append((label, {kind: {"name": name, misspelt(option): default}}))
        cases += [(kind, {kind: v}) for v in ("vgg", "Blur", "my_models.TinyConv", 7, None, {"width": 4}, [])]
    cases += [("grid.schedule", {"grid/schedule": [v]}) for v in ("bogus", {"gamma": 0.5}, {"gammma": 0.5}, 7)]
    cases += [(f"schedule.name={v}", {"grid/schedule": [v]}) for v in grid_axes.SCHEDULE_PRESETS]
    cases += [("metrics", {"metrics": v}) for v in ("vgg", ["vgg"], [7], [], None, {"name": "x"})]
    found = disagreements(cases)
    assert not found, f"{len(found)} of {len(cases)} mutations: " + "\n".join(found[:40])


def test_a_plugin_reference_to_a_module_that_exists_passes_both(plugin):
    cases = [("model", {"model": {"name": f"{plugin}:tiny_model", "width": 3}}),
             ("model", {"model": f"{plugin}:tiny_model"}), ("grid/model", {"grid/model": [f"{plugin}:tiny_model"]}),
             ("deficit", {"deficit": {"name": f"{plugin}:tiny_deficit", "p": 0.25}}),
             ("data", {"data": {"name": f"{plugin}:tiny_data", "n": 5, "subset": 100}}),
             ("metrics", {"metrics": [f"{plugin}:tiny_metric"]})]
    assert all(verdicts(mutate(changes)) == (True, True) for _, changes in cases)
    assert not disagreements(cases)


def test_a_key_set_to_null_is_not_given_in_the_epoch_rule_by_both():
    """`clean_after: null` beside epochs (`clean_after=null epochs=...` on the command line) passes the schema
    and the parser alike; a rule given only as null, or common_end beside clean_after, passes neither."""
    ends = {"grid.onset": [0], "grid.length": [1], "grid.schedule": DELETE}  # (one window end: no common_end)
    accepted = [{"clean_after": None, "epochs": 100, **ends}, {"clean_after": None, "epochs": 100, "common_end": True},
                {"epochs": None}, {"common_end": None}, {"epochs": None, "common_end": None},
                {"clean_after": DELETE, "epochs": 100, "common_end": None, **ends}]
    refused = [{"clean_after": None}, {"clean_after": None, "epochs": None}, {"clean_after": None, "common_end": True},
               {"common_end": True}, {"clean_after": DELETE, "epochs": None, "common_end": True}]
    assert [verdicts(mutate(c)) for c in accepted] == [(True, True)] * len(accepted)
    assert [verdicts(mutate(c)) for c in refused] == [(False, False)] * len(refused)


def test_what_only_cpsweep_validate_catches():
    """The limits of the schema, documented: it accepts these, the parser does not."""
    cases = [{"model": "cpsweep_no_such_module:net"},           # a plug-in that does not import
             {"clean_after": DELETE, "epochs": 30},             # a window [60, 80) past the last epoch
             {"optim.name": "adam", "optim.momentum": 0.5},     # momentum has no effect with adam
             {"data.name": "cifar10"},                          # cnn1d needs 1-D signals
             {"grid/deficit": ["blur", {"name": "blur", "factor": 2}]},  # one name twice on an axis
             {"grid/model.widht": [16]},                        # a component's options on the grid: any name
             {"optim.batch_size": 128.0},                       # JSON has one number type: 128.0 is an integer
             {"optim.lr": "-1e-3"}]                             # YAML 1.1 text: its range unchecked
    assert [verdicts(mutate(c)) for c in cases] == [(True, False)] * len(cases)
