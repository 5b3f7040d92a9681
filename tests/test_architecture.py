"""The package's imports run one way: a core that never imports a lecture's topic, topics that
never import each other, course tooling apart, and no import cycles anywhere."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

UTILS = Path(__file__).resolve().parents[1] / "utils"
CORE = {"session", "paths", "data", "models", "training", "recipes", "zoo", "zoo_entries",
        "attacks", "transforms", "attribution", "viz", "tables", "stats", "text", "smoothing"}
TOOLING = {"labs", "lab_copies", "grading", "site"}


def module_name(path: Path) -> str:
    parts = path.relative_to(UTILS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every ``utils...`` module imported anywhere in the file (function-level imports too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("utils")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("utils"):
            for alias in node.names:   # `from utils import zoo` imports the module utils.zoo
                candidate = f"{node.module}.{alias.name}"
                is_module = (UTILS.parent / Path(*candidate.split("."))).with_suffix(".py").exists() \
                    or (UTILS.parent / Path(*candidate.split("."))).is_dir()
                found.add(candidate if is_module else node.module)
    return found


GRAPH = {module_name(p): imports_of(p) for p in UTILS.rglob("*.py")}


def kind(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    if parts[1] in CORE:
        return "core"
    if parts[1] in TOOLING:
        return "tooling"
    return "topic:" + parts[1]


def test_every_module_is_classified():
    for module in GRAPH:
        parts = module.split(".")
        if len(parts) > 1:
            assert parts[1] in CORE | TOOLING or (UTILS / parts[1]).is_dir(), (
                f"{module} is neither core, tooling nor a topic package: add it to CORE or "
                "TOOLING here, or move it into a topic package")


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if kind(m) == "core"))
def test_core_never_imports_a_topic_or_tooling(module):
    bad = sorted(i for i in GRAPH[module] if kind(i).startswith("topic") or kind(i) == "tooling")
    assert not bad, f"core module {module} imports {bad}: the core must not know the lectures"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if kind(m).startswith("topic")))
def test_topics_never_import_each_other(module):
    own = kind(module)
    bad = sorted(i for i in GRAPH[module]
                 if (kind(i).startswith("topic") and kind(i) != own) or kind(i) == "tooling")
    assert not bad, f"{module} imports {bad}: a topic may use the core only"


def test_no_import_cycles():
    graph = {m: {i for i in imports if i in GRAPH and i != m and i != "utils"}
             for m, imports in GRAPH.items()}
    # a package's __init__ re-exporting its own modules is not a cycle of ideas
    for m in graph:
        graph[m] = {i for i in graph[m] if not (i.startswith(m + ".") and m.count(".") == 1)}
    state: dict[str, int] = {}

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_zoo_list_imports_no_topic():
    code = ("import sys, io, contextlib\n"
            "from utils import zoo\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    zoo.main(['list'])\n"
            "print(sorted(m for m in sys.modules if m.startswith('utils.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=UTILS.parent).stdout
    loaded = eval(out.strip().splitlines()[-1])
    topics = [m for m in loaded if kind(m).startswith("topic") or kind(m) == "tooling"]
    assert not topics, f"`python -m utils.zoo list` imported {topics}"


def test_zoo_entries_name_importable_functions():
    from utils import zoo

    for name, item in zoo.REGISTRY.items():
        for reference in (item.build, item.recipe):
            assert callable(zoo.resolve(reference)), f"{name}: {reference}"
