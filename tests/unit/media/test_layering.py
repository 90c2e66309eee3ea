"""The media building blocks are sans-IO: no asyncio, no imports from the switch's packages."""

from __future__ import annotations

import ast
from pathlib import Path

import media

MEDIA = Path(media.__file__).parent
FORBIDDEN = {"asyncio", "uvloop", "aiohttp", "switch", "routing", "provisioning", "threading"}
# The pure records and limits of the data layer below media may be used (no I/O in them).
ALLOWED_BELOW = {"provisioning.records", "provisioning.rules", "provisioning.model"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and node.module
            and node.module not in ALLOWED_BELOW
        ):
            names.add(node.module.split(".")[0])
    return names


def test_media_modules_import_no_io_framework_and_no_upper_layer() -> None:
    modules = sorted(MEDIA.glob("*.py"))
    assert len(modules) >= 12
    offenders = {p.name: _imports(p) & FORBIDDEN for p in modules if _imports(p) & FORBIDDEN}
    assert offenders == {}


def test_the_check_would_catch_an_asyncio_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio.events\nfrom switch.sip import parser\n")
    assert _imports(bad) & FORBIDDEN == {"asyncio", "switch"}
