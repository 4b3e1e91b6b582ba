"""The shape of core, checked: no import cycle (imports inside functions count too), the library never
imports a stage, the TUI's modules never import torch, and no function in core is longer than a screen."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_FUNCTION_LINES = 80


def modules(package: str) -> dict[str, Path]:
    out = {}
    for p in (ROOT / package).rglob("*.py"):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


CORE = modules("core")


def imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth (a lazy import inside a function is still an edge)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in CORE else node.module)
    return out


def graph() -> dict[str, set[str]]:
    return {name: {m for m in imports(p) if m in CORE and m != name} for name, p in CORE.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_core_has_no_import_cycle():
    g = graph()
    assert cycles(g) == []
    # the check itself sees a cycle when there is one
    assert cycles({**g, "core.errors": g["core.errors"] | {"core.runs"}}) != []


def test_the_library_never_imports_a_stage():
    upper = {"core", "core.cli", "core.runs", "core.docs"}  # the entry points that run stages
    library = [m for m in CORE if not m.startswith("core.stages") and m not in upper]
    g = graph()  # parsed once: it reads every module
    bad = {m: sorted(d for d in g[m] if d.startswith("core.stages")) for m in library}
    assert {m: d for m, d in bad.items() if d} == {}


def test_tui_never_imports_torch():
    """Every TUI module imported, torch is still not loaded: what the TUI reads from core is torch-free."""
    code = ("import importlib, sys\n"
            + "".join(f"importlib.import_module({m!r})\n" for m in sorted(modules("tui")))
            + "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_no_function_in_core_is_longer_than_a_screen():
    long = []
    for name, path in CORE.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {lines} lines")
    assert long == []
