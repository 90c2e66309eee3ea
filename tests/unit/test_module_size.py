"""No module of the product grows past `MAX_LINES` (issue 7: "no module outside tests passes
~600 lines"). A module that does has more than one part in it: split it by what the parts
do (composition, not mixins), don't raise the limit. The exceptions below are temporary and
each names who removes it and when."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("switch", "routing", "billing", "media", "provisioning")
MAX_LINES = 600

# Modules allowed past the limit for now, each with who removes it and when (none today).
EXCEPTIONS: set[str] = set()


def _modules() -> dict[str, int]:
    sizes = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            with path.open(encoding="utf-8") as f:
                sizes[path.relative_to(ROOT).as_posix()] = sum(1 for _ in f)
    return sizes


SIZES = _modules()


def test_every_package_has_modules() -> None:
    """The walk finds the code (a wrong root would make every other check pass vacuously)."""
    for package in PACKAGES:
        assert any(name.startswith(f"{package}/") for name in SIZES), package
    assert "switch/transport/manager.py" in SIZES


@pytest.mark.parametrize("name", sorted(SIZES))
def test_module_is_at_most_600_lines(name: str) -> None:
    if name in EXCEPTIONS:
        pytest.skip(f"{name}: a temporary exception (see EXCEPTIONS)")
    assert SIZES[name] <= MAX_LINES, (
        f"{name} has {SIZES[name]} lines (limit {MAX_LINES}): split it by what its parts do"
    )


def test_exceptions_are_still_needed() -> None:
    """An exception whose module is gone or back under the limit is removed from the table."""
    for name in EXCEPTIONS:
        assert name in SIZES, f"{name} no longer exists: drop its exception"
        assert SIZES[name] > MAX_LINES, f"{name} is under {MAX_LINES} lines: drop its exception"
