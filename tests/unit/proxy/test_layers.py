"""The proxy's layers as a contract: an ast walk over the imports of switch/proxy and routing
against a declared table. Imports under `if TYPE_CHECKING:` are for annotations only and
are not counted; everything else is, so a new dependency is a change to this table."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

# module of switch.proxy -> the switch.proxy modules it may import at run time
PROXY_LAYERS: dict[str, set[str]] = {
    "proxy": {
        "anchor", "auth", "bans", "cdrs", "config", "context", "dialogs", "execute", "forking",
        "leases", "messages", "outgoing", "routeset", "targets", "trunk", "usage",
    },
    "registrar": {"auth", "bans"},
    "execute": {"anchor", "diversion", "forking", "messages", "targets", "trunk"},
    "context": {"forking", "leases", "messages"},
    "outgoing": {"messages"},
    "config": {"dialogs", "diversion", "forking", "leases"},
    "dialogs": {"routeset", "targets"},
    "forking": {"branches", "forkphases"},
    "routeset": {"targets"},
    "branches": set(), "forkphases": set(), "messages": set(), "auth": {"bans"}, "trunk": set(),
    "bans": set(), "usage": set(),
    "leases": set(), "targets": set(), "diversion": set(), "anchor": set(), "cdrs": set(),
}  # fmt: skip

# routing is pure: its own modules, the provisioning model, the standard library
ROUTING_ALLOWED_PREFIXES = ("routing", "provisioning.model")


def _runtime_imports(path: Path) -> list[str]:
    """Absolute names of the modules imported outside `if TYPE_CHECKING:` blocks."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for inner in node.orelse:
                visit(inner)
        elif isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            names.append(base)
        else:
            for child in ast.iter_child_nodes(node):
                visit(child)

    visit(ast.parse(path.read_text()))
    return names


def test_every_proxy_module_is_in_the_table() -> None:
    modules = {p.stem for p in (ROOT / "switch" / "proxy").glob("*.py") if p.stem != "__init__"}
    assert modules == set(PROXY_LAYERS)


def test_proxy_modules_import_only_what_the_table_allows() -> None:
    for name, allowed in PROXY_LAYERS.items():
        path = ROOT / "switch" / "proxy" / f"{name}.py"
        used = {
            m.removeprefix("switch.proxy.")
            for m in _runtime_imports(path)
            if m.startswith("switch.proxy.")
        }
        assert used <= allowed, f"{name} imports {sorted(used - allowed)}"


def test_the_table_has_no_cycle_and_nothing_imports_the_proxy() -> None:
    seen: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def walk(name: str) -> None:
        assert seen.get(name) != 1, f"import cycle through {name}"
        if seen.get(name) == 2:
            return
        seen[name] = 1
        for dep in PROXY_LAYERS[name]:
            walk(dep)
        seen[name] = 2

    for name in PROXY_LAYERS:
        walk(name)
    assert not any("proxy" in deps for deps in PROXY_LAYERS.values())


def test_routing_imports_nothing_but_itself_the_model_and_the_standard_library() -> None:
    for path in (ROOT / "routing").glob("*.py"):
        for module in _runtime_imports(path):
            top = module.split(".")[0]
            ours = top in {"routing", "provisioning", "switch", "media"}
            if ours:
                assert module.startswith(ROUTING_ALLOWED_PREFIXES), f"{path.name}: {module}"


def test_the_walk_sees_imports() -> None:
    """The walk itself: relative imports resolve, TYPE_CHECKING blocks are skipped."""
    found = _runtime_imports(ROOT / "switch" / "proxy" / "execute.py")
    assert "switch.proxy.forking" in found and "routing.decisions" in found
    assert "switch.proxy.context" not in found  # only under TYPE_CHECKING
