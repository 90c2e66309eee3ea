"""The module layout of switch/sip: the names moved out of transaction.py, headers.py and
message.py are still importable from there (the same objects), and `target` is a leaf."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

# old module -> {name: the module it lives in now}
MOVED = {
    "switch.sip.transaction": {
        "AckReceived": "switch.sip.events",
        "Event": "switch.sip.events",
        "RequestReceived": "switch.sip.events",
        "ResponseReceived": "switch.sip.events",
        "SendMessage": "switch.sip.events",
        "StrayResponse": "switch.sip.events",
        "TransactionTerminated": "switch.sip.events",
        "TransactionTimeout": "switch.sip.events",
        "State": "switch.sip.transitions",
        "Timers": "switch.sip.transitions",
        "Target": "switch.sip.target",
        "new_branch": "switch.sip.target",
    },
    "switch.sip.headers": {
        "CSeq": "switch.sip.values",
        "NameAddr": "switch.sip.values",
        "Via": "switch.sip.values",
        "parse_cseq": "switch.sip.values",
        "parse_name_addr": "switch.sip.values",
        "parse_via": "switch.sip.values",
        "split_header_values": "switch.sip.values",
    },
    "switch.sip.message": {
        "CSeq": "switch.sip.values",
        "NameAddr": "switch.sip.values",
        "Via": "switch.sip.values",
        "parse_cseq": "switch.sip.values",
        "parse_name_addr": "switch.sip.values",
        "parse_via": "switch.sip.values",
        "split_header_values": "switch.sip.values",
        "Headers": "switch.sip.headers",
        "canonical_name": "switch.sip.headers",
    },
}
MODULES = [
    "switch.sip.events",
    "switch.sip.headers",
    "switch.sip.matching",
    "switch.sip.message",
    "switch.sip.target",
    "switch.sip.transaction",
    "switch.sip.transitions",
    "switch.sip.values",
]


@pytest.mark.parametrize(("old", "name"), [(o, n) for o, names in MOVED.items() for n in names])
def test_moved_names_are_reexported_as_the_same_objects(old: str, name: str) -> None:
    module = importlib.import_module(old)
    assert name in module.__all__
    new = importlib.import_module(MOVED[old][name])
    assert name in new.__all__
    assert getattr(module, name) is getattr(new, name)


@pytest.mark.parametrize("name", MODULES)
def test_every_exported_name_exists(name: str) -> None:
    module = importlib.import_module(name)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []


def test_target_is_a_leaf() -> None:
    """switch.state imports Target: it must not pull in the parser or the transaction layer."""
    code = (
        "import sys, switch.sip.target; "
        "print(sorted(m for m in sys.modules if m.startswith('switch.sip.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['switch.sip.target']"
