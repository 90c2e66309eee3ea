"""MWI's unsolicited NOTIFY to a device another node holds goes through that node (its
path), as calls do; to a device of this node, straight to its flow. The notifier with the
demo seed (demo-desk rings on 03-5550-0100, which has voicemail), our own seams faked."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from provisioning.seed import load_seed
from switch.mwi import MwiNotifier
from switch.sip.digest import DigestAuthenticator
from switch.sip.message import Request
from switch.sip.target import Target
from switch.state.base import Binding
from switch.state.memory import MemoryState

DEMO = Path(__file__).resolve().parents[2] / "deploy" / "demo-seed.toml"
FLOW = Target("udp", "203.0.113.9", 40123)
PATH = "sip:f-token@10.0.0.2:5161;lr"


class Sender:
    def __init__(self) -> None:
        self.sent: list[tuple[Request, Target]] = []

    def local_via(self, transport: str) -> tuple[str, int]:
        return "10.0.0.1", 5060

    def local_uri(self, transport: str) -> Any:
        return None

    def send_request(self, request: Request, target: Target, user_data: object) -> Any:
        self.sent.append((request, target))


class Counts:
    async def counts(self, tenant_id: str, mailboxes: tuple[str, ...]) -> tuple[int, int]:
        return 2, 1


async def _notify(path: str | None) -> tuple[Request, Target]:
    snap = load_seed(DEMO).snapshot()
    sender, state = Sender(), MemoryState()
    binding = Binding(
        device_id="demo-desk", contact="sip:desk@192.168.1.20:5060", instance_id=None,
        expires_at=1e10, source=FLOW, call_id="r1", cseq=1, node="node-a", path=path,
    )  # fmt: skip
    await state.put_binding(binding)
    mwi = MwiNotifier(
        sender=sender, snapshot=lambda: snap, state=state, counts=Counts(),
        authenticator=DigestAuthenticator(realm=snap.realm, secret=b"s" * 32),
        registry=CollectorRegistry(),
    )  # fmt: skip
    mwi.registered(snap.devices["demo-desk"], [binding])
    for _ in range(20):
        await asyncio.sleep(0)
        if sender.sent:
            break
    assert len(sender.sent) == 1
    return sender.sent[0]


async def test_unsolicited_notify_goes_through_the_node_holding_the_flow() -> None:
    request, target = await _notify(PATH)
    assert target == Target("udp", "10.0.0.2", 5161)
    assert request.headers.get_all("Route") == [f"<{PATH}>"]
    assert request.uri == "sip:desk@192.168.1.20:5060" and b"Messages-Waiting: yes" in request.body


async def test_unsolicited_notify_to_a_flow_of_this_node_goes_straight_to_it() -> None:
    request, target = await _notify(None)
    assert target == FLOW and request.headers.get_all("Route") == []
