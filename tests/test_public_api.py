"""The public API: every exported name resolves, every API page and every import the
documentation shows works, and ``import oatomo`` stays free of PyTorch and Numba."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

import oatomo

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

#: ``.. automodule:: oatomo.x`` and every other ``.. auto<kind>:: target`` directive.
AUTO_DIRECTIVE = re.compile(r"^[ \t]*\.\.[ \t]+auto(\w+)::[ \t]*([^\s:]\S*)", re.M)
#: Fenced code blocks of Markdown, and the indented body of reST code directives.
MD_FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
RST_CODE = re.compile(r"^\.\.\s+(?:code-block|code|sourcecode)::[^\n]*\n"
                      r"((?:[ \t]*\n|[ \t]+[^\n]*\n)*)", re.M)
RST_LITERAL = re.compile(r"::\s*\n\n((?:[ \t]+[^\n]*\n|[ \t]*\n)+)", re.M)
FROM_IMPORT = re.compile(r"\bfrom\s+(oatomo(?:\.\w+)*)\s+import\s+(\([^)]*\)|[\w ,*]+)")
PLAIN_IMPORT = re.compile(r"(?:^|[;\"'\s])import\s+(oatomo(?:\.\w+)*)")


def _doc_files(*patterns: str) -> list[Path]:
    return sorted(p for pattern in patterns for p in DOCS.rglob(pattern)
                  if "_build" not in p.parts)


def _auto_targets() -> list[tuple[str, str, str]]:
    """(file, directive kind, target) of every ``.. auto*:: target`` in docs/."""
    return [(p.name, kind, target) for p in _doc_files("*.rst", "*.md")
            for kind, target in AUTO_DIRECTIVE.findall(p.read_text())]


def _code_blocks(path: Path) -> list[str]:
    text = path.read_text()
    if path.suffix == ".rst":
        return RST_CODE.findall(text) + RST_LITERAL.findall(text)
    return MD_FENCE.findall(text)


def _doc_imports() -> list[tuple[str, str, tuple[str, ...]]]:
    """(file, module, names) of every ``import oatomo...`` / ``from oatomo... import ...``
    in the code blocks of README.md and docs/ (names empty for a plain import)."""
    found = []
    for path in [ROOT / "README.md", *_doc_files("*.md", "*.rst")]:
        for block in _code_blocks(path):
            for module, names in FROM_IMPORT.findall(block):
                parts = [n.strip().split(" as ")[0].strip()
                         for n in names.strip("()").replace("\n", ",").split(",")]
                found.append((path.name, module,
                              tuple(n for n in parts if n and not n.startswith("#"))))
            found += [(path.name, module, ()) for module in PLAIN_IMPORT.findall(block)]
    return sorted(set(found))


def _resolve(dotted: str) -> object:
    """The object a dotted name gives: the longest importable module, then attributes."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError as exc:
            if exc.name is not None and not dotted.startswith(exc.name):
                raise  # a dependency is missing, not the documented name
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


@pytest.mark.parametrize("name", oatomo.__all__)
def test_every_exported_name_resolves(name):
    assert getattr(oatomo, name) is not None
    assert name in dir(oatomo)


def test_subpackage_exports_resolve():
    for package in ("oatomo.learn", "oatomo.validation.cmnist", "oatomo.io",
                    "oatomo.calibration", "oatomo.pipeline", "oatomo.volume"):
        module = importlib.import_module(package)
        for name in getattr(module, "__all__", ()):
            assert getattr(module, name) is not None, f"{package}.{name}"


@pytest.mark.parametrize("where,kind,target", _auto_targets() or [pytest.param(
    "-", "-", "-", marks=pytest.mark.skip(reason="no .. auto*:: directive in docs/"))])
def test_api_pages_import(where, kind, target):
    _resolve(target)


def test_documented_imports_are_found():
    found = {(where, module) for where, module, _ in _doc_imports()}
    assert ("README.md", "oatomo.recon.autofocus") in found
    assert ("refine.rst", "oatomo.refine") in found  # docs/guide, an indented reST block


@pytest.mark.parametrize("where,module,names", _doc_imports())
def test_documented_imports_resolve(where, module, names):
    mod = importlib.import_module(module)
    for name in names:
        if name == "*":
            continue
        if not hasattr(mod, name):  # a submodule: ``from oatomo.recon import autofocus``
            importlib.import_module(f"{module}.{name}")


def test_import_oatomo_is_free_of_torch_and_numba():
    code = ("import sys, oatomo\n"
            "heavy = sorted({'torch', 'numba'} & set(sys.modules))\n"
            "assert not heavy, heavy\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
