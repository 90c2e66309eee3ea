"""Carrier gateways (trunks), operator only (the `gateways` API resource)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from .. import fields
from ..errors import Conflict, NotFound
from ..model import Gateway
from ..store.base import Tx, utcnow_text
from ..store.queries import gateways
from .base import UNSET, Principal, StoreService, Unset, new_id

__all__ = ["GatewayInput", "GatewayService", "GatewayUpdate"]

Transport = Literal["udp", "tcp", "tls"]  # rules.TRANSPORTS
V = TypeVar("V")


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayInput:
    name: str
    host: str
    port: int = 5060
    transport: Transport = "udp"
    allowed_sources: Sequence[str] = ()  # IP addresses; empty = (host,)
    id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayUpdate:
    name: str | Unset = UNSET
    host: str | Unset = UNSET
    port: int | Unset = UNSET
    transport: Transport | Unset = UNSET
    allowed_sources: Sequence[str] | Unset = UNSET


def _pick(value: V | Unset, current: V) -> V:
    return current if isinstance(value, Unset) else value


class GatewayService(StoreService):
    __slots__ = ()

    async def create_gateway(self, principal: Principal, data: GatewayInput) -> Gateway:
        principal.require_operator()
        gw = fields.check_gateway(
            data.id or new_id("gw"),
            data.name,
            data.host,
            data.port,
            data.transport,
            data.allowed_sources,
        )
        async with self.store.write() as tx:
            if await gateways.exists(tx, gw.id):
                raise Conflict("id-taken", f"gateway id {gw.id!r} exists", {"id": gw.id})
            await gateways.save_gateway(tx, gw, utcnow_text(), insert=True)
        return gw

    async def get_gateway(self, principal: Principal, gateway_id: str) -> Gateway:
        principal.require_operator()
        async with self.store.read() as tx:
            return await _find(tx, gateway_id)

    async def list_gateways(self, principal: Principal) -> list[Gateway]:
        principal.require_operator()
        async with self.store.read() as tx:
            return await gateways.list_gateways(tx)

    async def update_gateway(
        self, principal: Principal, gateway_id: str, data: GatewayUpdate
    ) -> Gateway:
        principal.require_operator()
        async with self.store.write() as tx:
            old = await _find(tx, gateway_id)
            gw = fields.check_gateway(
                old.id,
                _pick(data.name, old.name),
                _pick(data.host, old.host),
                _pick(data.port, old.port),
                _pick(data.transport, old.transport),
                _pick(data.allowed_sources, old.allowed_sources),
            )
            await gateways.save_gateway(tx, gw, utcnow_text(), insert=False)
        return gw

    async def delete_gateway(self, principal: Principal, gateway_id: str) -> None:
        principal.require_operator()
        async with self.store.write() as tx:
            await _find(tx, gateway_id)
            await gateways.delete_gateway(tx, gateway_id)


async def _find(tx: Tx, gateway_id: str) -> Gateway:
    gw = await gateways.get_gateway(tx, gateway_id)
    if gw is None:
        raise NotFound("gateway", gateway_id)
    return gw
