"""What a test needs from outside the repository (a peer program, the shared conformance kit)
and what happens when it is missing.

Under `make test` (which sets SOFTSWITCH_REQUIRE_PEERS=1 after installing the peers) a
missing peer is a loud failure: a fresh clone must never pass by skipping what it could not
run. A developer running `pytest` by hand on a machine without them gets a skip that says
what is missing. Call `need()` from a test or a (module-scoped, autouse) fixture.
"""

from __future__ import annotations

import os

import pytest

REQUIRED = os.environ.get("SOFTSWITCH_REQUIRE_PEERS") == "1"


def need(present: bool, what: str) -> None:
    if present:
        return
    if REQUIRED:
        pytest.fail(f"{what} is missing (make test installs it / expects it)", pytrace=False)
    pytest.skip(f"{what} is missing")
