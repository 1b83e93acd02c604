"""Reading a sweep file's text: YAML with `yaml.safe_load`'s loader (plain data only) that also refuses a
key given twice, command-line overrides `dotted.key=value` merged in, and PyYAML's errors as one line.
`sweep_file.load_sweep` puts them together."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from ..errors import SpecError
from .grid import DOTTED


def read_yaml(text: str) -> Any:
    """The YAML document in `text` (safe: plain data only); a key given twice in one mapping is an error
    (`yaml.YAMLError`) instead of YAML's silent last value."""
    return yaml.load(text, Loader=_SafeUniqueLoader)


class _SafeUniqueLoader(yaml.SafeLoader):
    """`yaml.safe_load`'s loader (safe: plain data only) that refuses a key given twice in one mapping, which
    YAML would otherwise resolve silently to its last value."""


def _unique_mapping(loader: _SafeUniqueLoader, node: yaml.MappingNode) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: the safe constructor says so
            break
        if first is not None:  # (compared as keys, not lines: a flow mapping holds both on one line)
            raise yaml.constructor.ConstructorError(
                None, None, f'"{key}" is given twice (also on line {first + 1}); keep one', key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=True)


_SafeUniqueLoader.add_constructor("tag:yaml.org,2002:map", _unique_mapping)


def apply_overrides(raw: Any, overrides: Sequence[str], source: str | None = None) -> Any:
    """`raw` with each `dotted.key=value` of `overrides` set (the value read as YAML: `grid.onset=[0,20]`,
    `optim.lr=1e-3`, `model.name=resnet18`, and a dotted grid axis: `grid.optim.lr=[0.1,0.01]`); the result
    is validated like the file itself."""
    if not overrides:
        return raw
    out = copy.deepcopy(dict(raw)) if isinstance(raw, Mapping) else {}
    seen: set[str] = set()
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key or any(not p for p in key.split(".")):
            raise SpecError("(override)", f'"{item}" is not key=value; write e.g. optim.lr=0.01 or '
                                          f"grid.onset=[0,20,40]", source)
        if key in seen:
            raise SpecError(key, "overridden twice on the command line; give it once", source)
        inside = next((k for k in seen if k.startswith(f"{key}.")), None)
        if inside:  # (the later value would replace the earlier one silently)
            raise SpecError(key, f"replaces the whole of {key}, dropping {inside} given before it on the command "
                                 f"line; give {key}=... first", source)
        seen.add(key)
        try:
            value = read_yaml(text)  # the file's own reading: a key given twice refused here too
        except yaml.YAMLError as e:
            raise SpecError(key, f"the override's value {text!r} is not YAML: {yaml_problem(e)}", source) from None
        node, parts = out, key.split(".")
        if len(parts) == 3 and parts[0] == "grid" and parts[1] in DOTTED:  # grid.optim.lr=[...]: the axis
            parts = ["grid", ".".join(parts[1:])]                          # "optim.lr" of the grid
        grid = out.get("grid") if isinstance(out.get("grid"), Mapping) else {}
        if len(parts) == 2 and parts[0] in ("deficit", "model") and out.get(parts[0]) is None and parts[0] in grid:
            raise SpecError(key, f"the file has no {parts[0]} section: its {parts[0]}s are the entries of "
                                 f"grid.{parts[0]}; set {parts[1]} in those entries, or vary it as an axis: "
                                 f"grid.{key}=[...]", source)  # (else a section holding only that option)
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            child = {"name": child} if isinstance(child, str) else {} if child is None else child
            if not isinstance(child, Mapping):
                raise SpecError(".".join(parts[:i + 1]), f"is {child!r}, not a section; {key} cannot be set", source)
            node[part] = dict(child)
            node = node[part]
        node[parts[-1]] = value
    return out


def yaml_problem(e: yaml.YAMLError) -> str:
    """'line 3, column 7: mapping values are not allowed here' from a PyYAML error."""
    def at(mark: Any) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}"

    mark, context = getattr(e, "problem_mark", None), getattr(e, "context_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    where = f"{at(mark)}: " if mark is not None else ""
    if getattr(e, "context", None):
        problem += f" ({e.context}" + (f" at {at(context)})" if context is not None else ")")
    return where + problem
