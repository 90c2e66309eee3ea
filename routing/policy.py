"""The call-routing policy: `decide(call, snapshot, live, now) -> Decision`. Pure: no I/O, no
clock (time is an argument), no randomness; the same inputs always give the same decision.
It reads the dialled string as classified when the Call was built (`Call.classified`), and of
the live state only what `routing.needs` names for the call (tests/unit/routing/test_needs.py
checks it), so the proxy loads exactly that.

Inbound (a carrier gateway delivers a call to a dialled number), first match wins:

1. Unknown number (not a Japanese number, or not one of ours)  -> Reject 404 Not Found.
2. Tenant suspended -> Reject 480 Temporarily Unavailable, rule "inbound-tenant-suspended".
   480, not 403: a suspension is temporary and not the caller's fault (403 says the request
   itself is refused; 404 would tell the network the number is unallocated). The far end hears
   its carrier's ordinary "cannot be connected" message; no Warning leaks the reason.
3. Forwarding ON (the number has the forwarding option AND forwarding.enabled) -> Forward to
   the target through the carrier, presenting the dialled number. No device rings, voicemail
   does not act, it works with nobody registered, it is never recorded. The forwarded leg is a
   charged call and takes a channel: with every channel in use the caller gets Busy without
   voicemail (rule "inbound-forwarding-channels-full"). Forwarding wins over after-hours if a
   snapshot somehow has both ON (provisioning keeps them exclusive); that is flagged.
   A FAX offer (Call.fax) still reaches the group's registered ATAs ("fax-while-forwarding").
   Forwarding ON without a valid target is flagged and ignored (the call continues below).
4. After-hours (option AND schedule enabled): the slot of the tenant's local wall-clock time
   (see routing.schedule) decides: ANNOUNCE -> Announce, then voicemail when the number has it;
   FORWARD -> Forward (needs the forwarding option and a valid target, else flagged and treated
   as RING); its busy case does offer voicemail, as forwarding is not ON; RING -> continue.
   Announcements are answered by our media server and take no channel.
5. Channels: leases in use >= the tenant's IDs -> Busy (voicemail when the number has it,
   else the fixed system message).
6. Ring group: its registered devices. Desk phones and ATAs ring at once (stage 0); apps ring
   in stage 1 after `app_ring_delay`, only while a desk branch is alive
   (only_if_earlier_stage_ringing). With no desk phone/ATA registered, apps ring at once.
   Nobody registered -> Voicemail at once, or Reject 480. No answer -> voicemail after
   `voicemail_ring_time`, else 480 after `max_ring_time`. The Ring carries the called number
   (P-Called-Party-ID), the label as display prefix, and the recording flags.

From a device (an authenticated ID), first match wins:

1. 110 / 118 / 119 (also behind 184/186) -> Reject 403 Forbidden with a Warning "emergency
   calls … are not available". Checked before anything else. 403 is what a network answers a
   barred destination; 380 Alternative Service (RFC 5031) would invite the phone to retry the
   emergency call elsewhere, which is not ours to promise.
2. Unknown device -> Reject 403; suspended tenant -> Reject 403 "the service is suspended".
   The voicemail access code (`RoutingSettings.voicemail_access_code`, default 1417 - the
   code Japanese users know from the carrier's voicemail centre) -> VoicemailMenu over the
   mailboxes of every number with voicemail whose ring group includes the device; none ->
   Reject 404 with a Warning.
3. The tenant's own ID usernames -> Internal (no channel, free); itself -> 486; not logged in
   -> 480. The tenant's own numbers (national or E.164) -> Internal to that number's ring group,
   minus the caller (no after-hours, no forwarding, no channel).
4. International ("+" other than +81, "010…", "00…") -> Reject 403 "international calls are
   not available"; other 1XY short codes -> 403; too short -> 484; anything else -> 404.
5. Everything else (national numbers incl. 0570 and toll-free, and 104) -> Outbound through
   the carrier presenting the device's presented_number (the contract number, flagged, when
   that is missing or toll-free: toll-free numbers are incoming only). It takes a channel; with
   every channel in use -> Reject 486 Busy Here with a Warning (not 503: a 503 makes a phone
   fail over or retry). "184" withholds the caller's number for the call; it is recorded when
   the presented number has the recording option. Before it goes out, the toll-fraud caps
   (routing.caps: the ID's calls at once, per day, its expensive classes per day, the
   tenant's per day; `limits`) -> Reject 403 with a Warning naming the cap.
"""

from __future__ import annotations

from datetime import datetime

from provisioning.model import Snapshot

from .call import Call, Direction, LiveView
from .caps import DEFAULT_LIMITS, OutboundLimits
from .decisions import Decision
from .inbound import decide_inbound
from .outbound import decide_from_device
from .settings import DEFAULT_SETTINGS, RoutingSettings

__all__ = ["RoutingSettings", "decide"]


def decide(
    call: Call,
    snapshot: Snapshot,
    live: LiveView,
    now: datetime,
    *,
    settings: RoutingSettings = DEFAULT_SETTINGS,
    limits: OutboundLimits = DEFAULT_LIMITS,
) -> Decision:
    """Route one new call. `now` must be timezone-aware (the proxy passes UTC). `settings`:
    the switch-wide routing settings ([routing]); `limits`: the toll-fraud caps of calls from
    devices (the app binds the configured ones)."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    if call.direction is Direction.INBOUND:
        return decide_inbound(call, snapshot, live, now)
    return decide_from_device(call, snapshot, live, settings, limits)
