"""The carrier trunk and the routing input: recognising the carrier, turning a request into
a `routing.call.Call` (and the IDs whose registrations routing may need), a simple routing
without the service rules (`simple_decide`: kept for tests and as a fallback to compare with;
the proxy uses `routing.policy.decide`), and the identity rewrite of calls that leave the
service.

Gateways: `Gateway.allowed_sources` holds IP address strings ("192.0.2.10"); an entry may also
be "ip:port" to trust only one source port of a carrier host ("192.0.2.10:5060"). A request
whose source matches is trusted as the carrier: it is not challenged and its
P-Asserted-Identity is kept (RFC 3325 §5: we trust the carrier's network domain).

`simple_decide` has the signature of `routing.policy.decide` and returns the same `Decision`
types, so the proxy carries out whatever the real policy will return:
- carrier -> a tenant number: `Ring` of every registered device of the number's ring group, all
  in one stage; unknown number 404; nobody registered 480.
- device -> a device username of the same tenant: `Internal`; of another tenant: 404 (never
  leak who exists elsewhere).
- device -> one of the tenant's own numbers: `Internal` ringing that number's group.
- device -> any other number: `Outbound` through the first gateway, presenting the ID's number.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from provisioning.model import Device, Gateway, Snapshot, national_form
from routing.call import Call, Direction, LiveView
from routing.decisions import (
    Decision,
    DestinationKind,
    Internal,
    NoAnswer,
    NoAnswerAction,
    Outbound,
    Reject,
    Ring,
    RingStage,
)
from routing.dialled import DialKind, classify, destination_kind
from switch.sip.message import Headers, NameAddr, Request, SipURI, TelURI

from .dialogs import caller_identity

__all__ = [
    "call_for",
    "called_party",
    "candidates",
    "device_identity",
    "gateway_for",
    "identity_headers",
    "outbound_request_uri",
    "prefix_display",
    "simple_decide",
]


def gateway_for(snapshot: Snapshot, host: str, port: int) -> Gateway | None:
    """The carrier gateway a request from host:port comes from, if any."""
    gw = snapshot.gateway_for_source(host)
    if gw is not None:
        return gw
    return snapshot.gateway_for_source(f"{host}:{port}")


# --------------------------------------------------------------------------- simple routing
def simple_decide(call: Call, snapshot: Snapshot, live: LiveView, now: datetime) -> Decision:
    """Route without the routing rules (see the module docstring)."""
    del now
    if call.direction is Direction.INBOUND:
        return _inbound(call, snapshot, live)
    return _from_device(call, snapshot, live)


def _inbound(call: Call, snapshot: Snapshot, live: LiveView) -> Decision:
    dialled = classify(call.dialled)
    number = snapshot.numbers.get(dialled.e164 or "")
    if number is None:
        return Reject(status=404, reason="Not Found", rule="inbound-unknown-number")
    ids = tuple(d for d in number.ring_group if live.is_registered(d))
    if not ids:
        return Reject(
            status=480,
            reason="Temporarily Unavailable",
            rule="inbound-nobody-registered",
            tenant_id=number.tenant_id,
        )
    return Ring(
        rule="inbound-ring",
        tenant_id=number.tenant_id,
        number=number.e164,
        called_number=number.e164,
        stages=(RingStage(delay_s=0.0, device_ids=ids),),
        no_answer=NoAnswer(after_s=number.max_ring_time, action=NoAnswerAction.REJECT),
        caller_number=call.caller_number,
        caller_display=call.caller_display,
    )


def _from_device(call: Call, snapshot: Snapshot, live: LiveView) -> Decision:
    device = snapshot.devices.get(call.device_id or "")
    if device is None:
        return Reject(status=403, reason="Forbidden", rule="outbound-unknown-device")
    callee = snapshot.devices_by_username.get(call.dialled)
    if callee is not None:
        if callee.tenant_id != device.tenant_id:
            return Reject(status=404, reason="Not Found", rule="internal-other-tenant")
        if callee.id == device.id:
            return Reject(status=486, reason="Busy Here", rule="internal-self")
        return _internal(device.tenant_id, device.id, (callee.id,), live, None)
    dialled = classify(call.dialled)
    if dialled.kind is DialKind.EMERGENCY:
        return Reject(
            status=403, reason="Forbidden", warning="emergency", rule="outbound-emergency"
        )
    own = snapshot.numbers.get(dialled.e164 or "")
    if own is not None and own.tenant_id == device.tenant_id:
        ids = tuple(d for d in own.ring_group if d != device.id)
        return _internal(device.tenant_id, device.id, ids, live, own.e164)
    if dialled.kind is DialKind.DIRECTORY:
        dest, kind = dialled.digits, DestinationKind.DIRECTORY
    elif dialled.kind is DialKind.NATIONAL and dialled.e164:
        dest, kind = dialled.e164, destination_kind(dialled.e164)
    else:
        return Reject(status=404, reason="Not Found", rule="outbound-not-a-number")
    return Outbound(
        rule="outbound",
        tenant_id=device.tenant_id,
        device_id=device.id,
        destination=dest,
        destination_kind=kind,
        presented_number=device.presented_number,
        withhold_identity=dialled.withhold,
    )


def _internal(
    tenant_id: str, caller: str, ids: tuple[str, ...], live: LiveView, via: str | None
) -> Decision:
    live_ids = tuple(d for d in ids if live.is_registered(d))
    if not live_ids:
        return Reject(
            status=480, reason="Temporarily Unavailable", rule="internal-nobody-registered"
        )
    return Internal(
        rule="internal", tenant_id=tenant_id, device_id=caller, device_ids=live_ids, via_number=via
    )


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


def candidates(
    call: Call, snap: Snapshot, device: Device | None
) -> tuple[str | None, tuple[str, ...]]:
    """The tenant the call is about and the IDs whose registrations routing may need:
    the dialled ID (same tenant only), or the ring group of the dialled number. Only
    these are read from the state backend (a tenant may have many IDs)."""
    tenant = device.tenant_id if device is not None else None
    callee = snap.devices_by_username.get(call.dialled.strip())
    if callee is not None and device is not None:
        return tenant, (callee.id,) if callee.tenant_id == tenant else ()
    number = snap.numbers.get(classify(call.dialled).e164 or "")
    if number is None:
        return tenant, ()
    if device is None:
        return number.tenant_id, number.ring_group
    return tenant, number.ring_group if number.tenant_id == tenant else ()


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


# --------------------------------------------------------------------------- towards devices
def called_party(headers: Headers, number: str, realm: str) -> None:
    """RFC 3455 P-Called-Party-ID: which of the tenant's numbers was dialled (service rule:
    a device can tell which number a call came in on). Replaces any the caller sent."""
    headers.set("P-Called-Party-ID", f"<sip:{number}@{realm};user=phone>")


def device_identity(headers: Headers, device: Device, realm: str) -> None:
    """Our own P-Asserted-Identity for a call between the tenant's devices (RFC 3325: what
    the device sent was removed at the trust boundary)."""
    na = NameAddr(display=device.display_name, uri=SipURI(user=device.username, host=realm))
    headers.set("P-Asserted-Identity", str(na))


def prefix_display(headers: Headers, prefix: str) -> None:
    """Prepend the number's label to the caller's display name in From (the tenant's
    "show the number's label" setting). The From tag is kept."""
    na = headers.name_addr("From")
    if na is None:
        return
    uri = na.uri
    shown = na.display or (
        uri.user if isinstance(uri, SipURI) else uri.number if isinstance(uri, TelURI) else None
    )
    display = f"{prefix} {shown}" if shown else prefix
    headers.set("From", str(dataclasses.replace(na, display=display)))
