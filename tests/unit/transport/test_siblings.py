"""Worker siblings (switch/transport/siblings.py) and the workers' pure parts
(switch/workers.py): relay envelopes, connection-id ownership, the worker count rules, the
merged metrics exposition, and the sockets the supervisor binds."""

from __future__ import annotations

import socket

import pytest

from switch.sip.target import Target
from switch.transport.siblings import RELAY, RELAY_FAILED, Siblings, bind_group
from switch.workers import WorkersError, check_workers, default_workers, merge_expositions

TOKEN = b"0123456789abcdef0123456789abcdef"


def siblings(index: int = 0, generation: int = 0) -> Siblings:
    return Siblings(
        index=index, generation=generation,
        private=(("127.0.0.1", 40001), ("127.0.0.1", 40002)), token=TOKEN,
        local_hosts=frozenset({"127.0.0.1"}),
    )  # fmt: skip


def test_connection_ids_name_their_worker_and_generation() -> None:
    first, restarted, other = siblings(1, 0), siblings(1, 1), siblings(0, 0)
    assert Siblings.owner(first.conn_base + 7) == 1
    assert Siblings.owner(other.conn_base + 7) == 0
    assert first.conn_base + 7 != restarted.conn_base + 7  # a dead worker's flow is not ours


def test_envelope_round_trip_and_refusals() -> None:
    s = siblings()
    target = Target("tcp", "192.0.2.9", 5070, s.conn_base + 3)
    data = s.envelope(RELAY, target) + b"INVITE sip:x SIP/2.0\r\n\r\n"
    assert s.open(data, ("127.0.0.1", 40002)) == (target, b"INVITE sip:x SIP/2.0\r\n\r\n")
    assert s.open(data, ("192.0.2.66", 40002)) is None  # not from a local address
    forged = data.replace(TOKEN, b"f" * 32)
    assert s.open(forged, ("127.0.0.1", 40002)) is None
    assert s.open(RELAY + TOKEN + b" tcp\r\n", ("127.0.0.1", 1)) is None
    failed = s.envelope(RELAY_FAILED, target)
    assert s.open(failed, ("127.0.0.1", 40002)) == (target, b"")


def test_sibling_ports() -> None:
    s = siblings(0)
    assert s.sibling_of_port(40002) == 1
    assert s.sibling_of_port(40001) is None  # our own
    assert s.sibling_of_port(5060) is None
    assert s.relay_address(1) == ("127.0.0.1", 40002)
    assert s.is_sibling(("127.0.0.1", 40002))
    assert not s.is_sibling(("127.0.0.1", 40001))  # ourselves
    assert not s.is_sibling(("192.0.2.1", 40002))  # not a local address


def test_worker_count_rules() -> None:
    assert default_workers("memory") == 1
    assert default_workers("redis://127.0.0.1:6379/0") >= 1
    check_workers(1, "memory")
    check_workers(4, "redis://127.0.0.1:6379/0")
    with pytest.raises(WorkersError, match="needs shared state"):
        check_workers(2, "memory")
    with pytest.raises(WorkersError, match="at least 1"):
        check_workers(0, "redis://127.0.0.1:6379/0")


def test_merged_exposition_labels_every_sample_with_its_worker() -> None:
    def text(n: float) -> str:
        return (
            "# HELP sip_calls_total Calls\n# TYPE sip_calls_total counter\n"
            f'sip_calls_total{{outcome="answered"}} {n}\n'
            "# HELP sip_calls_active Calls in progress\n# TYPE sip_calls_active gauge\n"
            f"sip_calls_active {n / 10}\n"
        )

    out = merge_expositions({0: text(5), 1: text(7)}, 3).decode()
    assert 'sip_calls_total{outcome="answered",worker="0"} 5.0' in out
    assert 'sip_calls_total{outcome="answered",worker="1"} 7.0' in out
    assert 'sip_calls_active{worker="1"} 0.7' in out
    assert out.count("# TYPE sip_calls_total counter") == 1  # one family, both workers
    assert "softswitch_workers 3.0" in out
    assert "softswitch_workers_scraped 2.0" in out


def test_bind_group_shares_one_port_and_gives_each_worker_its_own() -> None:
    group = bind_group("127.0.0.1", 0, 0, 2, 0)
    try:
        shared = {pb.udp.getsockname()[1] for pb in group}
        assert len(shared) == 1 and {pb.tcp.getsockname()[1] for pb in group} == shared
        tls = {pb.tls.getsockname()[1] for pb in group if pb.tls is not None}
        assert len(tls) == 1 and tls != shared
        private = [pb.private_udp.getsockname()[1] for pb in group]
        assert len(set(private)) == 2 and not set(private) & shared
        assert [pb.private_tcp.getsockname()[1] for pb in group] == private
        private_tls = {pb.private_tls.getsockname()[1] for pb in group if pb.private_tls}
        assert len(private_tls) == 2 and not private_tls & (shared | tls | set(private))
        for pb in group:
            assert pb.udp.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
    finally:
        for pb in group:
            for sock in (pb.udp, pb.tcp, pb.tls, pb.private_udp, pb.private_tcp, pb.private_tls):
                if sock is not None:
                    sock.close()
