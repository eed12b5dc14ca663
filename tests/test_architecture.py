"""The layout is the architecture: lower layers never import higher ones, no import cycles, short functions,
and workflows/ holds YAML only."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "limit"
# Lowest first. A module may import its own layer and the ones below, never one above.
LAYERS = [
    (
        "foundation",
        [
            "limit",
            "limit.errors",
            "limit.quantities",
            "limit.cpu",
            "limit.spec.loader",
            "limit.execution.io",
            "limit.execution.digests",
            "limit.execution.locations",
            "limit.execution.progress",
            "limit.execution.logs",
            "limit.execution.lifetime",
            "limit.stats",
        ],
    ),
    ("spec", ["limit.spec.study"]),
    (
        "libraries",
        [
            "limit.costs",
            "limit.models",
            "limit.execution.store",
            "limit.execution.leases",
            "limit.execution.tracking",
            "limit.execution.mlflow_store",
            "limit.execution.context",
            "limit.data",
            "limit.training",
            "limit.gauntlet",
            "limit.generation",
            "limit.judge",
            "limit.report",
        ],
    ),
    ("steps", ["limit.steps"]),
    ("plan", ["limit.plan"]),
    ("runner", ["limit.runner"]),
    ("checks", ["limit.gpucheck"]),  # limit check-gpu's stages: they plan and run steps as a user would
    ("backends", ["limit.backends"]),
    ("commands", ["limit.commands", "limit.cli"]),
]
LONGEST_FUNCTION = 60
LONGEST_REPEAT = 8  # lines of code that may stand twice in limit/ (blank lines, comments and imports aside)


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text()) for p in sorted(PACKAGE.rglob("*.py"))}


def imports(tree: ast.Module, known: set[str]) -> set[str]:
    """The project modules a module imports, at the top or inside functions (`from a import b` counts a.b
    when b is a module, else a)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in known else node.module)
    return {name for name in found if name in known}


def layer(name: str) -> int:
    matches = [i for i, (_, prefixes) in enumerate(LAYERS) for p in prefixes if name == p or name.startswith(p + ".")]
    assert matches, f"{name} is in no layer: add it to LAYERS"
    return max(matches)


def test_lower_layers_never_import_higher_ones():
    trees = modules()
    known = set(trees)
    upward = [
        f"{name} ({LAYERS[layer(name)][0]}) imports {dep} ({LAYERS[layer(dep)][0]})"
        for name, tree in trees.items()
        for dep in sorted(imports(tree, known))
        if layer(dep) > layer(name)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    trees = modules()
    graph = {name: imports(tree, set(trees)) - {name} for name, tree in trees.items()}
    cycles = []

    def visit(node: str, path: list[str], done: set[str]) -> None:
        for dep in sorted(graph[node]):
            if dep in path:
                cycles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in done:
                visit(dep, [*path, dep], done)
        done.add(node)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [name], done)
    assert not cycles, "\n".join(sorted(set(cycles)))


def test_no_function_is_longer_than_a_screen():
    long = [
        f"{name}:{node.lineno} {node.name}: {node.end_lineno - node.lineno + 1} lines"
        for name, tree in modules().items()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > LONGEST_FUNCTION
    ]
    assert not long, "\n".join(long)


def code_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, the line without indentation) of each line that is code: not blank, a comment, a lone
    bracket or an import."""
    kept = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if text and not text.startswith(("#", "import ", "from ")) and text not in ("(", ")", "[", "]", "{", "}", "),"):
            kept.append((number, text))
    return kept


def test_no_block_of_code_stands_twice():
    """The same run of more than LONGEST_REPEAT lines in two places is one function waiting to be written."""
    seen: dict[tuple[str, ...], str] = {}
    repeats = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = code_lines(path)
        for start in range(len(lines) - LONGEST_REPEAT):
            window = tuple(text for _, text in lines[start : start + LONGEST_REPEAT + 1])
            where = f"{path.relative_to(REPO)}:{lines[start][0]}"
            if window in seen:
                repeats.append(f"{where} repeats {seen[window]}")
            seen.setdefault(window, where)
    assert not repeats, "\n".join(repeats[:10])


def test_workflows_holds_yaml_only():
    python = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "workflows").rglob("*.py"))
    assert not python, f"workflows/ is for studies, profiles and golden manifests: {python}"
