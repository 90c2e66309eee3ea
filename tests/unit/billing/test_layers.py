"""The package's contract, checked on its source: billing is pure (no asyncio, no I/O, no
clock), imports only the standard library, itself, `routing` and `provisioning.model`, and
nothing in routing/ or provisioning/ imports billing. `provisioning.records` is allowed for the
call detail record (`CallRecord`), which the provisioning store keeps and billing builds and
rates (pure values, like `provisioning.model`)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
BILLING = sorted((ROOT / "billing").glob("*.py"))
ALLOWED_PROJECT = ("billing", "routing", "provisioning.model", "provisioning.records")
FORBIDDEN_STDLIB = {"asyncio", "socket", "time", "subprocess", "os", "random", "sqlite3"}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def _imports(path: Path) -> list[str]:
    """Absolute names of every import; a relative import is of the file's own package."""
    own = path.relative_to(ROOT).parts[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(own if node.level else node.module or "")
    return names


def test_the_package_has_modules() -> None:
    assert len(BILLING) >= 8


@pytest.mark.parametrize("path", BILLING, ids=lambda p: p.name)
def test_billing_imports_only_what_it_may(path: Path) -> None:
    for name in _imports(path):
        top = name.split(".")[0]
        if top in sys.stdlib_module_names:
            assert top not in FORBIDDEN_STDLIB, f"{path.name} imports {name}"
        else:
            assert name.startswith(ALLOWED_PROJECT), f"{path.name} imports {name}"


@pytest.mark.parametrize("path", BILLING, ids=lambda p: p.name)
def test_billing_reads_no_clock(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            assert node.func.attr not in CLOCK_CALLS, f"{path.name}:{node.lineno} reads a clock"


@pytest.mark.parametrize("package", ["routing", "provisioning"])
def test_nothing_below_imports_billing(package: str) -> None:
    for path in sorted((ROOT / package).rglob("*.py")):
        assert not any(n.split(".")[0] == "billing" for n in _imports(path)), path
