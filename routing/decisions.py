"""Decisions: what the proxy must do with a call. Frozen, slotted, keyword-only, self-validating.

Every decision carries everything the proxy needs to carry it out (no second lookup in the
snapshot), a short machine-readable `rule` naming the rule that fired (a metrics label and a
CDR field, e.g. "inbound-ring", "outbound-emergency"), and `anomalies`: provisioning
inconsistencies that routing worked around (e.g. a *forward* slot on a number without the
forwarding option) so that operators can see and fix them. Anomalies never change the SIP
outcome silently: the decision is still the documented fallback.

`takes_channel` says whether the proxy must take a channel lease (the tenant's simultaneous-call
allowance, = its number of IDs) before carrying the decision out. Routing has already checked
that one is free when it says True; the proxy's lease is the authority under a race.

`Decision` is the closed union of the eight decisions. Whoever carries decisions out matches on
it and ends with `typing.assert_never`, so a decision added here and forgotten there fails the
type check, not a call. `BaseDecision` only holds the fields and checks every decision shares;
nothing outside this module should name it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True, slots=True, kw_only=True)
class BaseDecision:
    """The fields and checks of every decision. `rule` is the metric/CDR label of the rule
    that fired."""

    rule: str
    anomalies: tuple[str, ...] = ()
    takes_channel: bool = False

    def __post_init__(self) -> None:
        _require(bool(self.rule), "a decision must name its rule")
        _require(all(self.anomalies), "anomalies must be non-empty strings")


@dataclass(frozen=True, slots=True, kw_only=True)
class _TenantDecision(BaseDecision):
    tenant_id: str
    number: str  # the tenant number (E.164) the call is about

    def __post_init__(self) -> None:
        BaseDecision.__post_init__(self)
        _require(bool(self.tenant_id), "tenant_id must not be empty")
        _require(self.number.startswith("+"), f"number must be E.164: {self.number!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject(BaseDecision):
    """Answer the INVITE with a final error response. `warning` is the text of a
    `Warning: 399 <host> "<text>"` header (RFC 3261 §20.43) for the device's screen; None
    when the reason must not leak to the far end (calls from the carrier)."""

    status: int
    reason: str
    warning: str | None = None
    tenant_id: str | None = None

    def __post_init__(self) -> None:
        BaseDecision.__post_init__(self)
        _require(400 <= self.status <= 699, f"a rejection is a 4xx-6xx status: {self.status}")
        _require(bool(self.reason), "reason must not be empty")
        _require(not self.takes_channel, "a rejection takes no channel")


@dataclass(frozen=True, slots=True, kw_only=True)
class RingStage:
    """Devices forked together. A stage starts `delay_s` after the call arrives.

    `only_if_earlier_stage_ringing`: the delay only holds while a branch of an earlier stage is
    still alive (trying or ringing). When every earlier branch has failed (486 from a busy desk
    phone, no reply), this stage starts at once: the delay gives the desk phone priority, it
    must never leave the caller hearing nothing.
    """

    delay_s: float
    device_ids: tuple[str, ...]
    only_if_earlier_stage_ringing: bool = False

    def __post_init__(self) -> None:
        _require(self.delay_s >= 0, "a stage delay cannot be negative")
        _require(bool(self.device_ids), "a stage rings at least one device")
        _require(len(set(self.device_ids)) == len(self.device_ids), "duplicate device in stage")


class NoAnswerAction(enum.StrEnum):
    VOICEMAIL = "voicemail"  # hand the call to the number's mailbox
    REJECT = "reject"  # CANCEL the branches and answer the caller `status`


@dataclass(frozen=True, slots=True, kw_only=True)
class NoAnswer:
    """What happens when nobody answers within `after_s` seconds of the call's arrival."""

    after_s: float
    action: NoAnswerAction
    mailbox: str | None = None
    status: int = 480

    def __post_init__(self) -> None:
        _require(self.after_s > 0, "the no-answer timer must be positive")
        voicemail = self.action is NoAnswerAction.VOICEMAIL
        _require(voicemail == (self.mailbox is not None), "a mailbox iff voicemail")
        _require(400 <= self.status <= 699, "no-answer status must be 4xx-6xx")


