"""Composition helpers of the switch process (switch.app wires them together).

What the composition root builds from the configuration, apart from the process itself:

- **snapshot sources** (`SnapshotSource`, the seam towards provisioning): `seed_source`,
  `static_source`, and `default_source` (the seed file, else an empty snapshot);
- **the runtime state** (`make_state`): in memory, or Redis for nodes that share it;
- **the proxy** (`make_proxy`): the real proxy with the routing policy and the `[proxy]`,
  `[media]` and `[routing]` sections; `MailboxCounts` gives MWI the voicemail counts;
- **small reads of the configuration and the snapshot**: `media_hosts` (the external
  media services, exempt from the flood guard), `any_recording` (start the media relay);
- **the garbage collector's tuning** (`tune_gc`), measured and explained there.
"""

from __future__ import annotations

import functools
import gc
import hmac
import ipaddress
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from media.ua.config import PROXY_KEYS
from media.voicemail import VoicemailStore
from provisioning.model import Snapshot
from provisioning.seed import load_seed
from switch.config import Config, resolve_secret
from switch.proxy.targets import FlowTokens
from switch.state.base import StateBackend
from switch.state.memory import MemoryState
from switch.state.redis import RedisState
from switch.tu import TransactionUser

if TYPE_CHECKING:
    from switch.app import SwitchApp

__all__ = [
    "MailboxCounts",
    "SnapshotSource",
    "any_recording",
    "default_source",
    "make_flow_tokens",
    "make_proxy",
    "make_state",
    "media_hosts",
    "seed_source",
    "static_source",
    "tune_gc",
]

log = logging.getLogger("switch.app")  # its lines name switch.app, as before the split

SnapshotSource = Callable[[], AsyncIterator[Snapshot]]
# Cyclic GC after start-up (see tune_gc): young-generation threshold in allocations.
_GC_THRESHOLDS = (2_000, 5_000, 100)


def seed_source(path: str | Path) -> SnapshotSource:
    """The seed file's snapshot, once."""

    async def source() -> AsyncIterator[Snapshot]:
        yield load_seed(path).snapshot()

    return source


def static_source(snapshot: Snapshot) -> SnapshotSource:
    async def source() -> AsyncIterator[Snapshot]:
        yield snapshot

    return source


def make_proxy(app: SwitchApp) -> TransactionUser:
    """The real proxy (switch/proxy/proxy.py) with the routing policy (routing.policy) and
    the `[proxy]` / `[media]` / `[routing]` sections of the configuration."""
    from routing.policy import decide
    from routing.settings import RoutingSettings
    from switch.proxy.proxy import Proxy, ProxyConfig

    extra = app.config.extra
    media = {k: v for k, v in extra.get("media", {}).items() if k in PROXY_KEYS}
    if app.media is not None:  # the embedded media service, with the secret it checks
        media = {"uri": app.media.uri, "secret": app.media_secret.decode()}
    proxy = Proxy(
        sender=app.core,
        snapshot=lambda: app.snapshot,
        state=app.state,
        authenticator=app.authenticator,
        metrics=app.metrics,
        config=ProxyConfig.from_sections(extra.get("proxy", {}), media),
        decide=functools.partial(
            decide,
            settings=RoutingSettings.from_section(extra.get("routing", {})),
            limits=app.config.outbound_limits(),
        ),
        guard=app.guard,
        limits=app.config.outbound_limits(),
        anchors=app.relay.anchors(app.metrics, app.core) if app.relay is not None else None,
        call_records=app.call_records,
        cdr_sink=app.cdr_sink,
        flow_tokens=app.flows,
        peers=app.peers,
    )
    proxy.calls.owner = app.call_owner
    return proxy


class MailboxCounts:
    """MWI's counts over the voicemail store the media service uses."""

    def __init__(self, store: VoicemailStore) -> None:
        self._store = store

    async def counts(self, tenant_id: str, mailboxes: tuple[str, ...]) -> tuple[int, int]:
        messages = await self._store.messages(tenant_id, mailboxes)
        new = sum(1 for m in messages if not m.heard)
        return new, len(messages) - new


def any_recording(snapshot: Snapshot) -> bool:
    """[recording] Does any number have the recording option?"""
    return any(n.options.recording for n in snapshot.numbers.values())


def media_hosts(config: Config) -> list[str]:
    """The address hosts of the configured external media services (`[media] uri`); names
    are left out (the flood guard takes addresses)."""
    from switch.proxy.diversion import MediaService

    uri = config.extra.get("media", {}).get("uri")
    if not uri:
        return []
    hosts = [u.host.strip("[]") for u in MediaService.parse(uri).uris]
    return [h for h in hosts if _is_address(h)]


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the call path once the process has started.

    Measured with tests/bench/profile_switch.py (300 calls/s): with the default thresholds
    the full collections scanned the whole start-up heap (snapshot, modules) plus every
    lingering transaction, ~150 ms each, ~15 % of the switch's CPU, and every one is a pause
    that retransmissions pile up behind. The start-up heap is moved to the permanent
    generation (gc.freeze: never scanned again; frozen objects are still freed by reference
    counting, only a cycle among them would outlive its use) and the young generation is
    collected every 2,000 allocations instead of 700 (see below). Calls no longer leave
    reference cycles behind (the proxy breaks them when a call ends; a GC probe found no
    cyclic garbage), so the
    older generations are collected rarely too: at 1,000 calls/s the default (10, 10) made
    ~1 middle-generation collection a second (up to 80 ms each) that freed nothing. Full
    collections still run (every 100 middle ones, and CPython's 1/4 rule), so a cycle that
    does appear is reclaimed eventually.

    The young threshold is 2,000, not 10,000 (issue 11, python_gc_pause_seconds at 500
    calls/s, 12 s runs): a young collection's pause grows with the objects it scans, and with
    10,000 each stopped the loop 2-10 ms (up to 50 ms on the busy 2-core machine), ~5 a
    second, a share of the INVITE->180 p99; with 2,000, ~25 a second, 90 % under 1 ms, none
    over 10 ms, for the same CPU per call (1.40-1.52 vs 1.46-1.47 CPU-ms). The middle
    threshold rises to 5,000 so that middle collections stay as rare as before (~every
    200 s)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLDS)


def make_flow_tokens(config: Config, *, workers: bool) -> FlowTokens:
    """The key of the flow tokens in our Record-Route and Path URIs (targets.FlowTokens).
    Nodes sharing a tenant base read each other's tokens (a BYE that reaches the wrong node,
    routeset.py): with `[auth] nonce_secret` set - which such nodes must share (README) - the
    key is derived from it. Else one key per data directory (a node's workers, and the same
    node after a restart), or, for a lone process, a random one."""
    if config.nonce_secret:
        return FlowTokens(hmac.digest(config.nonce_secret.encode(), b"flow-tokens", "sha256"))
    if workers:
        return FlowTokens(resolve_secret(None, config.data_dir, "flow-secret").encode())
    return FlowTokens()


def make_state(config: Config, *, node_id: str | None = None) -> StateBackend:
    """The runtime-state backend `state.url` names (validated by the config). `node_id`: the
    workers of one `serve` are one node (their connection ids are unique among them)."""
    if config.state_url == "memory":
        return MemoryState()
    state = RedisState(config.state_url, timeout=config.state_timeout, node_id=node_id)
    log.info("runtime state in redis, node id %s", state.node_id)  # not the URL: a password
    return state


def default_source(config: Config) -> SnapshotSource:
    if config.seed is not None:
        return seed_source(config.seed)
    return static_source(Snapshot.empty(realm=config.realm or "softswitch"))
