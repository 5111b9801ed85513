"""The package's layering: imports only go down.

    common, _C, kernels  ->  ops  ->  model  ->  job support (checkpoints, data, imaging, ...)
      ->  render  ->  shapes, evaluate, invert  ->  training  ->  cli

Two checks: every import statement in the source (module level and inside functions, relative ones
resolved) points to the same layer or one below, with no cycle between modules; and every module
imports with all the layers above it blocked, which also catches imports made by name at run time.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Bottom to top; a module belongs to the layer of its longest matching prefix.
LAYERS = [
    ("shared", ("pigan", "pigan.common", "pigan._C", "pigan.kernels")),
    ("ops", ("pigan.ops",)),
    ("model", ("pigan.model", "pigan.siren", "pigan.generators", "pigan.discriminators", "pigan.curriculums")),
    ("job support", ("pigan.checkpoints", "pigan.released_pickle", "pigan.data", "pigan.imaging",
                     "pigan.logging_utils", "pigan.metrics")),
    ("render", ("pigan.render",)),
    ("jobs", ("pigan.shapes", "pigan.evaluate", "pigan.invert", "pigan.encoder")),
    ("training", ("pigan.training",)),
    ("cli", ("pigan.cli", "pigan.__main__")),
]


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or (p != "pigan" and module.startswith(p + "."))) and len(p) > best:
                best, rank = len(p), i
    if rank is None:
        raise AssertionError(f"module {module} is in no layer of tests/test_layers.py: add it")
    return rank


def source_modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package (kernels/ is installed as pigan.kernels)."""
    found = {}
    for base, pkg in ((ROOT / "pigan", "pigan"), (ROOT / "kernels", "pigan.kernels")):
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([pkg, *parts])] = path
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules that ``name`` imports anywhere in its source."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # `from pkg import sub` imports the submodule pkg.sub when there is one
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        else:
            continue
        for t in targets:
            if t == "pigan" or t.startswith("pigan."):
                while t not in modules and "." in t:
                    t = t.rpartition(".")[0]
                if t != name:
                    out.add(t)
    return out


MODULES = source_modules()
GRAPH = {name: imports_of(name, path, MODULES) for name, path in MODULES.items()}


def test_every_module_has_a_layer():
    for name in MODULES:
        layer_of(name)


def test_imports_only_go_down():
    upward = [f"{name} ({LAYERS[layer_of(name)][0]}) imports {dep} ({LAYERS[layer_of(dep)][0]})"
              for name, deps in GRAPH.items() for dep in sorted(deps)
              if layer_of(dep) > layer_of(name) and not (name == "pigan" or dep.startswith(name + "."))]
    if upward:
        pytest.fail("upward imports:\n" + "\n".join(upward))


def _cycle(graph):
    """One cycle of ``graph`` as a list of names, or None."""
    state = {}

    def visit(n, stack):
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state:
                found = visit(m, stack)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n, [])
            if found:
                return found
    return None


def test_no_import_cycles():
    # A package importing its own submodules (to re-export them) is not a cycle between layers.
    graph = {n: {d for d in deps if not d.startswith(n + ".")} for n, deps in GRAPH.items()}
    cycle = _cycle(graph)
    if cycle:
        pytest.fail("import cycle: " + " -> ".join(cycle))


def test_only_the_command_line_uses_argparse():
    users = [name for name, path in MODULES.items() if layer_of(name) < layer_of("pigan.cli")
             and any(isinstance(n, (ast.Import, ast.ImportFrom)) and
                     ("argparse" in [a.name for a in n.names] if isinstance(n, ast.Import) else n.module == "argparse")
                     for n in ast.walk(ast.parse(path.read_text())))]
    if users:
        pytest.fail(f"argparse outside pigan.cli: {users}")


_BLOCKED_IMPORT = r"""
import importlib, sys
targets, blocked = sys.argv[1].split(","), sys.argv[2].split(",")

class Block:
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in blocked):
            raise ImportError(f"{name} is a layer above")
        return None

sys.meta_path.insert(0, Block())
for t in targets:
    try:
        importlib.import_module(t)
    except ImportError as exc:
        print(f"{t}: {exc}")
"""


@pytest.mark.parametrize("layer", range(len(LAYERS) - 1), ids=[n for n, _ in LAYERS[:-1]])
def test_each_layer_imports_with_the_layers_above_blocked(layer):
    above = sorted({p for i, (_, ps) in enumerate(LAYERS) if i > layer for p in ps})
    names = [n for n in MODULES if layer_of(n) == layer and n != "pigan"]
    r = subprocess.run([sys.executable, "-c", _BLOCKED_IMPORT, ",".join(names), ",".join(above)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.fail(r.stderr[-2000:])
    if r.stdout.strip():
        pytest.fail("imports of a layer above:\n" + r.stdout)
