"""The layer rules of cpsweep/ (each subpackage's docstring states them), checked on the import graph.

    config   what to run             may import: errors, config                      never torch, ray, pandas
    storage  what a trial produced   may import: errors, _io, config, storage        never torch, ray, plotly
    engine   how one trial trains    may import: errors, _io, config, storage.records  never ray
    results  what the tables show    may import: errors, _io, config, storage, results  never torch, ray
    sweep    where it runs (Ray)     anything; the only package that imports ray
    cli, the package root            anything but ray

Every import statement counts, also those inside functions (a lazy import is still a dependency). A
private Ray module (`ray._...`) may only be imported where a comment on that line or the line above
says why no public API exists ("no public API").
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "cpsweep")
HEAVY = ("torch", "torchvision", "ray", "pandas", "pyarrow", "plotly")

# layer -> (cpsweep modules it may import, third-party packages it must not import)
RULES = {
    "config": (("cpsweep.errors", "cpsweep.config"), HEAVY),
    "storage": (("cpsweep.errors", "cpsweep._io", "cpsweep.config", "cpsweep.storage"),
                ("torch", "torchvision", "ray", "plotly")),
    "results": (("cpsweep.errors", "cpsweep._io", "cpsweep.config", "cpsweep.storage", "cpsweep.results"),
                ("torch", "torchvision", "ray")),
    "engine": (("cpsweep.errors", "cpsweep._io", "cpsweep.config", "cpsweep.storage.records", "cpsweep.engine"),
               ("ray",)),
    "sweep": (("cpsweep",), ()),
    "": (("cpsweep",), ("ray",)),  # cli.py, cli_args.py, __init__.py, errors.py, _io.py
}


def modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                yield rel.removesuffix(".__init__"), path


def imports(module: str, path: str) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in the file."""
    tree = ast.parse(open(path).read(), path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            for alias in node.names:  # `from .results import records` imports a module: name it
                sub = f"{name}.{alias.name}"
                found.append((sub if is_module(sub) or name == "cpsweep" else name, node.lineno))
    return found


def is_module(name: str) -> bool:
    path = os.path.join(ROOT, *name.split("."))
    return name.startswith("cpsweep") and (os.path.isfile(path + ".py") or os.path.isdir(path))


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in RULES) else ""


def within(name: str, prefixes) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_package_has_the_five_layers():
    layers = {layer_of(m) for m, _ in modules()}
    assert {"config", "storage", "results", "engine", "sweep"} <= layers


@pytest.mark.parametrize("module, path", list(modules()), ids=[m for m, _ in modules()])
def test_layer_rules(module, path):
    allowed, forbidden = RULES[layer_of(module)]
    lines = open(path).read().splitlines()
    for name, line in imports(module, path):
        if name.startswith("cpsweep") and name != "cpsweep.__version__":
            assert within(name, allowed), f"{path}:{line}: {module} may not import {name}"
        top = name.split(".")[0]
        assert top not in forbidden, f"{path}:{line}: the {layer_of(module) or 'top'} layer may not import {top}"
        if name.startswith("ray._"):
            context = " ".join(lines[max(0, line - 2):line])
            assert "no public API" in context, f"{path}:{line}: private Ray module {name} without a comment " \
                                               f"saying why no public API exists"


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` (module -> the modules it imports) as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start, [start])
            if found:
                return found
    return None


def test_the_import_graph_has_no_cycle():
    """Every import counts, lazy ones too: no module of cpsweep reaches itself, so the floors read one way
    (config -> storage -> engine, results -> sweep -> cli)."""
    graph = {m: {n for n, _ in imports(m, p) if is_module(n) and n != m} for m, p in modules()}
    assert cycle(graph) is None, " -> ".join(cycle(graph))
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]  # the finder finds one


@pytest.mark.slow
def test_rules_hold_at_run_time():
    """Importing the whole configuration layer (and the engine) loads none of the forbidden packages."""
    code = ("import sys, cpsweep; assert not {'torch', 'ray'} & set(sys.modules), 'import cpsweep is lazy';"
            "import cpsweep.config.sweep_file, cpsweep.config.sharing, cpsweep.config.timeline;"
            "bad = [m for m in ('torch', 'ray', 'pandas') if m in sys.modules]; assert not bad, bad;"
            "import cpsweep.engine.trial; assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_public_api_names_resolve():
    import cpsweep

    for name in cpsweep.__all__:
        assert getattr(cpsweep, name) is not None, name
    with pytest.raises(AttributeError):
        cpsweep.no_such_name  # noqa: B018


def test_the_checker_sees_violations(tmp_path):
    """The rule test itself: a torch import in the configuration layer is caught, lazily or not."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import torch\n    from ..engine import trial\n    from ..storage import records\n")
    names = [n for n, _ in imports("cpsweep.config.bad", str(bad))]
    assert names == ["torch", "cpsweep.engine.trial", "cpsweep.storage.records"]
    allowed, forbidden = RULES["config"]
    assert "torch" in forbidden and not within(names[1], allowed) and not within(names[2], allowed)
    assert within("cpsweep.storage.records", RULES["engine"][0]) and not within("cpsweep.storage.store",
                                                                                 RULES["engine"][0])


def test_no_test_module_imports_another():
    """Shared test code lives in conftest.py (fixtures) or a helper module named for what it holds
    (tiny_specs.py, killed_launch.py, ...): a test module imported by another would run its tests' module
    setup there, and its helpers would move whenever its tests do."""
    tests = os.path.join(ROOT, "tests")
    found = []
    for name in sorted(os.listdir(tests)):
        if name.endswith(".py"):
            path = os.path.join(tests, name)
            for node in ast.walk(ast.parse(open(path).read(), path)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                    [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                found += [f"{name}:{node.lineno}: {n}" for n in names if n.split(".")[0].startswith("test_")]
    assert not found, found
