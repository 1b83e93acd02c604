"""Views of a trial derived from its fields' roles (`spec.py` declares them), each for one consumer:

    hashed_settings(trial)   -> the sweep hash's view (`SweepSpec.fixed_settings`)
    computed_settings(trial) -> the prefix key's fixed part (`sharing.prefix_keys`)
    shared_settings(trial)   -> what the members of a pack must share (`sharing.check_packable`)
    checkpoint_identity(...) -> what a checkpoint must match to be resumed (`engine.trial`)
    diff_settings(old, new)  -> the leaves where two such views differ (a relaunch's changed settings)

A new field needs no change here: its role decides which views hold it (tests/test_roles.py).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable, Mapping

from ..errors import SpecError
from .spec import Component, Role, TrialSpec


def project(obj: Any, keep: Callable[[Role], bool], *, at_default: bool = True,
            parent: Role | None = None, flag: str = "hashed_at_default") -> dict[str, Any]:
    """The fields of the dataclass `obj` whose role `keep` accepts, in plain JSON values, recursing into
    sections (whose fields take the section's role unless they declare their own). `at_default=False`
    also leaves out fields declared with `flag` (`hashed_at_default` or `keyed_at_default`) False that hold
    their default."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        r = f.metadata.get("role", parent)
        if not at_default and not f.metadata.get(flag, True) and value == _default(f):
            continue
        if dataclasses.is_dataclass(value) and not isinstance(value, Component):
            sub = project(value, keep, at_default=at_default, parent=r, flag=flag)
            if sub:
                out[f.name] = sub
        elif r is not None and keep(r):
            out[f.name] = _as_json(value)
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING


def _as_json(value: Any) -> Any:
    """A field's value as `to_dict` writes it (JSON: tuples as lists, components as mappings)."""
    if isinstance(value, Component):
        value = value.to_dict()
    elif isinstance(value, tuple) and value and all(isinstance(v, Component) for v in value):
        value = [v.to_dict() for v in value]
    return json.loads(json.dumps(value))


def hashed_settings(trial: TrialSpec) -> dict[str, Any]:
    """The settings a sweep fixes for all its trials (its hash; a relaunch may not change them). A plug-in's
    source identity is not one of them: editing its code retrains the trials that use it instead."""
    out = project(trial, lambda r: r.hashed, at_default=False)
    for section in [*out.values(), *out.get("metrics", [])]:
        if isinstance(section, dict):
            section.pop("plugin", None)
    return out


def computed_settings(trial: TrialSpec) -> dict[str, Any]:
    """The settings that decide every epoch's computation (the fixed part of a prefix key)."""
    return project(trial, lambda r: r.computed, at_default=False, flag="keyed_at_default")


def shared_settings(trial: TrialSpec) -> dict[str, Any]:
    """The settings every member of a vmapped pack must share."""
    return project(trial, lambda r: not r.per_member)


def checkpoint_identity(trial: TrialSpec | Mapping[str, Any], cls: type = TrialSpec) -> dict[str, Any] | None:
    """What a checkpoint records of its trial and must match to be resumed, from a spec or its `to_dict()`
    form as a checkpoint stores it (None if that is not a valid spec of `cls`)."""
    if isinstance(trial, Mapping):
        try:
            trial = cls.from_dict(trial)
        except (SpecError, KeyError, TypeError, ValueError):
            return None
    return project(trial, lambda r: r.identity)


def diff_settings(old: Any, new: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(dotted key, old, new) for every leaf that differs between two nested settings dicts."""
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return [d for k in sorted(set(old) | set(new), key=str)
                for d in diff_settings(old.get(k), new.get(k), f"{prefix}{k}.")]
    old = list(old) if isinstance(old, tuple) else old
    new = list(new) if isinstance(new, tuple) else new
    return [] if old == new else [(prefix.rstrip("."), old, new)]
