"""A sweep file's `grid:` section: its axes and their values, checked (no torch, no ray).

`onset` and `length` are required; `seed`, `deficit`, `model` and `schedule` are axes of their own, and a
dotted key (`optim.lr`, `model.width`, `deficit.factor`, ...) varies one setting of a section. `grid.onset`
and `grid.length` may be a range `{from, to, step}`. A `grid.schedule` value is a schedule's name, `restart`
(the file's schedule restarted after each window) or a mapping merged over the file's schedule
(`schedule_axis`).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Mapping

from ..errors import Problems, SpecError
from ._parse import coerce, suggest, type_hints
from .epoch_rule import epoch_int, seed_int
from .registry import entry
from .search import onset_range
from .spec import DATA_KEYS, SECTIONS, DataSpec, ScheduleSpec, component_name, freeze

GRID_AXES = ["onset", "length", "seed", "deficit", "model", "schedule"]
DOTTED = ("data", "model", "optim", "schedule", "deficit", "fisher", "engine")  # sections a dotted grid axis may set
SCHEDULE_PRESETS = {"restart": {"restart_after_deficit": True}}  # grid.schedule shorthands


def schedule_axis(base: Any, value: Any) -> tuple[dict[str, Any], str]:
    """A `grid.schedule` value -> (the schedule section it gives, its label for ids and tables).

    A name (`exponential`, `constant`, `step`, `cosine`) sets the file's schedule's name, without a restart;
    `restart` is the file's schedule restarted after each deficit; a mapping is merged over the file's
    schedule and labelled by its name (plus `-restart`)."""
    section = dict(base) if isinstance(base, Mapping) else {}  # (a file's schedule that is not a mapping is
    if isinstance(value, str) and value in SCHEDULE_PRESETS:  # refused as such when its settings are read)
        return {**section, **SCHEDULE_PRESETS[value]}, value
    if isinstance(value, str):
        section.pop("restart_after_deficit", None)
        return {**section, "name": value}, value
    section = {**section, **(value or {})}
    label = str(section.get("name", ScheduleSpec.name))
    return section, label + ("-restart" if section.get("restart_after_deficit") else "")


def set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` (`section.leaf`, or a top-level key) in a sweep mapping; a section given by name becomes
    a mapping."""
    section, _, leaf = key.partition(".")
    if not leaf:
        raw[key] = value
        return
    node = raw.get(section)
    if isinstance(node, str):
        node = {"name": node}
    node = dict(node or {})
    node[leaf] = value
    raw[section] = node


def parse_grid(raw: Any, sweep: Mapping[str, Any] | None = None) -> dict[str, tuple[Any, ...]]:
    """The grid axes, their values as written (compared as `axis_value` parses them); `sweep`: the file's
    mapping, whose schedule section `grid.schedule` values are labelled against and whose components type a
    dotted axis's options."""
    sweep = sweep if isinstance(sweep, Mapping) else {}
    if not isinstance(raw, Mapping) or not raw:
        raise SpecError("grid", "required: at least grid.onset and grid.length, each a list of epochs")
    grid: dict[str, tuple[Any, ...]] = {}
    problems = Problems()
    for key, values in raw.items():
        with problems.check():
            grid[key] = _parse_axis(key, values, sweep)
    for key in ("onset", "length"):
        if key not in raw:
            problems.errors.append(SpecError(f"grid.{key}", "required: a list of epochs, e.g. [0, 10, 20]"))
    problems.raise_any()
    return grid


