"""The package's shape: what imports what.

* the analysis never imports the lap simulator (corner files are track data in
  :mod:`pitbox.tracks`, which imports neither), checked by importing every analysis module
  in a fresh interpreter and by reading every import statement;
* no import cycle anywhere in ``pitbox`` (imports inside functions count) and no module
  reaching into another's private names;
* ``import pitbox`` and ``import pitbox.analysis`` stay light: plotly, scipy and scikit-learn
  come in only when a figure, a report or a fit needs them; ``pitbox`` gives ``__version__``
  from the installed package's metadata and its main entry points on first use.
"""

from __future__ import annotations

import ast
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import pitbox

PKG = Path(pitbox.__file__).resolve().parent
ROOT = PKG.parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}


def _imports(name: str, path: Path) -> tuple[set[str], list[str]]:
    """Every pitbox module ``name`` imports (top level or inside functions), and its uses of
    another module's private names (``from m import _x`` or ``alias._x``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    private: list[str] = []
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                found.add(a.name)
                if a.asname:
                    aliases[a.asname] = a.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{up}.{base}" if base else up
            for a in node.names:
                full = f"{base}.{a.name}"
                found.add(full if full in MODULES else base)
                if full in MODULES:
                    aliases[a.asname or a.name] = full
                elif a.name.startswith("_") and base.startswith("pitbox") and base != name:
                    private.append(f"{name}: from {base} import {a.name}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("pitbox."):
            found.add(node.value)  # importlib.import_module("pitbox.x")
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            private.append(f"{name}: {node.value.id}.{node.attr} ({aliases[node.value.id]})")
    return {m for m in found if m.startswith("pitbox")}, private


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _run(code: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_analysis_never_imports_the_simulator_static() -> None:
    neutral = [n for n in MODULES if n.startswith("pitbox.analysis") or n == "pitbox.tracks"]
    assert len(neutral) > 15
    bad = {n: sorted(m for m in GRAPH[n][0] if m == "pitbox.sim" or m.startswith("pitbox.sim."))
           for n in neutral}
    assert not {n: m for n, m in bad.items() if m}


def test_analysis_never_imports_the_simulator_at_run_time() -> None:
    """Every analysis module imported in a fresh interpreter: pitbox.sim is never loaded,
    and neither are plotly, scipy nor scikit-learn by ``import pitbox.analysis`` alone."""
    code = (
        "import json, sys, importlib, pkgutil\n"
        "import pitbox.analysis as pa\n"
        "light = sorted(m for m in ('plotly', 'scipy', 'sklearn', 'pitbox.sim') if m in sys.modules)\n"
        "for m in pkgutil.walk_packages(pa.__path__, 'pitbox.analysis.'):\n"
        "    importlib.import_module(m.name)\n"
        "import pitbox.tracks\n"
        "print(json.dumps({'light': light, 'sim': sorted(m for m in sys.modules if m.startswith('pitbox.sim')),"
        " 'plotly': 'plotly' in sys.modules}))\n"
    )
    res = _run(code)
    assert res["light"] == [], f"import pitbox.analysis loaded {res['light']}"
    assert res["sim"] == []
    assert res["plotly"]  # the figures module was imported above and needs it: the probe can fail


def test_no_import_cycles() -> None:
    edges = {n: {m for m in GRAPH[n][0] if m in MODULES and m != n} for n in MODULES}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
                cycles.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    assert not cycles


def test_no_private_access_across_modules() -> None:
    found = [p for _, priv in GRAPH.values() for p in priv]
    assert not found


def test_pitbox_gives_version_and_entry_points_lazily() -> None:
    code = (
        "import json, sys\n"
        "import pitbox\n"
        "heavy = sorted(m for m in ('numpy', 'pandas', 'pyarrow', 'plotly') if m in sys.modules)\n"
        "v = pitbox.__version__\n"
        "from pitbox.store import Store\n"
        "from pitbox.analysis import load_session\n"
        "from pitbox.ibt import open_telemetry\n"
        "same = [pitbox.Store is Store, pitbox.load_session is load_session, pitbox.open_telemetry is open_telemetry]\n"
        "print(json.dumps({'heavy': heavy, 'version': v, 'same': same, 'dir': 'load_session' in dir(pitbox)}))\n"
    )
    res = _run(code)
    assert res["heavy"] == []
    assert res["version"] == importlib.metadata.version("pitbox")
    assert res["same"] == [True, True, True] and res["dir"]
