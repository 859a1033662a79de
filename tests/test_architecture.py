"""The layer contract: cli → lab → trainer → mixkit, arrows down only, and no import cycle between modules.

Every ``import`` in the project's packages is read from the AST, wherever it stands (top
level, inside a function, under ``TYPE_CHECKING``): a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["mixkit", "trainer", "lab", "cli"]  # bottom to top: a layer may import those below it


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules(root: Path) -> dict[str, Path]:
    return {module_name(p, root): p for layer in LAYERS if (root / layer).is_dir()
            for p in sorted((root / layer).rglob("*.py"))}


def imported(path: Path, name: str, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(project module imported, line) for every import statement of the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule when there is one, else the package
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                yield t, node.lineno


def layer_of(module: str) -> int:
    return LAYERS.index(module.split(".")[0])


def upward_imports(root: Path) -> list[str]:
    modules = project_modules(root)
    bad = []
    for name, path in modules.items():
        for target, line in imported(path, name, modules):
            if layer_of(target) > layer_of(name):
                bad.append(f"{path.relative_to(root)}:{line}: {name} imports {target} (a layer above)")
    return bad


def import_cycles(root: Path) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each a cycle of imports."""
    modules = project_modules(root)
    graph = {n: sorted({t for t, _ in imported(p, n, modules)}) for n, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_layer_imports_a_layer_above():
    assert upward_imports(ROOT) == []


def test_no_import_cycle_between_modules():
    assert import_cycles(ROOT) == []


def test_every_layer_exists():
    assert all((ROOT / layer / "__init__.py").is_file() for layer in LAYERS)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for layer in LAYERS:
        (tmp_path / layer).mkdir(exist_ok=True)
        (tmp_path / layer / "__init__.py").touch()
    return tmp_path


@pytest.mark.parametrize("files, expected", [
    ({"mixkit/a.py": "def f():\n    from trainer import b\n", "trainer/b.py": ""}, "mixkit.a imports trainer.b"),
    ({"trainer/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import lab.x\n", "lab/x.py": ""},
     "trainer.a imports lab.x"),
    ({"lab/a.py": "from cli.c import main\n", "cli/c.py": ""}, "lab.a imports cli.c"),
    ({"mixkit/mix/a.py": "from ...trainer import t\n", "trainer/t.py": ""}, "mixkit.mix.a imports trainer.t"),
])
def test_the_contract_catches_upward_imports(tmp_path, files, expected):
    bad = upward_imports(_tree(tmp_path, files))
    assert len(bad) == 1 and expected in bad[0]


def test_the_contract_catches_cycles(tmp_path):
    root = _tree(tmp_path, {"trainer/a.py": "from trainer import b\n", "trainer/b.py": "def f():\n    from . import a\n",
                            "trainer/c.py": "import trainer.a\n"})
    assert import_cycles(root) == [["trainer.a", "trainer.b"]]
    assert upward_imports(root) == []
