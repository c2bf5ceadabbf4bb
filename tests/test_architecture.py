"""The shape of the code a newcomer relies on: packages by concept, imports in one direction, no
cycle, short functions, and no TensorFlow until a mode needs it."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "cvtrain"
MAX_TOP_LEVEL_MODULES = 8
MAX_FUNCTION_LINES = 60


def module_names() -> dict[str, Path]:
    """cvtrain's modules by dotted name (a package by its own name)."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every cvtrain module `path` imports: at module level, in functions, under TYPE_CHECKING,
    and through a registry's "module:attribute" string."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            target, colon, _ = node.value.partition(":")
            if colon and target.startswith("cvtrain."):
                found.add(target)
    return {name for name in found if name in modules}


def import_graph() -> dict[str, set[str]]:
    modules = module_names()
    return {name: imports(path, modules) - {name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_the_cycle_finder_finds_a_cycle_through_a_registry_string(tmp_path):
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    source = tmp_path / "m.py"
    source.write_text('def f():\n    from cvtrain.x import y\nT = {"k": "cvtrain.z:thing"}\n')
    assert imports(source, {"cvtrain.x": source, "cvtrain.z": source}) == {"cvtrain.x", "cvtrain.z"}


def test_no_import_cycle_counting_function_level_type_checking_and_registry_imports():
    assert cycles(import_graph()) == []


def test_imports_run_one_way_schema_registries_checks_cli():
    graph = import_graph()
    schema = reachable(graph, "cvtrain.config.schema")
    assert schema <= {"cvtrain.errors", "cvtrain.paths", "cvtrain.config.suggest"}, schema
    # The parts a config names, and what their code reaches: never the checks or the CLI.
    registries = [
        "cvtrain.tasks",
        "cvtrain.models",
        "cvtrain.losses",
        "cvtrain.data.sources",
        "cvtrain.inference.export_formats",
        "cvtrain.training.optimizers",
    ]
    for registry in registries:
        below = reachable(graph, registry)
        assert "cvtrain.config.checks" not in below, registry
        assert not any(m.startswith("cvtrain.cli") for m in below), registry
    # The modes sit above the checks (they load saved runs through them), below the CLI.
    for top in ("cvtrain.config.checks", "cvtrain.modes"):
        assert not any(m.startswith("cvtrain.cli") for m in reachable(graph, top)), top


def test_few_modules_at_the_top_and_no_two_modules_of_one_name():
    modules = module_names()
    top = [name for name, path in modules.items() if path.parent == PACKAGE]
    assert len(top) <= MAX_TOP_LEVEL_MODULES + 1, sorted(top)  # + the package's __init__
    leaves = Counter(name.rsplit(".", 1)[-1] for name in modules if name != "cvtrain")
    assert [leaf for leaf, n in leaves.items() if n > 1] == []


def test_no_function_over_60_lines():
    long = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}"
        for path in PACKAGE.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == []


@pytest.mark.parametrize(
    "code",
    [
        "from cvtrain.cli.validate import validate\n"
        "from hydra import compose, initialize_config_dir\n"
        "from cvtrain.paths import config_dir\n"
        "import cvtrain.cli.main\n"
        "with initialize_config_dir(config_dir=config_dir(), version_base='1.3'):\n"
        "    cfg = validate(compose('config', overrides=['task=classification', 'model=xception',"
        " 'data.image_size=[96,96]']))\n"
        "assert cfg.model.name == 'xception'\n",
        "import sys\nfrom cvtrain.cli.main import main\nsys.argv = ['cvtrain', '--help']\nmain()\n",
    ],
    ids=["compose_and_validate", "help"],
)
def test_composing_a_config_or_help_imports_no_tensorflow(code):
    check = code + "\nimport sys\nassert 'tensorflow' not in sys.modules, 'tensorflow'\n"
    check += "assert 'keras' not in sys.modules, 'keras'\n"
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