def _parse_axis(key: str, values: Any, sweep: Mapping[str, Any]) -> tuple[Any, ...]:
    """One grid axis's values, checked (`parse_grid`): a value listed twice, even written two ways (`1e-2` and
    `0.01`), is refused."""
    if key not in GRID_AXES and not ("." in key and key.split(".")[0] in DOTTED):
        home = _section_of(key)
        if home:  # a setting named without its section: `lr` for `optim.lr`
            raise SpecError(f"grid.{key}", f'unknown key "{key}" (did you mean "{home}.{key}"?); a grid axis that '
                                           f"varies a setting names its section: grid: {{{home}.{key}: [...]}}")
        raise SpecError(f"grid.{key}", f'unknown key "{key}"{suggest(str(key), GRID_AXES)}; valid keys here: '
                                       f'{", ".join(GRID_AXES)}, or a dotted axis that varies one setting of a '
                                       f'section ({", ".join(DOTTED)}), e.g. optim.lr or deficit.factor')
    if key in ("onset", "length") and isinstance(values, Mapping):  # a range: {from: 0, to: 100, step: 5}
        return tuple(onset_range(values, f"grid.{key}"))
    if not isinstance(values, list) or not values:
        raise SpecError(f"grid.{key}", "must be a non-empty list of values" +
                                       (" or a range {from: 0, to: 100, step: 5}" if key in ("onset", "length")
                                        else ""))
    if key in ("deficit", "model", "schedule"):  # trial ids name components, so a name may appear once
        if None in values:  # (not "the file's deficit": a mistake)
            raise SpecError(f"grid.{key}", f"null is not a {key}; give its name or a mapping with its name")
        if key == "schedule":
            names = [_schedule_label(sweep.get("schedule"), v, i) for i, v in enumerate(values)]
        else:
            for i, v in enumerate(values):  # each name checked here, so the error names the axis entry
                entry(key, component_name(v), f"grid.{key}[{i}].name")
            names = [str(component_name(v)).rpartition(":")[2] for v in values]
        dup = next((n for n in names if names.count(n) > 1), None)
        given = sorted({str(component_name(v)) for v, n in zip(values, names) if n == dup and key != "schedule"})
        if dup and len(given) > 1:  # (a plug-in named like a built-in, or two modules' functions of one name)
            raise SpecError(f"grid.{key}", f"{' and '.join(given)} are both named \"{dup}\" in trial ids, which "
                                           f"name a {key} by its function's name; rename one of the functions")
        if dup:
            example = {"deficit": "deficit.factor: [2, 4]", "model": "model.hidden: [[256], [256, 256]]",
                       "schedule": "schedule.gamma: [0.97, 0.9]"}[key]
            raise SpecError(f"grid.{key}", f'"{dup}" appears twice; vary its options with a dotted '
                                           f"axis instead, e.g. grid: {{{example}}}")
    if key == "seed":
        values = [seed_int(v, f"grid.seed[{i}]") for i, v in enumerate(values)]
    elif key in ("onset", "length"):
        values = [epoch_int(v, f"grid.{key}[{i}]") for i, v in enumerate(values)]
    parsed = tuple(axis_value(key, v, sweep) for v in values)
    again = next((i for i, v in enumerate(parsed) if v in parsed[:i]), None)
    if again is not None:  # (it would be one trial, not the two the file seems to ask for)
        first = values[parsed.index(parsed[again])]
        same = f" ({first} and {values[again]} are the same value)" if str(first) != str(values[again]) else ""
        raise SpecError(f"grid.{key}[{again}]", f"{parsed[again]!r} is listed twice{same}; give each value once")
    return tuple(freeze(v) for v in values)  # (as written: trial ids and tags keep the file's own form)


def axis_value(key: str, value: Any, sweep: Mapping[str, Any]) -> Any:
    """A value of grid axis `key` as the trial reads it, the form in which the axis's values are compared
    (for duplicates, and with `cpsweep trial --axis`): a dotted axis's value parsed to its field's type
    (`1e-2`, which YAML 1.1 reads as text, is the number 0.01 for `optim.lr`), lists as tuples; a value its
    field refuses as written, for the trial's own check to name. Trial ids and tags keep the value as the
    file writes it, so that folders already written keep their trials' names. `sweep`: the file's mapping
    (which model, deficit or data set types a dotted axis of their options)."""
    value = freeze(value)
    tp = _field_type(key, sweep) if "." in key else None
    if tp is None:
        return value
    try:
        return freeze(coerce(value, tp, f"grid.{key}"))
    except SpecError:
        return value


