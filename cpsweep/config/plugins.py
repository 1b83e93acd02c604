"""Plug-ins: a user's own data set, model, deficit or metric named by reference in a sweep file (no torch).

    model: {name: my_models:TinyNet, width: 16}     # package.module:attribute, options as keywords

`plugin_entry` turns a reference (or a name that an installed package registers under the entry-point
group `cpsweep.datasets`, `cpsweep.models`, `cpsweep.deficits` or `cpsweep.metrics`) into a registry
`Entry`: it imports the module (from the current folder or the sweep file's, or an installed package),
checks that the attribute exists and is callable, and reads the options from the callable's signature (the parameters after the
contract's positional ones, typed by their annotations or defaults; one without a default is required).
Every failure is one `SpecError` naming the field and the fix.

A plug-in's identity is its reference and a hash of its source (every .py file of its top-level package,
or its module file), or `<distribution>==<version>` for an installed package: trials record it, so that
editing the code retrains the trials that use it (`Component.plugin`). `ship_paths` lists the code a
launch ships to the cluster's workers (Ray's runtime environment, `py_modules`).
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from ..errors import SpecError
from ._parse import REQUIRED

# The positional parameters each kind's callable takes before its options (docs/plugins.md).
CONTRACT = {"data": ("data_dir",), "model": ("in_shape", "num_classes"), "deficit": ("x", "y", "ctx"),
            "metric": ("model", "data", "ctx"),
            "training": ("settings",)}  # a deficit marked acts_on = "training" (`engine/windows.py`)
RESERVED = ("name", "plugin")  # keys of a component's mapping that cannot be options
# the data section's own keys (`spec.DataSpec`), which a data set's options cannot be named either
DATA_KEYS = ("name", "data_dir", "subset", "augment")
# the entry-point group an installed package registers its names under, per kind
GROUPS = {"data": "cpsweep.datasets", "model": "cpsweep.models", "deficit": "cpsweep.deficits",
          "metric": "cpsweep.metrics"}
_SIMPLE = (int, float, bool, str, type(None), Any)


def is_reference(name: str) -> bool:
    """Whether `name` has the form `package.module:attribute`."""
    module, sep, attr = name.partition(":")
    return bool(sep) and all(p.isidentifier() for p in module.split(".")) and attr.isidentifier()


def importable_here(folders: Iterable[str] = ()) -> None:
    """Make modules in the current folder (and `folders`, e.g. the sweep file's) importable, as `python -m`
    does: a console script's sys.path starts at its own bin folder instead."""
    for folder in [os.getcwd(), *folders]:
        folder = os.path.abspath(folder)
        if folder not in sys.path:
            sys.path.insert(0, folder)


def import_reference(reference: str, path: str, need_callable: bool = True, plugin: bool = True) -> Any:
    """The attribute a `module:attribute` reference names, imported; a plug-in's module is imported again
    when its source changed since this process imported it (never cpsweep's own: `plugin=False`)."""
    module_name, _, attr = reference.partition(":")
    importable_here()
    try:
        if plugin and module_name.split(".")[0] != "cpsweep":
            _forget_if_edited(module_name)
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - any failure of the user's module is reported, in one line
        detail = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        parts = module_name.split(".")
        if isinstance(e, ModuleNotFoundError) and e.name in {".".join(parts[:i + 1]) for i in range(len(parts))}:
            fix = (f"run cpsweep from the folder that holds {parts[0]}(.py), next to the sweep file, or install "
                   f"its package")
        elif isinstance(e, ModuleNotFoundError):  # the module was found; something it imports was not
            fix = f'install "{e.name}" where cpsweep runs, or remove that import from "{module_name}"'
        else:  # found, and failed while it ran: the error is in its code
            fix = f"fix the error in its code (python -c 'import {module_name}' shows where)"
        raise SpecError(path, f'cannot import "{module_name}" ({detail}); {fix}') from None
    if not hasattr(module, attr):
        names = [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attr, names, n=1, cutoff=0.6)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise SpecError(path, f'module "{module_name}" has no "{attr}"{hint}; name a function or class it defines')
    obj = getattr(module, attr)
    if need_callable and not callable(obj):
        raise SpecError(path, f'"{reference}" is a {type(obj).__name__}, not a function or class; name the '
                              f"callable that builds the component")
    return obj


def entry_point(kind: str, name: str) -> str | None:
    """The reference an installed package registers for `name` under its kind's group, if any."""
    return _entry_points(GROUPS[kind], tuple(sys.path)).get(name)


@functools.lru_cache(maxsize=16)
def _entry_points(group: str, path: tuple[str, ...]) -> dict[str, str]:
    """{name: reference} of an entry-point group, read once per `sys.path` (every built-in's lookup asks)."""
    return {ep.name: ep.value.replace(" ", "") for ep in importlib.metadata.entry_points(group=group)}


def plugin_fields(kind: str, name: str, path: str, unknown: Callable[[], str]) -> dict[str, Any]:
    """The fields of a plug-in's registry entry (`registry.Entry`) from a reference or an entry-point name
    (`unknown()`: the message for a name that is neither)."""
    reference = name if is_reference(name) else entry_point(kind, name)
    if reference is None or not is_reference(reference):
        raise SpecError(path, unknown())
    fn = import_reference(reference, path)
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        raise SpecError(path, f'cannot read the signature of "{reference}"; give it a plain Python signature '
                              f"{_wanted(kind)}") from None
    params = list(signature.parameters.values())
    acts_on = getattr(fn, "acts_on", "batch")
    contract = "training" if kind == "deficit" and acts_on == "training" else kind
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < len(CONTRACT[contract]) and not any(p.kind == p.VAR_POSITIONAL for p in params):
        what = "a training window" if contract == "training" else f"a {kind}"
        raise SpecError(path, f'"{reference}" takes {signature}, but {what} is called as {_wanted(contract)} '
                              f"(docs/plugins.md)")
    hints = _hints(fn)
    options, kinds = {}, {}
    for p in params[len(CONTRACT[contract]):]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name in RESERVED or (kind == "data" and p.name in DATA_KEYS):
            raise SpecError(path, f'"{reference}" has an option named "{p.name}", a reserved key of the {kind} '
                                  f"section; rename it")
        options[p.name] = REQUIRED if p.default is p.empty else p.default
        kinds[p.name] = _option_type(hints.get(p.name), options[p.name])
    return {"kind": kind, "name": name, "builder": reference, "options": options, "types": kinds,
            "acts_on": acts_on if kind == "deficit" else "batch",
            "disables_augment": bool(getattr(fn, "disables_augment", False)),
            "plugin": f"{reference}@{source_identity(reference.partition(':')[0])}"}


def _wanted(kind: str) -> str:
    return f"({', '.join(CONTRACT[kind])}, **options)"


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to the defaults' types
        return {}


def _option_type(hint: Any, default: Any) -> Any:
    """The type an option's YAML value is checked against: a simple annotation (int, float, bool, str,
    Literal, optional, tuples and lists of those), else the default's type, else anything."""
    if hint is not None and _checkable(hint):
        origin = typing.get_origin(hint)
        if origin in (list, tuple, typing.Sequence):
            return tuple[typing.get_args(hint)[0] if typing.get_args(hint) else Any, ...]
        return hint
    if default is REQUIRED or default is None:
        return Any
    if isinstance(default, (list, tuple)):
        return tuple[type(default[0]) if default else Any, ...]
    return type(default) if type(default) in _SIMPLE else Any


def _checkable(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if tp in _SIMPLE:
        return True
    if origin is Literal:
        return True
    if origin in (typing.Union, types.UnionType):
        return all(_checkable(a) for a in typing.get_args(tp))
    if origin in (list, tuple, typing.Sequence):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        return len(args) <= 1 and all(a in _SIMPLE for a in args)
    return False


# -- identity and shipping ----------------------------------------------------------------------------

def _top_path(module: str) -> Path | None:
    """The file of a top-level module, or the folder of a top-level package (None: built in or not found)."""
    try:
        spec = importlib.util.find_spec(module.split(".")[0])
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin) if spec.origin and spec.origin not in ("built-in", "frozen") else None


def _installed(path: Path) -> bool:
    return any(part in ("site-packages", "dist-packages") for part in path.parts)


def source_identity(module: str) -> str:
    """`src-<hash>` of the module's top-level package's .py files (or its single file), or
    `<distribution>==<version>` for an installed package."""
    top = module.split(".")[0]
    path = _top_path(module)
    if path is None or _installed(path):
        dists = importlib.metadata.packages_distributions().get(top) or []
        if dists:
            return f"{dists[0]}=={importlib.metadata.version(dists[0])}"
    if path is None:
        return "src-unknown"
    files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
    stamp = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    if _HASHED.get(str(path), (None,))[0] != stamp:  # (a sweep of many trials parses its plug-ins per trial)
        digest = hashlib.sha256()
        for f in files:
            digest.update(str(f.relative_to(path.parent)).encode() + b"\0" + f.read_bytes() + b"\0")
        _HASHED[str(path)] = (stamp, "src-" + digest.hexdigest()[:12])
    return _HASHED[str(path)][1]


_HASHED: dict[str, tuple[tuple, str]] = {}  # a plug-in's files (path, mtime, size) -> their hash


_IMPORTED: dict[str, str] = {}  # top-level module -> its source identity when this process imported it


def _forget_if_edited(module: str) -> None:
    """Drop a plug-in's modules from this process when their source changed since they were imported, so
    that the next import reads the edited code (a Python session that launches twice)."""
    top = module.split(".")[0]
    now = source_identity(top) if _top_path(top) is not None and not _installed(_top_path(top)) else ""
    if top in _IMPORTED and _IMPORTED[top] != now:
        for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
            del sys.modules[name]
        importlib.invalidate_caches()
    _IMPORTED[top] = now


def ship_paths(references: Iterable[str]) -> list[str]:
    """The local code a cluster's workers need to import these references: each top-level module file or
    package folder that is not installed (installed packages must be installed on the nodes too)."""
    out = set()
    for ref in references:
        path = _top_path(ref.partition(":")[0])
        if path is not None and not _installed(path) and "cpsweep" not in path.parts[-1:]:
            out.add(str(path))
    return sorted(out)
