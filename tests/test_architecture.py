"""The import rules of docs/architecture.md: each part of the package imports only from the layers below it,
nothing imports in a cycle, and `softprompt list` loads none of the training or serving machinery."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "softprompt"
# Bottom to top. A part may import from its own modules and from parts of lower layers, never from a part of
# its own layer or above: a new part goes where what it imports lets it.
LAYERS = [("errors",), ("configs", "storage"), ("backbones", "tasks"), ("methods",), ("runtime",), ("evaluation",),
          ("tuned",), ("formats",), ("training", "serving"), ("cli",)]
LAYER_OF = {part: level for level, parts in enumerate(LAYERS) for part in parts}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """softprompt modules that `path` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            found |= {f"{target}.{a.name}" if _is_module(f"{target}.{a.name}") else target for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return {name for name in found if name.split(".")[0] == "softprompt"}


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def part(module: str) -> str | None:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else None


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_part_has_a_layer():
    assert {part(module_name(p)) for p in SOURCES} == set(LAYER_OF)


def upward_imports(path: Path) -> list[str]:
    source = part(module_name(path))
    return [f"{module_name(path)} imports {target} ({part(target)} is not below {source})" for target in sorted(imports(path))
            if part(target) and part(target) != source and LAYER_OF[part(target)] >= LAYER_OF[source]]


def test_each_part_imports_only_from_lower_layers():
    assert [problem for path in SOURCES for problem in upward_imports(path)] == []


def test_no_module_imports_in_a_cycle():
    graph = {module_name(p): {t for t in imports(p, top_level_only=True) if t != module_name(p)} for p in PACKAGE.rglob("*.py")}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, trail: list[str]) -> list[str] | None:
        if state.get(node) == 1:
            return trail[trail.index(node):] + [node]
        if state.get(node) == 2:
            return None
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt, [*trail, node])
            if cycle:
                return cycle
        state[node] = 2
        return None

    assert [visit(node, []) for node in sorted(graph)] == [None] * len(graph)


def test_the_rules_catch_an_upward_import():
    """The checker itself: a backbone that imported the trainer would be reported."""
    probe = PACKAGE / "backbones" / "_upward_probe.py"
    probe.write_text("from ..training import train\n")
    try:
        assert upward_imports(probe) == ["softprompt.backbones._upward_probe imports softprompt.training "
                                         "(training is not below backbones)"]
    finally:
        probe.unlink()


def test_listing_loads_no_training_or_serving_machinery():
    code = ("import sys, io, contextlib\nfrom softprompt.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()): main(['list'])\n"
            "print(sorted(m for m in ('accelerate', 'matplotlib', 'peft', 'fastapi', 'uvicorn', 'transformers.modeling_utils',"
            " 'softprompt.training.trainer', 'softprompt.serving') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == "[]"
