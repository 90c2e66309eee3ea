"""The carrier trunk and the routing input: recognising the carrier, turning a request into
a `routing.call.Call` (routing itself then says which live state it needs: routing.needs),
and the identity rewrite of calls that leave the service.

Gateways: `Gateway.allowed_sources` holds IP address strings ("192.0.2.10"); an entry may also
be "ip:port" to trust only one source port of a carrier host ("192.0.2.10:5060"). A request
whose source matches is trusted as the carrier: it is not challenged and its
P-Asserted-Identity is kept (RFC 3325 §5: we trust the carrier's network domain).
"""

from __future__ import annotations

from provisioning.model import Device, Gateway, Snapshot, national_form
from routing.call import Call
from switch.sip.message import Headers, Request, SipURI, TelURI

__all__ = [
    "call_for",
    "caller_identity",
    "gateway_for",
    "identity_headers",
    "outbound_request_uri",
]


def gateway_for(snapshot: Snapshot, host: str, port: int) -> Gateway | None:
    """The carrier gateway a request from host:port comes from, if any."""
    gw = snapshot.gateway_for_source(host)
    if gw is not None:
        return gw
    return snapshot.gateway_for_source(f"{host}:{port}")


# --------------------------------------------------------------------------- routing input
def call_for(req: Request, device: Device | None, gateway_id: str | None) -> Call:
    """The routing input for a new request: the dialled string is the Request-URI user
    (or tel: number), else the To user (a carrier sending to our address)."""
    uri = req.parsed_uri
    dialled = uri.number if isinstance(uri, TelURI) else uri.user
    if not dialled:
        to = req.headers.name_addr("To")
        to_uri = to.uri if to is not None else None
        dialled = to_uri.user if isinstance(to_uri, SipURI) else None
    dialled = dialled or ""
    if device is not None:
        return Call.from_device(call_id=req.call_id, device_id=device.id, dialled=dialled)
    number, display = caller_identity(req)
    return Call.inbound(
        call_id=req.call_id,
        dialled=dialled,
        gateway_id=gateway_id,
        caller_number=number,
        caller_display=display,
    )


def caller_identity(req: Request) -> tuple[str | None, str | None]:
    """The caller's number and display name as the carrier presents them (PAI, else From)."""
    na = req.headers.name_addr("P-Asserted-Identity") or req.headers.name_addr("From")
    if na is None:
        return None, None
    uri = na.uri
    number = (
        uri.number if isinstance(uri, TelURI) else uri.user if isinstance(uri, SipURI) else None
    )
    return number, na.display


# --------------------------------------------------------------------------- outbound rewrite
def outbound_request_uri(destination: str, gw: Gateway) -> str:
    """`sip:<dialled>@gw.host:gw.port`: Japanese numbers in national form (what carriers
    expect on a domestic trunk), short codes as they are."""
    user = national_form(destination) if destination.startswith("+81") else destination
    params = "" if gw.transport == "udp" else f";transport={gw.transport}"
    return f"sip:{user}@{gw.host}:{gw.port}{params}"


def identity_headers(
    headers: Headers, *, presented_number: str, realm: str, withhold: bool
) -> None:
    """Present the tenant's number (RFC 3325): our own P-Asserted-Identity
    `<sip:+81…@realm;user=phone>`, the From user the national form of the number (the From
    tag is kept: it identifies the dialog); `Privacy: id` and an anonymous From when the
    caller withholds the number (184 prefix)."""
    headers.remove("P-Asserted-Identity")
    headers.set("P-Asserted-Identity", f"<sip:{presented_number}@{realm};user=phone>")
    from_ = headers.name_addr("From")
    tag = from_.tag if from_ is not None else None
    if withhold:
        value = '"Anonymous" <sip:anonymous@anonymous.invalid>'
        headers.set("Privacy", "id")
    else:
        value = f"<sip:{national_form(presented_number)}@{realm}>"
    headers.set("From", value + (f";tag={tag}" if tag else ""))
