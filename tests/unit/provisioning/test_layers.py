"""The layers of `provisioning/`, checked by walking every module's imports (an ast walk, no
import executed) against the table below, and the places SQL may live.

    model layer   model, diff, credentials, records, errors     pure values, no I/O
    rules         rules, fields, phonebook_csv, seed            pure checks and parsing
    store         store.*  (store.queries.*: all the SQL)       the database seam
    services      services.*                                    rules + store, no HTTP
    api           api.*                                         HTTP over the services only
    glue          live, service (compatibility names)

Nothing in provisioning imports the switch: the composition root (the `serve` node and the
provisioning subcommands) lives in `switch/` (switch/node.py, switch/cli_provisioning.py).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import provisioning

ROOT = Path(provisioning.__file__).parent
COMPOSITION_ROOT: set[str] = set()

MODEL = {"model", "diff", "credentials", "records", "errors"}
RULES = MODEL | {"rules", "fields", "phonebook_csv", "seed"}
STORE = MODEL | {"rules", "fields", "store"}
SERVICES = RULES | {"store", "services"}
API = MODEL | {"rules", "fields", "services", "api"}
GLUE = SERVICES | {"live"}

# The first name after "provisioning." -> what a module there may import from provisioning.
ALLOWED: dict[str, set[str]] = {
    **{name: MODEL for name in MODEL},
    **{name: RULES for name in ("rules", "fields", "phonebook_csv", "seed")},
    "store": STORE,
    "services": SERVICES,
    "api": API,
    "live": GLUE,
}
# Libraries that mean I/O: never in the pure layers.
IO_LIBRARIES = {"asyncio", "aiohttp", "asyncpg", "aiosqlite", "sqlite3", "socket"}
PURE = MODEL | {"rules", "fields", "phonebook_csv"}
FOREIGN_PACKAGES = {"switch", "routing", "media"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Absolute names of every module `name` imports (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found |= {f"{target}.{alias.name}" for alias in node.names}
    return found


def _layer(name: str) -> str:
    return name.split(".")[1] if "." in name else ""


@pytest.mark.parametrize("name", sorted(set(MODULES) - COMPOSITION_ROOT - {"provisioning"}))
def test_module_imports_only_what_its_layer_may(name: str) -> None:
    allowed = ALLOWED[_layer(name)]
    imports = _imports(name, MODULES[name])
    wrong = sorted(
        i
        for i in imports
        if i.startswith("provisioning.") and _layer(i) not in allowed and i in MODULES
    )
    assert not wrong, f"{name} ({_layer(name)}) imports {wrong}"
    foreign = sorted(i for i in imports if i.split(".")[0] in FOREIGN_PACKAGES)
    assert not foreign, f"{name} imports {foreign}: provisioning does not import the switch"
    if _layer(name) in PURE:
        io = sorted(i for i in imports if i.split(".")[0] in IO_LIBRARIES)
        assert not io, f"{name} is pure but imports {io}"


_SQL = re.compile(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM)\b")


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n not in COMPOSITION_ROOT))
def test_sql_lives_in_the_store_only(name: str) -> None:
    if name.startswith("provisioning.store"):
        return
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    sql = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and id(n) not in docstrings
        and _SQL.search(n.value)
    ]
    assert not sql, f"{name} holds SQL: {sql[:2]}"


def test_the_checks_see_what_they_guard() -> None:
    # A walk that found nothing would pass vacuously: it sees real imports and real SQL.
    services_devices = _imports(
        "provisioning.services.devices", MODULES["provisioning.services.devices"]
    )
    assert "provisioning.store.queries.devices" in services_devices
    assert _SQL.search("SELECT 1 FROM tenants") and not _SQL.search("select a number")
