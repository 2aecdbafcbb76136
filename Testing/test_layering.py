"""Layering rules of CardiacLandmarksLib (issue 13), checked on the import statements of every module.

* the library imports no ``slicer``, ``qt``, ``ctk`` or ``vtk`` (the web app, ``web/``, may import trame and
  slicer-core);
* ``core`` imports nothing else of the library; ``io`` only ``core``;
* no run-time module imports ``training`` (only ``training`` itself, ``cli`` and ``evaluation`` may);
* nothing in the library imports ``cli`` (except ``cli`` itself and ``__main__`` entry points);
* no import cycles between modules (module-level imports; imports inside functions are lazy by intent but are
  checked against the layer rules too).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

LIB = Path(__file__).resolve().parents[1] / "CardiacLandmarksLib"
PKG = "CardiacLandmarksLib"
FORBIDDEN_TOP = {"slicer", "qt", "ctk", "vtk", "PythonQt", "slicerio_never"}
TASKS = {"sax", "lax", "perfusion", "function", "study", "batch", "web"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(LIB.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(imported module, at module level) for every import of ``path``; relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    mod = _module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    top_level = {id(n) for n in tree.body}
    for node in tree.body:  # `if TYPE_CHECKING:` blocks are not run-time imports
        if isinstance(node, ast.If):
            top_level.update(id(n) for n in node.body)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, id(node) in top_level) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            names = [name] + [f"{name}.{a.name}" for a in node.names]
            out += [(n, id(node) in top_level) for n in names]
    return out


def _modules():
    return {(_module_name(p)): p for p in LIB.rglob("*.py")}


def _layer(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_rules_hold_for_every_module():
    mods = _modules()
    problems = []
    for mod, path in sorted(mods.items()):
        layer = _layer(mod)
        for imp, _ in _imports(path):
            top = imp.split(".")[0]
            if top in FORBIDDEN_TOP and layer != "web":
                problems.append(f"{mod} imports {imp} (no slicer/qt/vtk in the library)")
            if top != PKG:
                continue
            target = _layer(imp)
            if layer == "core" and target not in ("core", ""):
                problems.append(f"{mod} (core) imports {imp}")
            if layer == "io" and target not in ("core", "io", ""):
                problems.append(f"{mod} (io) imports {imp}")
            if target == "training" and layer not in ("training", "cli", "evaluation"):
                problems.append(f"{mod} (run-time) imports {imp}")
            if target == "cli" and layer != "cli" and not mod.endswith("__main__"):  # entry points may
                problems.append(f"{mod} imports {imp} (nothing imports the CLI)")
            if layer in ("core", "io", "models", "confidence") and target in TASKS:
                problems.append(f"{mod} ({layer}) imports task package {imp}")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for imp, top_level in _imports(path):
            if not top_level:
                continue
            # the most specific module that exists (``from pkg import name`` may name a function)
            cand = imp
            while cand and cand not in mods:
                cand = cand.rsplit(".", 1)[0] if "." in cand else ""
            if cand and cand != mod and cand != PKG:
                graph[mod].add(cand)
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for n in sorted(graph[m]):
            visit(n)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("bad", ["import slicer\n", "from CardiacLandmarksLib.training import train_sax\n"])
def test_checker_catches_a_violation(tmp_path, monkeypatch, bad):
    """The checker itself fails on a planted violation (so the rule test can fail)."""
    pkg = tmp_path / PKG / "core"
    pkg.mkdir(parents=True)
    (tmp_path / PKG / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "bad.py").write_text(bad)
    monkeypatch.setattr(__import__(__name__), "LIB", tmp_path / PKG)
    with pytest.raises(AssertionError):
        test_rules_hold_for_every_module()


def _text_io_without_encoding(path: Path) -> list[str]:
    """``read_text``/``write_text`` calls and text-mode ``open`` calls of ``path`` that name no encoding."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        f, kws = node.func, {k.arg for k in node.keywords}
        if "encoding" in kws:
            continue
        if isinstance(f, ast.Attribute) and f.attr in ("read_text", "write_text"):
            out.append(f"{path.name}:{node.lineno} {f.attr}")
        elif (isinstance(f, ast.Name) and f.id == "open") or (
                isinstance(f, ast.Attribute) and f.attr == "open" and isinstance(f.value, ast.Name)
                and f.value.id not in ("os", "Image", "zipfile", "tarfile", "gzip", "webbrowser")):
            mode_args = node.args[1:2] if isinstance(f, ast.Name) else node.args[:1]
            mode = [a.value for a in mode_args if isinstance(a, ast.Constant)]
            mode += [k.value.value for k in node.keywords if k.arg == "mode" and isinstance(k.value, ast.Constant)]
            if not any("b" in str(m) for m in mode):
                out.append(f"{path.name}:{node.lineno} open")
    return out


def test_every_text_file_is_read_and_written_as_utf8():
    """The tool writes UTF-8; a read or write that names no encoding uses the locale's (cp1252 in Slicer on
    Windows, ASCII in a C locale) and garbles or refuses any non-ASCII text (test_outputs has the case). Every text
    I/O of the library and the Slicer module names its encoding."""
    modules = sorted(LIB.rglob("*.py")) + sorted((LIB.parent / "CardiacLandmarks").rglob("*.py"))
    assert len(modules) > 50
    offenders = [hit for path in modules for hit in _text_io_without_encoding(path)]
    assert offenders == []
