"""Read rtclab's import graph from the source and report cycles and layer breaks.

Every ``import`` counts: the ones inside functions (they hide a dependency, they do not
remove it) and the ones under ``if TYPE_CHECKING:`` (a type from a higher layer is a
dependency on it all the same). Usage::

    python scripts/import_graph.py          # prints cycles and layer breaks, exit 1 if any
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "rtclab"

#: Layers, lowest first: a module may import its own layer or lower ones only
#: (docs/ARCHITECTURE.md explains each). The package facade ``rtclab/__init__.py``
#: re-exports the public names and sits above everything.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("_compat", "model", "_lazy", "_proc", "wire"),
    ("signaling", "net", "ice", "cc", "qoe"),
    ("peer", "web"),
    ("stats",),
    ("widgets", "experiments"),
    ("lab", "demo", "workers"),
    ("cli", "__main__", "peer_process"),
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The rtclab modules ``path`` imports (resolved to existing modules)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def resolve(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("rtclab"):
                    hit = resolve(alias.name)
                    if hit:
                        found.add(hit)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            if prefix.startswith("rtclab"):
                for alias in node.names:
                    hit = resolve(f"{prefix}.{alias.name}") or resolve(prefix)
                    if hit:
                        found.add(hit)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(name)
    return found


def graph() -> dict[str, set[str]]:
    paths = sorted(ROOT.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                connect(w)
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
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package facade
    for rank, names in enumerate(LAYERS):
        if parts[1] in names:
            return rank
    raise ValueError(f"{module}: not in any layer; add its package to LAYERS")


def layer_breaks(edges: dict[str, set[str]]) -> list[str]:
    """Imports of a higher layer from a lower one."""
    broken = []
    for source, targets in sorted(edges.items()):
        rank = layer_of(source)
        if rank is None:
            continue
        for target in sorted(targets):
            other = layer_of(target)
            if other is not None and other > rank:
                broken.append(f"{source} -> {target}")
    return broken


def main() -> int:
    edges = graph()
    found = cycles(edges)
    broken = layer_breaks(edges)
    for component in found:
        print("cycle:", " <-> ".join(component))
    for line in broken:
        print("layer break:", line)
    print(f"{len(edges)} modules, {len(found)} cycles, {len(broken)} layer breaks")
    return 1 if found or broken else 0


if __name__ == "__main__":
    sys.exit(main())