@dataclass(frozen=True, slots=True, kw_only=True)
class Ring(_TenantDecision):
    """Fork to the ring group's registered devices, stage by stage (desk phones/ATAs first).

    `called_number` goes into P-Called-Party-ID (RFC 3455 §4.2) so a device can tell which of
    the tenant's numbers was dialled; `display_prefix` (the number's label) is prepended to the
    caller's display name when the tenant enabled it. `record`/`recording_notice` come from the
    number's recording option."""

    called_number: str
    stages: tuple[RingStage, ...]
    no_answer: NoAnswer
    caller_number: str | None = None
    caller_display: str | None = None
    display_prefix: str | None = None
    record: bool = False
    recording_notice: bool = False
    takes_channel: bool = True

    def __post_init__(self) -> None:
        _TenantDecision.__post_init__(self)
        _require(bool(self.stages), "a ring has at least one stage")
        _require(self.stages[0].delay_s == 0, "the first stage rings at once")
        _require(not self.stages[0].only_if_earlier_stage_ringing, "stage 0 has no earlier")
        delays = [s.delay_s for s in self.stages]
        _require(delays == sorted(delays), "stage delays must not decrease")
        ids = [d for s in self.stages for d in s.device_ids]
        _require(len(set(ids)) == len(ids), "a device rings in one stage only")
        _require(self.record or not self.recording_notice, "a notice only when recording")
        _require(self.takes_channel, "a ring takes a channel")

    @property
    def device_ids(self) -> tuple[str, ...]:
        return tuple(d for s in self.stages for d in s.device_ids)


@dataclass(frozen=True, slots=True, kw_only=True)
class Forward(_TenantDecision):
    """Unconditional forward to `target` through the carrier gateway. The target sees
    `presented_identity` (the dialled tenant number), not the caller; `original_caller` goes to
    the CDR and the app's call history. Forwarded legs are charged and use a channel; they are
    never recorded (service rule), which the type enforces."""

    target: str
    presented_identity: str
    original_caller: str | None = None
    original_display: str | None = None
    record: bool = False
    takes_channel: bool = True

    def __post_init__(self) -> None:
        _TenantDecision.__post_init__(self)
        _require(self.target.startswith("+"), "the forward target must be E.164")
        _require(self.target != self.number, "a number cannot forward to itself")
        _require(not self.record, "forwarded calls are never recorded")
        _require(self.takes_channel, "a forwarded leg takes a channel")


@dataclass(frozen=True, slots=True, kw_only=True)
class Announce(_TenantDecision):
    """Answer with the after-hours announcement (`prompt`: a template name or "prompt:<id>"),
    then hand over to voicemail when the number has it, else hang up."""

    prompt: str
    then_voicemail: bool
    mailbox: str | None = None

    def __post_init__(self) -> None:
        _TenantDecision.__post_init__(self)
        _require(bool(self.prompt), "an announcement needs a prompt")
        _require(self.then_voicemail == (self.mailbox is not None), "a mailbox iff voicemail")


@dataclass(frozen=True, slots=True, kw_only=True)
class Busy(_TenantDecision):
    """Every channel is in use: voicemail takes the call when the number has it; otherwise the
    fixed system busy message plays (it cannot be changed)."""

    then_voicemail: bool
    mailbox: str | None = None
    channels_in_use: int = 0
    channels: int = 0

    def __post_init__(self) -> None:
        _TenantDecision.__post_init__(self)
        _require(self.then_voicemail == (self.mailbox is not None), "a mailbox iff voicemail")
        _require(self.channels_in_use >= self.channels, "busy only when channels are full")


