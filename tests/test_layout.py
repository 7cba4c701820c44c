"""The package's layout: rooms in layers, no import cycle, no import back up a layer, no
private name used outside its module, a library that neither prints nor draws."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "oatomo"

#: The rooms from the ground up. A module may import its own room and any room below it.
#: ``oatomo`` itself is the lazy public face (it imports errors and geometry eagerly).
LAYERS = (
    ("oatomo.errors", "oatomo.progress", "oatomo._lazy", "oatomo._limits", "oatomo._blas",
     "oatomo.resources", "oatomo.units"),
    ("oatomo._atomic", "oatomo.kernels"),
    ("oatomo.geometry", "oatomo.speed_map"),
    ("oatomo",),
    ("oatomo.response", "oatomo.media", "oatomo.phantoms", "oatomo.scanners"),
    ("oatomo.forward", "oatomo.setups"),
    ("oatomo.recon",),
    ("oatomo.volume",),
    ("oatomo.io",),
    ("oatomo.calibration", "oatomo.datasets"),
    ("oatomo.learn",),
    ("oatomo.refine",),
    ("oatomo.pipeline",),
    ("oatomo.evaluation", "oatomo.figures"),
    ("oatomo.validation",),
    # deprecated aliases of module paths that moved into rooms
    ("oatomo.autofocus", "oatomo.exact", "oatomo.methods", "oatomo.model_based",
     "oatomo.presets"),
    ("oatomo.cli",),
    ("oatomo.__main__",),
)
RANK = {room: r for r, rooms in enumerate(LAYERS) for room in rooms}


def _module_path(name: str) -> Path | None:
    p = ROOT.joinpath(*name.split("."))
    for cand in (p.with_suffix(".py"), p / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        modules[".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)] = path
    return modules


def _imports(path: Path, module: str) -> dict[str, set[str]]:
    """oatomo modules a module imports (also inside functions; not under TYPE_CHECKING),
    each with the names it takes from it."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("oatomo"):
                    found.setdefault(a.name, set())
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if not base.startswith("oatomo"):
                continue
            for a in node.names:  # "from oatomo import phantoms" imports a module
                sub = f"{base}.{a.name}"
                if _module_path(sub):
                    found.setdefault(sub, set())
                else:
                    found.setdefault(base, set()).add(a.name)
    return {m: names for m, names in found.items() if _module_path(m) and m != module}


def _room(module: str) -> str:
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in RANK:
            return ".".join(parts[:k])
    raise AssertionError(f"{module} is in no room of LAYERS")


GRAPH = {m: _imports(p, m) for m, p in _modules().items()}


def test_the_graph_sees_imports():
    assert "oatomo.recon.exact" in GRAPH["oatomo.recon.backprojection"]
    assert "oatomo.validation.cmnist.experiment" in GRAPH["oatomo.cli.cmnist"]  # in functions
    assert "InputError" in GRAPH["oatomo.io.formats"]["oatomo.errors"]


def test_every_module_is_in_a_room():
    for m in GRAPH:
        _room(m)


def test_no_import_runs_up_a_layer():
    up = []
    for m, imported in GRAPH.items():
        for n in imported:
            if RANK[_room(n)] > RANK[_room(m)]:
                up.append(f"{m} -> {n}")
    assert up == [], up


def test_no_import_cycles():
    graph = {m: set(v) for m, v in GRAPH.items()}
    cycles = []
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert cycles == [], cycles


def test_no_private_name_is_used_outside_its_module():
    private = []
    for m, imported in GRAPH.items():
        for n, names in imported.items():
            private += [f"{m} imports {n}.{a}" for a in names
                        if a.startswith("_") and not a.startswith("__")]
        text = _modules()[m].read_text()
        # attribute access on an imported module, e.g. ``kernels._sum``
        for alias in re.findall(r"^\s*from oatomo[\w.]* import (\w+) as (\w+)", text, re.M):
            private += [f"{m} uses {alias[0]}.{a}" for a in
                        re.findall(rf"\b{alias[1]}\.(_[a-z]\w*)", text)]
    assert private == [], private


def test_library_modules_do_not_draw_bars_or_print():
    for path in PACKAGE.rglob("*.py"):
        if "cli" in path.parts:
            continue
        text = path.read_text()
        assert "tqdm" not in text, path
        assert "pyplot" not in text or path.name == "figures.py", path
        assert not re.search(r"^\s*print\(", text, re.M), path
