"""trainer/ imports only mixkit and itself, one way: no module imports lab or cli, and no two
trainer modules import each other (not even inside a function)."""

from __future__ import annotations

import ast
from pathlib import Path

import trainer

TRAINER = Path(trainer.__file__).parent
# The one edge that closes a cycle, kept until its callers move: trainer.stages.run_stages,
# a transitional alias of trainer.stage_runner.run_stages.
TRANSITIONAL = {("trainer.stages", "trainer.stage_runner")}


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def graph() -> dict[str, set[str]]:
    modules = {f"trainer.{p.stem}": p for p in TRAINER.glob("*.py") if p.stem != "__init__"}
    return {m: {i for i in imports(p) if i in modules and i != m} for m, p in modules.items()}


def test_trainer_imports_neither_lab_nor_cli():
    for p in TRAINER.glob("*.py"):
        if p.stem == "report":  # moves to lab/
            continue
        bad = sorted(i for i in imports(p) if i.split(".")[0] in ("lab", "cli"))
        assert not bad, f"{p.name} imports {bad}"


def test_no_import_cycles_in_trainer():
    g = graph()
    g = {m: {d for d in deps if (m, d) not in TRANSITIONAL} for m, deps in g.items()}
    assert "trainer.hf" not in g["trainer.model"], "hf builds on model, never the other way"
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(g[m]):
            assert state.get(d) != 1, f"import cycle: {' -> '.join(path + [m, d])}"
            if d not in state:
                visit(d, path + [m])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [])