@dataclass(frozen=True, slots=True, kw_only=True)
class Voicemail(_TenantDecision):
    """Voicemail answers at once (nobody in the ring group is registered)."""

    mailbox: str
    caller_number: str | None = None

    def __post_init__(self) -> None:
        _TenantDecision.__post_init__(self)
        _require(bool(self.mailbox), "voicemail needs a mailbox")


class DestinationKind(enum.StrEnum):
    """For rating and CDRs only; routing treats every allowed kind alike."""

    LANDLINE = "landline"
    MOBILE = "mobile"  # 070 / 080 / 090
    IP_PHONE = "ip-phone"  # 050
    NAVI_DIAL = "navi-dial"  # 0570: not covered by the 10-minute plan
    TOLL_FREE = "toll-free"  # 0120 / 0800
    DIRECTORY = "directory"  # 104: charged per call
    OTHER = "other"  # 020, 0180, 0990 …


@dataclass(frozen=True, slots=True, kw_only=True)
class Outbound(BaseDecision):
    """Send the call to the carrier gateway. `destination` is E.164, or a short code ("104").
    The carrier sees `presented_number` (P-Asserted-Identity); `withhold_identity` asks for
    `Privacy: id` (the caller dialled the 184 prefix)."""

    tenant_id: str
    device_id: str
    destination: str
    destination_kind: DestinationKind
    presented_number: str
    withhold_identity: bool = False
    record: bool = False
    recording_notice: bool = False
    takes_channel: bool = True

    def __post_init__(self) -> None:
        BaseDecision.__post_init__(self)
        _require(bool(self.tenant_id) and bool(self.device_id), "tenant and device required")
        _require(self.presented_number.startswith("+81"), "presented number must be +81…")
        short = self.destination_kind is DestinationKind.DIRECTORY
        _require(short or self.destination.startswith("+81"), "destination must be +81…")
        _require(self.record or not self.recording_notice, "a notice only when recording")
        _require(self.takes_channel, "an outbound call takes a channel")


@dataclass(frozen=True, slots=True, kw_only=True)
class Internal(BaseDecision):
    """A call between the tenant's own devices: free, no channel, no carrier, not recorded
    (recording is an option of a number and no number is involved). `via_number` is set when
    the device dialled one of the tenant's own numbers; its ring group rings internally,
    desk phones/ATAs listed first."""

    tenant_id: str
    device_id: str  # the caller
    device_ids: tuple[str, ...]
    via_number: str | None = None

    def __post_init__(self) -> None:
        BaseDecision.__post_init__(self)
        _require(bool(self.device_ids), "an internal call rings at least one device")
        _require(self.device_id not in self.device_ids, "a device does not ring itself")
        _require(len(set(self.device_ids)) == len(self.device_ids), "duplicate device")
        _require(not self.takes_channel, "internal calls take no channel")


@dataclass(frozen=True, slots=True, kw_only=True)
class VoicemailMenu(BaseDecision):
    """A device dialled the voicemail access code: the media service's menu over the messages
    of every number whose ring group includes the device and that has voicemail (`mailboxes`,
    E.164). No channel: the media service is ours and nothing leaves the service."""

    tenant_id: str
    device_id: str
    mailboxes: tuple[str, ...]

    def __post_init__(self) -> None:
        BaseDecision.__post_init__(self)
        _require(bool(self.tenant_id) and bool(self.device_id), "tenant and device required")
        _require(bool(self.mailboxes), "a voicemail menu needs at least one mailbox")
        _require(all(m.startswith("+") for m in self.mailboxes), "mailboxes must be E.164")
        _require(not self.takes_channel, "the voicemail menu takes no channel")


# The closed set of decisions (see the module docstring).
Decision: TypeAlias = (
    Reject | Ring | Forward | Announce | Busy | Voicemail | Outbound | Internal | VoicemailMenu
)
