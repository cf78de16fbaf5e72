"""The package in layers: each module imports only its own layer and the layers below it, and no
module imports, directly or through others, one that imports it back (no cycles). Imports are read
from the source (``ast``), inside functions too: a deferred import is still a dependency."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module may import its own layer and any layer before it.
LAYERS = (
    ("ground", ("difflab._version", "difflab.errors", "difflab.yamlio", "difflab.lazy", "difflab.registry")),
    ("contracts", ("difflab.contracts",)),
    ("maths", ("difflab.maths",)),
    ("targets", ("difflab.targets",)),
    ("samplers", ("difflab.samplers",)),
    ("plugins", ("difflab.plugins",)),
    ("run", ("difflab.run",)),
    ("results", ("difflab.results",)),
    ("api", ("difflab.api",)),
    ("cli", ("difflab.cli",)),
    ("package", ("difflab", "difflab.__main__")),
)


def layer_of(module: str) -> int:
    """The index of the layer holding ``module`` (the longest matching prefix)."""
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, rank = len(p), i
    if rank is None:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS (and to the README's Layout)")
    return rank


def modules(package: Path) -> dict[str, Path]:
    out = {}
    for p in package.rglob("*.py"):
        parts = list(p.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the package's modules it imports (anywhere in its source)."""
    mods = modules(package)

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    graph = {m: set() for m in mods}
    for m, p in mods.items():
        base = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                mod = node.module or ""
                if node.level:
                    b = base.split(".")
                    mod = ".".join(b[: len(b) - node.level + 1] + ([node.module] if node.module else []))
                names = [f"{mod}.{a.name}" for a in node.names] + [mod]
            else:
                continue
            for name in names:
                if name.split(".")[0] == package.name and (r := resolve(name)) and r != m:
                    graph[m].add(r)
                    break
    return graph


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
                  for a, deps in graph.items() for b in deps if layer_of(b) > layer_of(a))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.fixture(scope="module")
def graph():
    return import_graph(ROOT / "difflab")


def test_every_module_has_a_layer(graph):
    for m in graph:
        layer_of(m)


def test_no_module_imports_a_higher_layer(graph):
    assert upward(graph) == []


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_the_checks_catch_what_they_guard_against(graph):
    """Negative controls: an upward import and a cycle planted in a copy of the real graph are found."""
    planted = {m: set(deps) for m, deps in graph.items()}
    planted["difflab.maths.metrics"].add("difflab.run.io")  # maths reading run files: upward
    assert upward(planted) == ["difflab.maths.metrics (maths) imports difflab.run.io (run)"]
    planted = {m: set(deps) for m, deps in graph.items()}
    planted["difflab.errors"].add("difflab.yamlio")  # yamlio imports errors: a cycle within one layer
    assert cycles(planted) == [["difflab.errors", "difflab.yamlio"]]
    with pytest.raises(AssertionError, match="belongs to no layer"):
        layer_of("difflab_other.module")


def test_the_graph_reads_deferred_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("from .. import a\nfrom . import c\n")
    (pkg / "sub" / "c.py").write_text("import pkg.a\n")
    g = import_graph(pkg)
    assert g["pkg.a"] == {"pkg.sub.b"} and g["pkg.sub.b"] == {"pkg.a", "pkg.sub.c"} and g["pkg.sub.c"] == {"pkg.a"}
    assert cycles(g) == [["pkg.a", "pkg.sub.b", "pkg.sub.c"]]


def test_the_readme_layout_lists_every_package_and_top_level_module(graph):
    """The README's Layout names each subpackage (``difflab/run/``) and each top-level module."""
    text = (ROOT / "README.md").read_text()
    layout = text[text.index("## Layout"):text.index("\n## ", text.index("## Layout") + 3)]
    parts = {m.split(".")[1] for m in graph if m.count(".") >= 1}
    for part in sorted(parts - {"__main__"}):
        is_package = (ROOT / "difflab" / part).is_dir()
        name = f"difflab/{part}/" if is_package else f"{part}.py"
        assert name in layout, f"the README's Layout does not name {name}"
