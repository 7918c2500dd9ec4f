"""The package layering DEVELOPERS.md describes ("Layering"), checked on the source, and every module
importable on its own.

Imports are read with ``ast``, function-level ones included: an import moved into a function still
ties the two packages together, it only hides the cycle until that function runs.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "xpdctl"

# Bottom to top: a package may import packages of lower layers only (and its own modules). Keep in
# step with DEVELOPERS.md's table. "xpdctl" is the root package's __init__ (the version).
LAYERS: list[set[str]] = [
    {"xpdctl", "errors"},
    {"paths", "output", "aioserve", "status_model", "releases", "disagg_defaults"},
    {"vendors", "gpu_catalog"},
    {"inventory", "models", "probes", "kvagent", "router"},
    {"plan", "perfmodel", "audit"},
    {"observability", "identity"},
    {"render", "sim", "bench"},
    {"diff", "ssh", "units"},
    {"observe", "verify", "provision"},
    {"local", "remote"},
    {"deploy"},
    {"upgrade"},
    {"testhosts"},
    {"commands"},
    {"cli"},
]
LAYER_OF = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def source_modules() -> dict[str, Path]:
    # Stand-in tools of the test hosts are scripts run on the hosts, not modules of xpdctl.
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "standins" not in p.parts}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[tuple[str, int]]:
    """(xpdctl module imported, line) for every import in the file, however deep in a function;
    not those under ``if TYPE_CHECKING:``, which never run (annotations only)."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and ast.unparse(node.test).endswith(
        "TYPE_CHECKING") for stmt in node.body for n in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from xpdctl.upgrade import phases` imports the module xpdctl.upgrade.phases.
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            found += [(t, node.lineno) for t in subs or [target]]
    return [(t, line) for t, line in found if t == "xpdctl" or t.startswith("xpdctl.")]


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def import_graph() -> dict[str, list[tuple[str, int]]]:
    modules = source_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_every_package_has_a_layer():
    unplaced = sorted({top(m) for m in source_modules() if not m.endswith("__main__")} - set(LAYER_OF))
    assert not unplaced, f"give {unplaced} a layer in tests/test_layering.py and DEVELOPERS.md"


def violations(graph: dict[str, list[tuple[str, int]]]) -> list[str]:
    wrong = []
    for module, imported in graph.items():
        if module.endswith(".__main__"):
            continue  # `python -m` entry points sit above everything, as the CLI does
        for target, line in imported:
            low, high = top(target), top(module)
            if low != high and LAYER_OF.get(low, -1) >= LAYER_OF.get(high, -1):
                wrong.append(f"{module.replace('.', '/')}.py:{line} imports {target} "
                             f"(layer {LAYER_OF.get(low)} >= {high}'s {LAYER_OF.get(high)})")
    return wrong


def test_packages_import_only_lower_layers():
    wrong = violations(import_graph())
    assert not wrong, "imports against the layering (DEVELOPERS.md, Layering):\n" + "\n".join(wrong)


def module_edges(imports: dict[str, list[tuple[str, int]]]) -> dict[str, set[str]]:
    """Importing ``a.b.c`` from outside ``a.b`` runs ``a.b``'s ``__init__`` first, so that import
    counts as one of the package too."""
    graph: dict[str, set[str]] = {}
    for module, imported in imports.items():
        edges = graph.setdefault(module, set())
        for target, _ in imported:
            edges.add(target)
            parent = target.rpartition(".")[0]
            while parent.count(".") >= 1 and not (module + ".").startswith(parent + "."):
                edges.add(parent)
                parent = parent.rpartition(".")[0]
    return graph


def test_no_import_cycles():
    """Between modules, function-level imports included."""
    cycles = _cycles(module_edges(import_graph()))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of two or more modules (Tarjan), each as a list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
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
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph) + 100))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


# Runs in a fresh interpreter: it imports the third-party libraries xpdctl imports at module level
# (none of xpdctl), then forks one child per module, each importing just that module. The children
# start without any xpdctl module loaded, which is what "on its own" means here, without paying
# every library's import again per module.
_EACH = r"""
import ast, importlib, os, sys, traceback
modules = sys.argv[1:]
for lib in sys.stdin.read().split():
    try:
        importlib.import_module(lib)
    except Exception:
        pass
assert not [m for m in sys.modules if m == "xpdctl" or m.startswith("xpdctl.")]
running, failed = {}, []
def reap():
    pid, status = os.wait()
    module, r = running.pop(pid)
    said = os.read(r, 1 << 16).decode(errors="replace")
    os.close(r)
    if status:
        failed.append(f"{module}:\n{said}")
for module in modules:
    while len(running) >= max(2, os.cpu_count() or 2):
        reap()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            importlib.import_module(module)
        except BaseException:
            os.write(w, traceback.format_exc()[-3000:].encode())
            os._exit(1)
        os._exit(0)
    os.close(w)
    running[pid] = (module, r)
while running:
    reap()
print("\n".join(failed))
sys.exit(1 if failed else 0)
"""


def _module_level_libraries(modules: dict[str, Path]) -> set[str]:
    libs = set()
    for path in modules.values():
        for node in ast.parse(path.read_text()).body:
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else [])
            libs |= {n.split(".")[0] for n in names}
    return {lib for lib in libs if lib != "xpdctl" and lib not in sys.stdlib_module_names}


def test_every_module_imports_on_its_own():
    modules = source_modules()
    # A module that runs something when imported (`python -m` entry points) is imported by its package only.
    names = [m for m in modules if not m.endswith(".__main__")]
    done = subprocess.run([sys.executable, "-c", _EACH, *names], input=" ".join(sorted(_module_level_libraries(modules))),
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, f"modules that fail to import on their own:\n{done.stdout}{done.stderr}"


def test_the_checks_read_function_level_imports(tmp_path):
    """A cycle and an upward import, both hidden in functions, fail the checks."""
    inventory = tmp_path / "xpdctl" / "inventory" / "probe.py"
    deploy = tmp_path / "xpdctl" / "deploy" / "where.py"
    inventory.parent.mkdir(parents=True)
    deploy.parent.mkdir(parents=True)
    inventory.write_text("def f():\n    from xpdctl.deploy.where import runs_locally\n")
    deploy.write_text("def g():\n    if True:\n        import xpdctl.inventory.probe\n")
    graph = {"xpdctl.inventory.probe": imports_of("xpdctl.inventory.probe", inventory, {}),
             "xpdctl.deploy.where": imports_of("xpdctl.deploy.where", deploy, {})}
    assert violations(graph) == ["xpdctl/inventory/probe.py:2 imports xpdctl.deploy.where (layer 10 >= inventory's 3)"]
    assert ["xpdctl.deploy.where", "xpdctl.inventory.probe"] in _cycles(module_edges(graph))
