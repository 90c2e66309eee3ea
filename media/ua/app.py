"""A media endpoint: its own SIP listener, transaction layer and the media user agent
(media/ua/agent.py) as the only transaction user, plus the RTP port range. The composition
root of the media side, used two ways:

- embedded (the default of `softswitch serve`): the switch starts one on an ephemeral port of
  its SIP host, shares its metrics registry, and points the proxy's `[media] uri` at it, with
  a generated shared secret; nothing to configure;
- standalone (`softswitch media`): a process of its own, which a deployment runs several of
  and lists in the proxy's `[media] uri` (the proxy spreads calls over them).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from switch.metrics import Metrics
from switch.sip.transaction import TransactionLayer
from switch.sip.transitions import Timers
from switch.transport.endpoint import SipEndpoint
from switch.transport.manager import TransportManager, TransportSettings

from ..metrics import MediaMetrics
from .agent import MediaAgent, MediaSettings
from .services import ServiceDeps, services

__all__ = ["MediaApp"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaListen:
    host: str = "127.0.0.1"
    port: int = 0  # 0: an ephemeral port (the embedded default)


class MediaApp:
    """`await start()`, then `uri` is where hand-offs go; `await stop()`."""

    def __init__(
        self,
        *,
        listen: MediaListen,
        settings: MediaSettings,
        deps: ServiceDeps,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.listen = listen
        self.settings = settings
        self.deps = deps
        self.registry = registry or CollectorRegistry()
        self.metrics = MediaMetrics(self.registry)
        self.address: tuple[str, int] | None = None

    @property
    def uri(self) -> str:
        assert self.address is not None, "not started"
        host, port = self.address
        return f"sip:media@{f'[{host}]' if ':' in host else host}:{port}"

    async def start(self) -> None:
        self.sip_metrics = sip_metrics = Metrics()  # the media hop's own SIP counters
        self.endpoint = SipEndpoint(TransactionLayer(Timers()), sip_metrics)
        # The proxies hand calls over at the service's own rate (a hand-off, an ACK and a BYE
        # per call): their addresses are exempt from the per-source flood limit; a media
        # service open to anyone (no allowed_sources) keeps it.
        self.transports = TransportManager(self.endpoint, sip_metrics, TransportSettings())
        self.transports.set_exempt(sorted(self.settings.allowed_sources or ()))
        await self.transports.start((self.listen.host, self.listen.port), None, None)
        self.endpoint.attach(self.transports)
        deps = dataclasses.replace(self.deps, on_event=self.metrics.count)
        self.agent = MediaAgent(
            sender=self.endpoint, settings=self.settings, service_for=services(deps),
            metrics=self.metrics,
        )  # fmt: skip
        self.endpoint.users.default = self.agent
        self.address = self.transports.bound["udp"]
        log.info("media listening on %s", self.uri)

    async def stop(self) -> None:
        for call in list(self.agent.calls.values()):
            call.hangup("shutdown")
        await self.transports.close()
        self.endpoint.close()
