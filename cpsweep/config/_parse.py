"""Typed, strict parsing of YAML mappings into frozen dataclasses (no torch import).

`parse(cls, raw, path)` turns a mapping into an instance of the dataclass `cls`: unknown keys fail with
a did-you-mean suggestion, values are type-checked against the field annotations (bool is not an int;
an int is accepted where a float is expected), `Literal` fields list their valid values. Every failure
is a `SpecError` naming the dotted field path and the fix.

Plumbing of the configuration layer: `spec.py`, `sweep_file.py` and `registry.py` parse with it
(`unknown_name` is the one did-you-mean wording of the whole tool; the engine reaches it through
`registry.py`).
"""

from __future__ import annotations

import dataclasses
import decimal
import difflib
import functools
import math
import re
import types
import typing
from typing import Any, Literal, Mapping, NamedTuple

from ..errors import Problems, SpecError


# a number in scientific notation without a dot (1e-3, 5E+4): PyYAML (YAML 1.1) reads it as a string
REQUIRED = object()  # the default of an option a plug-in's signature requires (`plugins.py`, `registry.py`)
SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class Range(NamedTuple):
    """The values a number may take, from `low` to `high` (None: unbounded), an end left out when `open_low` /
    `open_high`; `message` is the fix a mistake prints. The parser checks it (`holds`) and `schema.py`
    publishes it. With `each`, a list holds when each of its items does (the widths of a model's layers);
    otherwise a value that is not a number (None for an optional setting, a list) is not its business."""
    low: float | None
    high: float | None
    message: str
    open_low: bool = False
    open_high: bool = False
    each: bool = False

    def holds(self, value: Any) -> bool:
        if self.each and isinstance(value, (list, tuple)):
            return all(self.holds(v) for v in value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return True
        return ((self.low is None or value > self.low or (value == self.low and not self.open_low))
                and (self.high is None or value < self.high or (value == self.high and not self.open_high)))


def suggest(word: str, valid: typing.Iterable[str]) -> str:
    """' (did you mean "x"?)' for the closest valid word, or ''."""
    close = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def check_keys(raw: Mapping[str, Any], valid: typing.Iterable[str], path: str) -> None:
    """Fail on the keys of `raw` that are not in `valid` (all of them in one error), suggesting the closest."""
    valid = list(valid)
    unknown = [SpecError(f"{path}.{key}" if path else str(key),
                         f'unknown key "{key}"{suggest(str(key), valid)}; '
                         + (f'valid keys here: {", ".join(valid)}' if valid else "it takes no options here"))
               for key in raw if key not in valid]
    if unknown:
        raise SpecError.of(unknown)


def unknown_name(name: Any, valid: typing.Iterable[str], what: str) -> str:
    """'unknown model "vgg" (did you mean ...?); valid models: a, b': the one wording of every registry."""
    valid = list(valid)
    listed = f'valid {what}s: {", ".join(valid)}' if valid else f"cpsweep has no built-in {what}s"
    return f'unknown {what} "{name}"{suggest(str(name), valid)}; {listed}'


def check_name(name: Any, valid: typing.Iterable[str], path: str, what: str) -> str:
    """Return `name` if it is one of `valid`, else fail listing the valid names."""
    valid = list(valid)
    if not isinstance(name, str) or name not in valid:
        raise SpecError(path, unknown_name(name, valid, what))
    return name


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {type_name(typing.get_args(tp)[0])}"
    if tp is type(None):
        return "null"
    return {int: "an integer", float: "a number", bool: "true/false", str: "a string"}.get(tp, str(tp))


def scientific_whole(value: Any) -> Any:
    """`1e3` as the int 1000: a whole number in scientific notation, which YAML 1.1 reads as text, for an
    integer field; any other value unchanged (a fraction such as 1e-3 stays text, and is refused as such)."""
    if isinstance(value, str) and SCIENTIFIC.fullmatch(value.strip()):
        exact = decimal.Decimal(value.strip())
        if exact.adjusted() <= 30 and exact == exact.to_integral_value():  # (1e999999 would be a huge int)
            return int(exact)
    return value


def coerce(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against the annotation `tp`; return it normalised (lists -> tuples, int -> float)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            try:
                return coerce(value, arm, path)
            except SpecError:
                continue
        raise SpecError(path, f"expected {type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise SpecError(path, f'"{value}" is not valid; choose one of {type_name(tp)}')
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(path, f"expected {type_name(tp)}, got {value!r}")
        inner = typing.get_args(tp)[0]
        return tuple(coerce(v, inner, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        value = scientific_whole(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else (
            float(value) if isinstance(value, str) and SCIENTIFIC.fullmatch(value.strip()) else None)  # YAML 1.1
        if number is not None and not math.isfinite(number):  # reads 1e-3 as a string; .inf and .nan are floats
            raise SpecError(path, f"expected a finite number, got {value!r}")
        if number is not None:
            return float(number)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise SpecError(path, f"expected {type_name(tp)}, got {value!r}")


@functools.lru_cache(maxsize=None)
def type_hints(cls: type) -> Mapping[str, Any]:
    """`typing.get_type_hints(cls)`, read-only and computed once per class: it evaluates every annotation
    again at each call, and a grid resolves its sections once per trial."""
    return types.MappingProxyType(typing.get_type_hints(cls))


def parse(cls: type, raw: Any, path: str, **fixed: Any) -> Any:
    """Build the frozen dataclass `cls` from the mapping `raw`; `fixed` supplies fields not in YAML."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SpecError(path, f"expected a mapping of settings, got {raw!r}")
    hints = type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in fixed]
    problems = Problems()
    with problems.check():
        check_keys(raw, names, path)
    values = {}
    for k, v in raw.items():
        if k in names:
            with problems.check():
                values[k] = coerce(v, hints[k], f"{path}.{k}" if path else k)
    problems.raise_any()
    return cls(**values, **fixed)


def parse_valid(cls: type, raw: Any) -> Any:
    """`cls` from only the fields of `raw` that are known and well typed, the others at their defaults: what a
    section with mistakes stands in with, so that its other fields' range mistakes are reported beside them."""
    hints, values = type_hints(cls), {}
    names = {f.name for f in dataclasses.fields(cls)}
    for k, v in (raw.items() if isinstance(raw, Mapping) else ()):
        if k in names:
            try:
                values[k] = coerce(v, hints[k], k)
            except SpecError:
                continue
    return cls(**values)


def option_type(default: Any) -> Any:
    """The type of a built-in component's option: its default's (a tuple: of whole numbers)."""
    return tuple[int, ...] if isinstance(default, tuple) else type(default)
