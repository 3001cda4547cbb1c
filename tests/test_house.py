"""The house rules of the code base (issue 17), checked on every run of the suite.

- ruff check and ruff format --check pass on the whole tree;
- no module over ~400 lines unless its docstring says why ("Over 400 lines because ...");
- no module imports a private name (``_x``) from another module, tests included;
- ranking/ and retrieval/ import only the core (adprior.contracts / io / store, world) and themselves,
  never the command line or the nightly job; llm_predictor/ takes only contracts and io from adprior;
- the bottom floor (world/) imports no other package of the project.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT

PACKAGES = ("adprior", "llm_predictor", "ranking", "retrieval", "world", "feature_repo", "bench", "tests")
OWN = {"adprior", "llm_predictor", "ranking", "retrieval", "world", "bench", "tests", "feature_repo"}
MAX_LINES = 420  # "~400": a few lines of slack, not a second limit
LONG_REASON = "Over 400 lines because"


def _modules() -> list[Path]:
    skip = ROOT / "feature_repo" / "data"  # Feast's local registry and online store
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if skip not in p.parents)


def _ruff() -> list[str]:
    exe = Path(sys.executable).with_name("ruff")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("ruff")
    if found is None:
        pytest.fail("ruff is not installed: it is in the dev extra (pip install -e .[dev])")
    return [found]


def test_ruff_check_passes() -> None:
    res = subprocess.run([*_ruff(), "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_ruff_format_is_clean() -> None:
    res = subprocess.run([*_ruff(), "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


def test_no_module_over_400_lines_without_a_reason() -> None:
    long = []
    for p in _modules():
        if p.parts[len(ROOT.parts)] == "tests":
            continue  # test files follow the module they test
        text = p.read_text()
        n = text.count("\n")
        doc = ast.get_docstring(ast.parse(text)) or ""
        if n > MAX_LINES and LONG_REASON not in doc:
            long.append(f"{p.relative_to(ROOT)}: {n} lines")
    assert not long, (
        "modules over ~400 lines without '" + LONG_REASON + " ...' in their docstring:\n" + "\n".join(long)
    )


def _imports(p: Path) -> list[tuple[str, str, int]]:
    """(module, name, line) of every ``from X import name`` of a project module in ``p``."""
    out = []
    for node in ast.walk(ast.parse(p.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in OWN:
                out.extend((node.module, a.name, node.lineno) for a in node.names)
        elif isinstance(node, ast.Import):
            out.extend((a.name, "", node.lineno) for a in node.names if a.name.split(".")[0] in OWN)
    return out


def test_no_private_name_is_imported_across_modules() -> None:
    bad = [
        f"{p.relative_to(ROOT)}:{line}: from {mod} import {name}"
        for p in _modules()
        for mod, name, line in _imports(p)
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not bad, "private names imported from another module:\n" + "\n".join(bad)


@pytest.mark.parametrize("package", ["ranking", "retrieval"])
def test_consumers_import_only_the_core(package: str) -> None:
    allowed = ("adprior.contracts", "adprior.io", "adprior.progress", "adprior.store", "adprior.threads")
    allowed += ("world", package)
    if package == "retrieval":  # the simulated A/B test ranks its blended slate with the ranking models
        allowed += ("ranking.serve",)
    bad = [
        f"{p.relative_to(ROOT)}:{line}: {mod}"
        for p in sorted((ROOT / package).rglob("*.py"))
        for mod, name, line in _imports(p)
        if not any(mod == a or mod.startswith(a + ".") for a in allowed)
        and not (mod == "adprior" and name in ("contracts", "io", "progress", "store", "threads"))
    ]
    assert not bad, f"{package}/ imports beyond the core:\n" + "\n".join(bad)


def test_world_is_the_bottom_floor() -> None:
    bad = [
        f"{p.relative_to(ROOT)}:{line}: {mod}"
        for p in sorted((ROOT / "world").rglob("*.py"))
        for mod, _name, line in _imports(p)
        if mod.split(".")[0] != "world"
    ]
    assert not bad, "world/ imports other packages of the project:\n" + "\n".join(bad)


def test_llm_predictor_takes_only_the_core_from_adprior() -> None:
    core = ("adprior.contracts", "adprior.io", "adprior.progress", "adprior.threads")
    bad = [
        f"{p.relative_to(ROOT)}:{line}: {mod}"
        for p in sorted((ROOT / "llm_predictor").rglob("*.py"))
        for mod, name, line in _imports(p)
        if mod.split(".")[0] == "adprior"
        and mod not in core
        and not (mod == "adprior" and name in ("contracts", "io", "progress", "threads"))
    ]
    assert not bad, "llm_predictor/ imports adprior beyond its core:\n" + "\n".join(bad)
