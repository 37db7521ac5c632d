"""The import graph of the five packages: one direction, no cycles, serving off the trainers.

Every ``import`` / ``from ... import`` in every module counts, including the ones inside
functions (a lazy import is still a dependency, and a cycle hidden in a function is still a
cycle). Parsed with ``ast``; nothing is imported.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: lowest layer first; a module may import its own layer and the layers before it
LAYERS = ("kernels", "features", "training", "serving", "ray_apps")
#: the only ``training`` modules ``serving`` may import, and why:
SERVING_MAY_IMPORT = {
    "training": "the package itself (a docstring, no imports: checked below)",
    "training.bundle": "the bundle format: file names, meta, ONNX session, calibration",
    "training.nets": "torch-only net definitions that rebuild a sequence bundle's state.pt",
    "training.attribution": "torch-only integrated gradients over that net",
    "training.plots": "plotly figure code shared by the HTML reports",
}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in LAYERS:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = f
    return out


def _imported_names(name: str, path: Path) -> set[str]:
    """Dotted names ``name``'s source imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            # ``from pkg import mod`` imports the module pkg.mod
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in mods.items():
        for target in _imported_names(name, path):
            while target and target not in mods:  # ``pkg.mod.func`` -> ``pkg.mod``
                target = target.rpartition(".")[0]
            if target and target != name:
                edges[name].add(target)
    return {m: set(edges.get(m, ())) for m in mods}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return _graph()


def test_the_graph_is_read(graph):
    # a parser that found nothing would pass every check below
    assert len(graph) > 100
    assert "training.bundle" in graph["serving.scorer"]
    assert "training.lgbm" in graph["training.walkforward"]


def test_no_import_cycles(graph):
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_layers_point_one_way(graph):
    rank = {p: i for i, p in enumerate(LAYERS)}
    bad = [f"{m} -> {t}" for m, ts in graph.items() for t in ts
           if rank[t.split(".")[0]] > rank[m.split(".")[0]]]
    assert bad == []


def test_serving_imports_only_the_bundle_side_of_training(graph):
    bad = sorted(f"{m} -> {t}" for m, ts in graph.items() if m.split(".")[0] == "serving"
                 for t in ts if t.split(".")[0] == "training" and t not in SERVING_MAY_IMPORT)
    assert bad == []
    # what serving may import must not pull the trainers in behind it
    for allowed in SERVING_MAY_IMPORT:
        deps = {t for t in graph[allowed] if t.split(".")[0] == "training"}
        assert deps <= set(SERVING_MAY_IMPORT), (allowed, deps)


def test_bundle_and_nets_stand_alone(graph):
    assert graph["training"] == set()
    # the bundle format writes through the crash-safe writer and nothing else of ours
    assert {t for t in graph["training.bundle"] if t.split(".")[0] in LAYERS} == {
        "features.durable"}
    assert {t for t in graph["training.nets"] if t.split(".")[0] in LAYERS} == set()
