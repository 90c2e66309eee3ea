"""Carrier gateways (trunks): operator only."""

from __future__ import annotations

from typing import Any

from provisioning import rules
from provisioning.model import Gateway
from provisioning.services import GatewayInput, GatewayUpdate

from ..common import GATEWAY_ID, ident, updates
from ..core import Ctx, Operation, Reply
from ..schema import Array, Enum, Integer, Object, Ref, String

HOST = String(
    min_length=1,
    max_length=rules.HOST_MAX,
    pattern=r"[A-Za-z0-9.:\-\[\]]+",
    description="IP address or DNS name",
)
SOURCE = String(
    min_length=2,
    max_length=45,
    pattern=r"[0-9A-Fa-f.:]+",
    description="an IP address calls from the carrier come from",
)
TRANSPORT = Enum(list(rules.TRANSPORTS))
PORT = Integer(minimum=rules.PORT_RANGE[0], maximum=rules.PORT_RANGE[1])
NAME = String(min_length=1, max_length=rules.GATEWAY_NAME_MAX)
SOURCES = Array(SOURCE, max_items=rules.ALLOWED_SOURCES_MAX, unique=True)

GATEWAY = Ref(
    "Gateway",
    Object(
        {
            "id": String(),
            "name": String(),
            "host": String(),
            "port": Integer(),
            "transport": TRANSPORT,
            "allowed_sources": Array(String()),
        },
        required=("id", "name", "host", "port", "transport", "allowed_sources"),
    ),
)
GATEWAY_LIST = Ref("GatewayList", Object({"items": Array(GATEWAY)}, required=("items",)))
GATEWAY_INPUT = Object(
    {
        "id": ident("generated when absent"),
        "name": NAME,
        "host": HOST,
        "port": PORT,
        "transport": TRANSPORT,
        "allowed_sources": SOURCES,
    },
    required=("name", "host"),
)
GATEWAY_UPDATE = Object(
    {
        "name": NAME,
        "host": HOST,
        "port": PORT,
        "transport": TRANSPORT,
        "allowed_sources": SOURCES,
    },
    min_properties=1,
)


def render_gateway(g: Gateway) -> dict[str, Any]:
    return {
        "id": g.id,
        "name": g.name,
        "host": g.host,
        "port": g.port,
        "transport": g.transport,
        "allowed_sources": list(g.allowed_sources),
    }


async def list_gateways(ctx: Ctx) -> Reply:
    gateways = await ctx.services.gateways.list_gateways(ctx.principal)
    return Reply(200, {"items": [render_gateway(g) for g in gateways]})


async def create_gateway(ctx: Ctx) -> Reply:
    g = await ctx.services.gateways.create_gateway(ctx.principal, GatewayInput(**ctx.body))
    return Reply(201, render_gateway(g), {"Location": f"gateways/{g.id}"})


async def get_gateway(ctx: Ctx) -> Reply:
    g = await ctx.services.gateways.get_gateway(ctx.principal, ctx.path["gateway_id"])
    return Reply(200, render_gateway(g))


async def update_gateway(ctx: Ctx) -> Reply:
    g = await ctx.services.gateways.update_gateway(
        ctx.principal, ctx.path["gateway_id"], GatewayUpdate(**updates(ctx.body))
    )
    return Reply(200, render_gateway(g))


async def delete_gateway(ctx: Ctx) -> Reply:
    await ctx.services.gateways.delete_gateway(ctx.principal, ctx.path["gateway_id"])
    return Reply(204)


_G = {"gateway_id": GATEWAY_ID}

OPERATIONS = [
    Operation(
        method="GET",
        path="/gateways",
        handler=list_gateways,
        operation_id="listGateways",
        summary="List carrier gateways",
        tag="gateways",
        responses={200: GATEWAY_LIST},
        operator_only=True,
    ),
    Operation(
        method="POST",
        path="/gateways",
        handler=create_gateway,
        operation_id="createGateway",
        summary="Add a carrier gateway",
        tag="gateways",
        body=GATEWAY_INPUT,
        responses={201: GATEWAY},
        operator_only=True,
    ),
    Operation(
        method="GET",
        path="/gateways/{gateway_id}",
        handler=get_gateway,
        operation_id="getGateway",
        summary="Get a carrier gateway",
        tag="gateways",
        path_params=_G,
        responses={200: GATEWAY},
        operator_only=True,
    ),
    Operation(
        method="PATCH",
        path="/gateways/{gateway_id}",
        handler=update_gateway,
        operation_id="updateGateway",
        summary="Update a carrier gateway",
        tag="gateways",
        path_params=_G,
        body=GATEWAY_UPDATE,
        responses={200: GATEWAY},
        operator_only=True,
    ),
    Operation(
        method="DELETE",
        path="/gateways/{gateway_id}",
        handler=delete_gateway,
        operation_id="deleteGateway",
        summary="Remove a carrier gateway",
        tag="gateways",
        path_params=_G,
        responses={204: None},
        operator_only=True,
    ),
]
