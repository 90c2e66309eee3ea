"""Issue 10's definition of done: "a call made on `make run` shows up in the call history and the
month's statement with the right charge".

The switch is started as the Makefile's `run` target starts it (`softswitch serve --seed
deploy/demo-seed.toml --data DIR`, SQLite store, embedded media, CDRs on), after
`scripts/demo_info.py` printed its banner; the one difference is the listening ports (free
ones instead of 5060 and 8080, so that the test can share the machine), which the test puts
into the banner's SIPp command. Two calls:
1. the banner's carrier call, run as printed: nobody registered, so the contract number's
   voicemail answers it (inbound, free);
2. the demo app `demo-app` (the seed's password) calls a Tokyo landline through the demo
   gateway (127.0.0.2:5060, a SIPp UAS here) for about 2 s: an app's call, ¥20 per started
   30 s.
Then the history (operator token made by the CLI, as an operator would) has exactly these two
records and the open month's statement charges ¥20.
"""

from __future__ import annotations

import re
import shlex
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from .e2e_helpers import Api, operator_token
from .harness import REPO, SwitchProcess, free_port, tail

pytestmark = pytest.mark.integration

SEED = REPO / "deploy" / "demo-seed.toml"
GATEWAY = ("127.0.0.2", 5060)  # the demo seed's carrier gateway
APP, APP_PASSWORD = "demo-app", "app-secret-0100"


def banner_sipp_command() -> list[str]:
    """The carrier call `scripts/demo_info.py` prints for `make run` (as in the Makefile)."""
    out = subprocess.run(
        [str(REPO / ".venv" / "bin" / "python"), "scripts/demo_info.py", str(SEED)],
        cwd=REPO, capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    found = re.search(r"^\s*(sipp .*?\\\n.*)$", out, re.M)
    assert found, out
    return shlex.split(found.group(1).replace("\\\n", " "))


def gateway_port_free() -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(GATEWAY)
        except OSError:
            return False
    return True


@pytest.fixture
def demo(tmp_path: Path) -> Any:
    sip, http = free_port(), free_port()
    proc = SwitchProcess(
        tmp_path / "run", SEED.read_text(), tls=False, sip_port=sip,
        extra_args=["--http", f"127.0.0.1:{http}"],
    )  # fmt: skip
    # `make run`: --seed deploy/demo-seed.toml --data ./data (our copy of the seed is the same file)
    proc.start(timeout=20)
    try:
        yield proc
    finally:
        proc.stop()


def test_a_call_made_on_make_run_is_in_the_history_and_the_statement(
    demo: SwitchProcess, sipp: Any, tmp_path: Path
) -> None:
    if not gateway_port_free():
        pytest.fail(f"{GATEWAY[0]}:{GATEWAY[1]} (the demo seed's gateway) is in use")
    # 1. the banner's carrier call, with this switch's port
    argv = banner_sipp_command()
    assert argv[-1] == "127.0.0.1:5060" and argv[argv.index("-p") + 1] == "5070", argv
    argv[-1] = f"127.0.0.1:{demo.sip_port}"
    argv[argv.index("-p") + 1] = str(free_port("127.0.0.2"))
    argv += ["-nostdin", "-timeout", "30s", "-timeout_error"]
    ran = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0, ran.stdout[-3000:] + tail(demo.stderr_path)

    # 2. the demo app calls a landline through the demo gateway
    app_port = free_port()
    reg = sipp("register", remote=(demo.ip, demo.sip_port), local_port=app_port,
               credentials=[(APP, APP_PASSWORD)], keys={"expires": "300"},
               timeout_s=8).run()  # fmt: skip
    assert reg.successful == 1, reg.report()
    gw = sipp("uas", local_ip=GATEWAY[0], local_port=GATEWAY[1], calls=1, timeout_s=20,
              name="gateway").start()  # fmt: skip
    call = sipp("uac_auth_call", remote=(demo.ip, demo.sip_port), local_port=app_port, calls=1,
                rate=1, service="0312345678", auth=(APP, APP_PASSWORD), keys={"caller": APP},
                timeout_s=20, extra=["-d", "2000"]).run()  # fmt: skip
    gr = gw.wait()
    assert call.successful == 1 and gr.successful == 1, call.report() + gr.report()

    # the history and the statement, as an operator reads them
    api = Api(f"http://127.0.0.1:{demo.http_port}/v1", operator_token(data_dir=demo.data_dir))
    deadline = time.monotonic() + 10
    while len(items := api.get("/tenants/demo/calls").body["items"]) < 2:
        assert time.monotonic() < deadline, f"{items}\n{tail(demo.stderr_path)}"
        time.sleep(0.1)
    time.sleep(0.5)
    items = api.get("/tenants/demo/calls").body["items"]
    by_direction = {c["direction"]: c for c in items}
    assert len(items) == 2 and set(by_direction) == {"inbound", "outbound"}, items
    inbound, outbound = by_direction["inbound"], by_direction["outbound"]
    assert (inbound["outcome"], inbound["number"], inbound["caller"]) == (
        "voicemail", "+81355500100", "0312345678",
    ), inbound  # fmt: skip
    assert inbound["charge_tenths"] == 0, inbound
    assert (outbound["outcome"], outbound["caller_device"], outbound["caller_device_kind"]) == (
        "answered", APP, "app",
    ), outbound  # fmt: skip
    assert 2 <= outbound["billable_seconds"] <= 4 and outbound["charge_tenths"] == 200, outbound
    statement = api.get("/tenants/demo/statements/current").body
    assert statement["open"] is True, statement
    assert (statement["total"]["calls"], statement["total"]["charge_tenths"]) == (2, 200)
    assert statement["payable_yen"] == 20, statement
    (app_line,) = [d for d in statement["by_device"] if d["device_id"] == APP]
    assert app_line["total"]["charge_tenths"] == 200, app_line
