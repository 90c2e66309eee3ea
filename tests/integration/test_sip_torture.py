"""The RFC 4475 / RFC 5118 torture kit over TCP against the switch (the fast pass, ~15 s).

The kit lives outside the repository (../shared/conformance/sip-torture from the repository
root, or $TORTURE_KIT); without it the test is skipped. `scripts/torture.sh` runs both the
UDP pass (~2 min) and this one by hand.

Threshold: every row. The UDP pass already scores 61/61 against the switch, and the kit's TCP
mode relaxes the rows whose framing is undefined on a stream (inv2543 becomes may-reject;
clerr/ncl/mcl01/baddn may go unanswered), so a TCP failure is a transport bug, not a kit
artefact.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers import need

from .harness import REPO

pytestmark = pytest.mark.integration

KIT = Path(os.environ.get("TORTURE_KIT", REPO.parent / "shared" / "conformance" / "sip-torture"))


@pytest.mark.timeout(120)
def test_torture_kit_over_tcp(switch_proc):
    need((KIT / "run_torture.py").exists(), f"the SIP torture kit at {KIT}")
    demo_seed = (REPO / "deploy" / "demo-seed.toml").read_text()
    sw = switch_proc(demo_seed)
    proc = subprocess.run(
        [
            sys.executable,
            str(KIT / "run_torture.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(sw.sip_port),
            "--transport",
            "tcp",
        ],
        capture_output=True,
        text=True,
        timeout=100,
        cwd=KIT,
    )
    out = proc.stdout + proc.stderr
    m = re.search(r"torture: (\d+) passed, (\d+) failed", out)
    assert m, f"no summary from the torture runner (exit {proc.returncode})\n{out[-4000:]}"
    passed, failed = int(m.group(1)), int(m.group(2))
    fails = [ln for ln in out.splitlines() if re.search(r"\b(FAIL|not run)\b", ln)]
    assert failed == 0 and passed == 61 and proc.returncode == 0, (
        f"torture over TCP: {passed} passed, {failed} failed\n"
        + "\n".join(fails)
        + "\n"
        + sw.logs()
    )
    assert sw.alive(), sw.logs()
