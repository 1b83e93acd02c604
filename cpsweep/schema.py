"""Typed, strict parsing of YAML mappings into frozen dataclasses (no torch import).

`parse(cls, raw, path)` turns a mapping into an instance of the dataclass `cls`: unknown keys fail with
a did-you-mean suggestion, values are type-checked against the field annotations (bool is not an int;
an int is accepted where a float is expected), `Literal` fields list their valid values. Every failure
is a `SpecError` naming the dotted field path and the fix.

Also holds the option tables of the registries whose options depend on a name (models, deficits), so
that a spec can be validated without importing torch; `models.py` and `deficits.py` consume them.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any, Literal, Mapping

from .errors import SpecError

# Options of every model, with defaults (the type of the default is the option's type).
MODEL_OPTIONS: dict[str, dict[str, Any]] = {
    # The paper's All-CNN: 9 conv-BN-ReLU blocks (96, 96, 192/2, 192, 192, 192/2, 192, 192 1x1, 10 1x1),
    # global average pooling. final_bn_relu: BN+ReLU after the last 1x1 conv too; valid_block7: block 7
    # unpadded ("valid") as in Springenberg et al.'s All-CNN-C. Both unknown in the paper: off by default.
    "all_cnn_c": {"width": 1.0, "final_bn_relu": False, "valid_block7": False},
    # CIFAR pre-activation ResNet-18: 3x3 stem, no max-pool, stages width x (1, 2, 4, 8).
    "resnet18": {"width": 64},
    # Fully connected net (the paper's MNIST net: 1024-2500-2000-1500-1000-500-10, BN + ReLU).
    "mlp": {"hidden": (2500, 2000, 1500, 1000, 500), "bn": True},
    # Small 1-D conv net for MNIST-1D: `depth` conv-BN-ReLU blocks of `channels`, stride 2 every other block.
    "cnn1d": {"channels": 32, "depth": 5, "kernel": 5},
}
# Which inputs a model accepts: "image" (N, C, H, W), "signal" (N, 1, L) or "any" (flattened).
MODEL_INPUT: dict[str, str] = {"all_cnn_c": "image", "resnet18": "image", "mlp": "any", "cnn1d": "signal"}

DEFICIT_OPTIONS: dict[str, dict[str, Any]] = {
    "none": {},
    # Downsample by `factor` (antialiased bilinear for images, average pooling for 1-D signals), then
    # upsample back to the original size (bilinear / linear): the paper's 32 -> 8 -> 32 is factor 4.
    "blur": {"factor": 4},
    # Every training input upside down (images: rows reversed; 1-D signals: reversed along the length).
    "vflip": {},
    # A fixed permutation of the class names (a high-level deficit), drawn from the trial's seed.
    "label_permutation": {},
    # Labels shuffled across training examples (random labels, fixed for the trial).
    "label_shuffle": {},
    # Inputs replaced by i.i.d. Gaussian noise with this std in normalised units (the data are
    # normalised to unit variance), fresh every batch; augmentation is off while it is active.
    "noise": {"std": 1.0},
}

# Data sets: input kind and number of classes (loading lives in data.py).
DATASET_INFO: dict[str, tuple[str, int]] = {"cifar10": ("image", 10), "mnist": ("image", 10),
                                            "mnist1d": ("signal", 10)}


def suggest(word: str, valid: typing.Iterable[str]) -> str:
    """' (did you mean "x"?)' for the closest valid word, or ''."""
    close = difflib.get_close_matches(word, list(valid), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def check_keys(raw: Mapping[str, Any], valid: typing.Iterable[str], path: str) -> None:
    """Fail on the first key of `raw` that is not in `valid`, suggesting the closest."""
    valid = list(valid)
    for key in raw:
        if key not in valid:
            where = f"{path}.{key}" if path else str(key)
            raise SpecError(where, f'unknown key "{key}"{suggest(str(key), valid)}; '
                                   f"valid keys here: {', '.join(valid)}")


def check_name(name: Any, valid: typing.Iterable[str], path: str, what: str) -> str:
    """Return `name` if it is one of `valid`, else fail listing the valid names."""
    valid = list(valid)
    if not isinstance(name, str) or name not in valid:
        raise SpecError(path, f'unknown {what} "{name}"{suggest(str(name), valid)}; '
                              f"valid {what}s: {', '.join(valid)}")
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
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Any:
        return value
    raise SpecError(path, f"expected {type_name(tp)}, got {value!r}")


def parse(cls: type, raw: Any, path: str, **fixed: Any) -> Any:
    """Build the frozen dataclass `cls` from the mapping `raw`; `fixed` supplies fields not in YAML."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SpecError(path, f"expected a mapping of settings, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.name not in fixed]
    check_keys(raw, names, path)
    values = {k: coerce(v, hints[k], f"{path}.{k}" if path else k) for k, v in raw.items()}
    return cls(**values, **fixed)


def parse_options(raw: Mapping[str, Any], defaults: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Options of a named component (a model, a deficit), typed by their defaults."""
    check_keys(raw, defaults, path)
    out = dict(defaults)
    for key, value in raw.items():
        default = defaults[key]
        tp = tuple[int, ...] if isinstance(default, tuple) else type(default)
        out[key] = coerce(value, tp, f"{path}.{key}")
    return out
