"""The house rules of ``src/rankdistill``, checked from the code's own imports (top-level and inside functions):
no import cycle, no stage importing a stage above it, nothing but ``commands/`` and ``cli.py`` printing."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "rankdistill"

# Lower layers never import higher ones, nor packages of one layer each other; a package may import its own
# modules and any lower layer. Evaluation sits low: it measures runs and knows nothing of who made them.
LAYERS = [
    {"errors", "util"},
    {"data"},
    {"evaluation"},
    {"bm25", "modeling"},
    {"teacher"},
    {"distillation"},
    {"training", "reranking"},
    {"serving"},
    {"workflow"},
    {"studies"},
    {"commands", "cli", "__main__", "__init__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _imports(name: str, path: Path) -> set[str]:
    """The rankdistill modules ``name`` imports, resolved to module files (a name inside a package counts as
    the package's module, a submodule as itself)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("rankdistill") and target != name and target != "rankdistill":
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_is_read():
    """The check would pass vacuously if the resolver found nothing: a few known edges must be there."""
    assert "rankdistill.data.trec" in GRAPH["rankdistill.bm25"]
    assert "rankdistill.modeling.gated" in GRAPH["rankdistill.reranking.cpu_forward"]


def test_no_import_cycle():
    assert _cycles() == []


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return RANK[top]


def test_every_top_level_name_has_a_layer():
    assert {m.split(".")[1] for m in MODULES if "." in m} <= set(RANK)


def test_no_stage_imports_a_higher_one():
    def top(module: str) -> str:
        return module.split(".")[1] if "." in module else "__init__"

    upward = sorted(
        f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets
        if _layer(b) > _layer(a) or (_layer(b) == _layer(a) and top(a) != top(b) and 0 < _layer(a) < len(LAYERS) - 1)
    )
    assert upward == []


def test_only_the_command_layer_prints():
    """Library code returns and raises; ``commands/`` and ``cli.py`` talk to the terminal
    (progress bars through ``util/progress`` aside)."""
    offenders = []
    for name, path in MODULES.items():
        if name.startswith(("rankdistill.commands", "rankdistill.cli", "rankdistill.util.progress")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call):
                func = node.func
                if isinstance(func, ast.Name) and func.id == "print":
                    offenders.append(f"{name}:{node.lineno} print()")
                elif isinstance(func, ast.Attribute) and func.attr in ("print", "print_json", "rule", "log"):
                    owner = func.value
                    owner_name = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
                    if "console" in owner_name.lower() or owner_name in ("out", "err"):
                        offenders.append(f"{name}:{node.lineno} {owner_name}.{func.attr}()")
            elif isinstance(node, ast.ImportFrom) and node.module == "rich.console":
                offenders.append(f"{name}:{node.lineno} imports rich.console")
    assert offenders == []