def rewritten_values(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    """(axis, value as `old` writes it, as `new` does) for each value of a dotted grid axis that two sweep
    files (mappings: the results folder's spec.yaml and a relaunch's) write in two ways, `1e-2` and `0.01`:
    one setting, but two trial ids (`axis_value`)."""
    out = []
    old_grid, new_grid = old.get("grid"), new.get("grid")
    if not isinstance(old_grid, Mapping) or not isinstance(new_grid, Mapping):
        return out
    for key, values in new_grid.items():
        before = old_grid.get(key)
        if "." not in key or not isinstance(values, list) or not isinstance(before, list):
            continue
        parsed = {axis_value(key, o, old): freeze(o) for o in before}
        for v in values:
            o = parsed.get(axis_value(key, v, new))
            if o is not None and o != freeze(v):
                out.append((key, o, freeze(v)))
    return out


def _field_type(key: str, sweep: Mapping[str, Any]) -> Any:
    """The type of the setting a dotted axis sets (`optim.lr`: float; `model.width`: the option of the file's
    model, or of the first model of a `grid.model` axis that has it), or None where it is not known here
    (an unknown field or component: the trial's check says so)."""
    section, _, leaf = key.partition(".")
    if section in SECTIONS:
        return type_hints(SECTIONS[section]).get(leaf)
    if section == "data" and leaf in DATA_KEYS:
        return type_hints(DataSpec).get(leaf)
    grid = sweep.get("grid")
    axis = grid.get(section) if isinstance(grid, Mapping) else None
    defaults = {"data": DataSpec.name, "model": "cnn1d", "deficit": "blur"}  # (`sweep_file._resolve_fixed`'s)
    given = sweep.get(section) or defaults.get(section)
    for value in (axis if isinstance(axis, list) else [given]):
        try:
            found = entry(section, component_name(value) or defaults.get(section))
        except SpecError:
            continue
        if leaf in found.options:
            return found.type_of(leaf)
    return None


def _section_of(key: str) -> str | None:
    """The section (`data`, or one of `spec.SECTIONS`) with a setting named `key`, if one has."""
    sections = {"data": DataSpec, **SECTIONS}
    return next((name for name, cls in sections.items() if key in {f.name for f in dataclasses.fields(cls)}
                 and key != "name"), None)


def schedule_names() -> list[str]:
    """What a `grid.schedule` value may name: a schedule, or a preset such as "restart"."""
    return [*typing.get_args(type_hints(ScheduleSpec)["name"]), *SCHEDULE_PRESETS]


def _schedule_label(schedule: Any, value: Any, i: int) -> str:
    """The label `make_trial` gives `value` over the file's `schedule` (so duplicates are caught as ids)."""
    if not isinstance(value, (str, Mapping)):
        raise SpecError(f"grid.schedule[{i}]", 'expected a schedule name, "restart", or a mapping of schedule '
                                               "settings")
    valid = schedule_names()
    if isinstance(value, str) and value not in valid:
        raise SpecError(f"grid.schedule[{i}]", f'"{value}" is not a schedule{suggest(value, valid)}; choose one of '
                                               f"{', '.join(valid)}")
    return schedule_axis(schedule, value)[1]


def grid_problem(p: SpecError, grid: Mapping[str, Any], settings: Mapping[str, Any], deficit: Any) -> SpecError:
    """A trial's problem `p` named where the grid set it; an option that a dotted axis (`grid.deficit.factor`)
    gives a component of another axis (`grid.deficit: [blur, vflip]`) that does not take it is named as the
    dotted axis, with the entry and the fix."""
    section, _, leaf = p.field.partition(".")
    values = {**settings, **({"deficit": deficit} if deficit is not None else {})}
    if p.field in settings and section in grid and section in values:
        entry = f"{grid_path(section, grid, settings, deficit)} ({component_name(values[section])})"
        if not p.message.startswith("unknown key"):  # (an entry that takes the option, given a bad value)
            return SpecError(f"grid.{p.field}", f"{settings[p.field]!r} with {entry}: {p.message}")
        return SpecError(f"grid.{p.field}", f"{entry}: {p.message}; give {leaf} inside the grid.{section} entries "
                                            f"that take it (e.g. {{name: ..., {leaf}: ...}}) instead of as an axis "
                                            f"over all of them")
    return SpecError(grid_path(p.field, grid, settings, deficit), p.message)


def grid_path(field: str, grid: Mapping[str, Any], settings: Mapping[str, Any], deficit: Any) -> str:
    """Where a trial's `field` (e.g. `deficit.factr`) was set when a grid value set it: the axis entry
    (`grid.deficit[0].factr`, `grid.model[1].width`) or the dotted axis (`grid.model.chanels`)."""
    section, _, rest = field.partition(".")
    values = {**settings, **({"deficit": deficit} if deficit is not None else {})}
    if section in ("deficit", "model", "schedule") and section in values and section in grid:
        i = grid[section].index(values[section])
        return f"grid.{section}[{i}]" + (f".{rest}" if rest else "")
    axis = next((k for k in settings if field == k or field.startswith(f"{k}.")), None)
    return f"grid.{field}" if axis else field
