"""The layer contract of the whole code base, checked by walking every module's imports (an ast
walk: nothing is imported or executed) against the table below. Arrows only point down:

    composition root   switch.app, switch.wiring (its helpers), switch.node, switch.cli*,
                       switch.config, switch.prompt_source,
                       switch.workers (worker processes),
                       switch.cdr_writer, switch.relaying, switch.recordings, switch.live,
                       switch.__main__                               (may import anything)
                       (the writer's parts: switch.cdr_metrics, the data and the writer's
                       type; switch.cdr_spool, a leaf)
    media user agent   media.ua.*      | media relay  media.relay.*
    proxy, MWI         switch.proxy.*, switch.mwi (the proxy's digest check and paths)
    transport          switch.transport.*
    billing            billing.*       (rating: pure)
    routing            routing.*       (policy: pure)
    runtime state      switch.state.*
    shared seams       switch.tu, switch.handoff, switch.eager, switch.metrics
    media blocks       media.*  (sans-IO: SDP, RTP, G.711, DTMF, prompts …)
    SIP core           switch.sip.*    (a leaf: the standard library only)
    provisioning       provisioning.*  (the data: a leaf towards every other package)

Type-only imports (under `if TYPE_CHECKING:`) count too: they are dependencies all the same.
A new upward arrow fails this test; a legitimate new one is added to the table on purpose.
The package-internal layers of provisioning and media have their own finer tests
(tests/unit/provisioning/test_layers.py, tests/unit/media/test_layering.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("switch", "routing", "media", "provisioning", "billing")

SEAMS = ("switch.tu", "switch.handoff", "switch.eager", "switch.metrics")
DATA = ("provisioning.model", "provisioning.records", "provisioning.rules")

# module prefix -> the project module prefixes it may import (besides itself). Most specific
# prefix wins.
CONTRACT: dict[str, tuple[str, ...]] = {
    "switch.sip": (),
    "switch.handoff": (),
    "switch.eager": (),
    "switch.metrics": (),
    "switch.tu": ("switch.sip",),
    "switch.state": ("switch.sip", "switch.tu"),
    "switch.transport": ("switch.sip", "switch.tu", "switch.eager", "switch.metrics"),
    "provisioning": (),
    "routing": ("provisioning.model",),
    "billing": ("routing", *DATA),
    "switch.proxy": ("switch.sip", *SEAMS, "switch.state", "routing", "billing", *DATA),
    "switch.mwi": (
        "switch.sip",
        *SEAMS,
        "switch.state",
        "switch.proxy.auth",
        "switch.proxy.bans",
        "switch.proxy.targets",  # a NOTIFY to a device another node holds goes by its path
        *DATA,
    ),
    "media": DATA,
    "media.ua": ("media", "switch.sip", "switch.transport", *SEAMS, *DATA),
    "media.relay": ("media", "switch.eager", *DATA),
    # the composition root
    "switch.app": PACKAGES,
    "switch.wiring": PACKAGES,
    "switch.node": PACKAGES,
    "switch.live": PACKAGES,
    "switch.cli": PACKAGES,
    "switch.cli_provisioning": PACKAGES,
    "switch.cli_media": PACKAGES,
    "switch.cli_relay": PACKAGES,
    "switch.relaying": PACKAGES,
    "switch.recordings": PACKAGES,
    "switch.config": PACKAGES,
    "switch.prompt_source": PACKAGES,
    "switch.cdr_writer": PACKAGES,
    "switch.cdr_metrics": ("switch.cdr_writer", *DATA),
    "switch.cdr_spool": (),
    "switch.workers": PACKAGES,
    "switch.__main__": PACKAGES,
    "switch": (),  # the package itself (switch/__init__.py)
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _layer(module: str) -> str:
    best = ""
    for prefix in CONTRACT:
        if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
            best = prefix
    assert best, f"{module} is in no layer of the contract: add it to the table"
    return best


def _imports(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _allowed(layer: str, target: str) -> bool:
    if target == layer or target.startswith(layer + "."):
        return True
    return any(target == a or target.startswith(a + ".") for a in CONTRACT[layer])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_only_downwards(module: str) -> None:
    layer = _layer(module)
    wrong = sorted(t for t in _imports(module, MODULES[module]) if not _allowed(layer, t))
    assert not wrong, f"{module} (layer {layer}) imports {wrong}: an upward or sideways arrow"


def test_the_walk_sees_real_imports() -> None:
    # a walk that found nothing would pass vacuously
    assert "switch.sip.message" in _imports("switch.proxy.proxy", MODULES["switch.proxy.proxy"])
    assert _layer("switch.sip.parser") == "switch.sip"
    assert not _allowed("switch.sip", "switch.proxy.proxy")
    assert not _allowed("provisioning", "switch.config")
    assert _allowed("switch.proxy", "routing.decisions")
