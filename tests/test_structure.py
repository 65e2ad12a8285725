"""The shape of the package: one-way imports, no private names across modules, no shadowed submodules."""
import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import ftlab

ROOT = Path(ftlab.__file__).resolve().parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path):
    """(imported module, imported names) for every ftlab import anywhere in a module, functions included."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "ftlab" or target.startswith("ftlab."):
                names = [a.name for a in node.names]
                yield target, names
                for n in names:                       # `from . import plot` imports the module ftlab.plot
                    if f"{target}.{n}" in MODULES:
                        yield f"{target}.{n}", []
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ftlab"):
                    yield alias.name, []


def _graph() -> dict[str, set[str]]:
    graph = {m: set() for m in MODULES if m != "ftlab"}
    for name, path in MODULES.items():
        if name == "ftlab":               # the root package imports everything by design; nothing imports it
            continue
        for target, _ in _imports(name, path):
            if target == "ftlab" or target not in MODULES:
                continue
            graph[name].add(target)
            parent = target.rpartition(".")[0]         # importing ftlab.a.b runs ftlab.a's __init__ first
            if parent not in ("", "ftlab") and not name.startswith(parent):
                graph[name].add(parent)
    return graph


def test_no_import_cycles_among_ftlab_modules_including_function_level_imports():
    graph = _graph()
    assert {"ftlab.train", "ftlab.vision.models", "ftlab.plot.images"} <= set(graph)
    state: dict[str, int] = {}
    cycles = []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_core_knows_nothing_of_images_and_lower_layers_never_import_upper_ones():
    graph = _graph()
    core = ["batches", "groups", "freezing", "optim", "callbacks", "train", "recipes", "history", "checkpoint", "caching",
            "splits", "summary", "tables", "files", "errors"]
    upper = {"ftlab.vision", "ftlab.plot", "ftlab.widgets", "ftlab.lab"}

    def reach(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        return seen

    for name in core:
        bad = {m for m in reach(f"ftlab.{name}") if any(m == u or m.startswith(u + ".") for u in upper)}
        assert not bad, f"ftlab.{name} imports {sorted(bad)}"
    for name in ("ftlab.vision.data", "ftlab.vision.models", "ftlab.vision.transforms"):
        assert not {m for m in reach(name) if m in ("ftlab.train", "ftlab.caching", "ftlab.plot")}


def test_the_library_never_imports_the_lab():
    """ftlab.lab (claims, strategies, sweeps, the lesson runner, full runs, the CLI) is built on the library,
    never the other way round; ``ft.lab`` is reached lazily through the root package's ``__getattr__``."""
    graph = _graph()
    assert {"ftlab.lab.claims", "ftlab.lab.cli", "ftlab.lab.full_images", "ftlab.lab.sweep"} <= set(graph)
    bad = {f"{m} imports {t}" for m, targets in graph.items() if not (m == "ftlab.lab" or m.startswith("ftlab.lab."))
           for t in targets if t == "ftlab.lab" or t.startswith("ftlab.lab.")}
    assert not bad, sorted(bad)
    root = MODULES["ftlab"].read_text()
    assert "from . import lab" not in root and "from .lab" not in root


def test_no_module_imports_another_modules_private_name():
    bad = []
    for name, path in MODULES.items():
        for target, names in _imports(name, path):
            bad += [f"{name}: from {target} import {n}" for n in names if n.startswith("_") and not n.startswith("__")]
        imported = {a.asname or a.name for node in ast.walk(ast.parse(path.read_text()))
                    if isinstance(node, ast.ImportFrom) and node.level for a in node.names}
        for node in ast.walk(ast.parse(path.read_text())):     # module._private through `from . import module`
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported \
                    and node.attr.startswith("_") and not node.attr.startswith("__"):
                bad.append(f"{name}: {node.value.id}.{node.attr}")
    assert not bad, bad


@pytest.mark.parametrize("package", ["ftlab", "ftlab.vision", "ftlab.plot", "ftlab.lab"])
def test_no_public_name_shadows_a_submodule(package):
    pkg = importlib.import_module(package)
    assert len(pkg.__all__) == len(set(pkg.__all__)), "duplicates in __all__"
    for info in pkgutil.iter_modules(pkg.__path__):
        module = importlib.import_module(f"{package}.{info.name}")
        assert getattr(pkg, info.name, module) is module, f"{package}.{info.name} is not the submodule"
    for name in pkg.__all__:
        assert hasattr(pkg, name) or name in ("plot", "widgets"), name


def test_import_ftlab_is_light():
    import subprocess
    import sys

    code = "import sys, ftlab; print(sorted(m for m in ('matplotlib', 'ipywidgets', 'papermill') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_user_mistakes_are_value_errors():
    assert issubclass(ftlab.UsageError, ValueError) and issubclass(ftlab.DataError, ValueError)
    assert issubclass(ftlab.UsageError, ftlab.FtlabError) and issubclass(ftlab.WeightsUnavailable, ftlab.FtlabError)


def test_no_function_in_the_package_is_longer_than_60_lines():
    """Short functions a student can read at once: a longer one is split into named steps."""
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not long, long


def test_the_benchmarks_use_only_names_the_package_has():
    """`make bench` is not run by the tests (it measures speed); this at least catches a renamed function."""
    import functools
    import re

    import ftlab as ft

    bench = Path(__file__).resolve().parent.parent / "benchmarks"
    used = {m for path in bench.glob("*.py") for m in re.findall(r"\bft\.([A-Za-z_][\w.]*[A-Za-z_0-9])", path.read_text())}
    missing = []
    for chain in sorted(used):
        try:
            functools.reduce(getattr, chain.split("."), ft)
        except AttributeError:
            missing.append(f"ft.{chain}")
    assert not missing, f"benchmarks use names ftlab does not have: {missing}"
