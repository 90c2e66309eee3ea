"""What a caller hears: one script per hand-off service (switch/handoff.py `Service`), written
against the call's channel (media/ua/call.py `MediaCall`: answer, early media, play, record,
digits, hang up). The rules are the service's (../shared/docs/service-rules.md):

- `announce` (after-hours): answer, play the announcement (a template or the tenant's uploaded
  file); with voicemail, the beep and a recording follow (the announcement is the greeting),
  else hang up.
- `busy` (every channel in use, no voicemail): the fixed system message as EARLY media (183
  with SDP), then the final 486 the hand-off names: the caller hears why, and the call is
  never answered, so never billed.
- `voicemail`: with the mailbox full (15 kept) the fixed "mailbox full" message and nothing is
  stored; else the fixed greeting, the beep, at most 30 s of message (ended by `#`, by the
  caller hanging up, or at 30 s with a tone), kept when at least 1 s long.
- `voicemail-menu` (a device dialled the voicemail access code): how many new and saved
  messages, then per message, newest first, its number, received time and caller, the audio,
  and the menu 1 replay, 2 next, 7 delete, 9 save, # end. DTMF by RFC 4733 or SIP INFO.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from switch.handoff import HandOff, Service, Then

from ..prompts import PromptLibrary, default_library, message_header, summary
from ..voicemail import (
    MAILBOX_LIMIT,
    MAX_MESSAGE_SECONDS,
    MIN_MESSAGE_SECONDS,
    MessageInfo,
    NewMessage,
    PromptSource,
    VoicemailStore,
)
from .agent import Service as ServiceScript
from .call import MediaCall

__all__ = ["ServiceDeps", "services"]

log = logging.getLogger(__name__)

MENU_TIMEOUT = 10.0  # seconds to wait for a key before repeating the menu
MENU_REPEATS = 3  # then goodbye


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceDeps:
    voicemail: VoicemailStore
    prompts: PromptSource | None = None  # tenant-uploaded prompts (prompt:<id>)
    library: PromptLibrary = field(default_factory=default_library)
    wall_clock: Callable[[], dt.datetime] = _utc_now
    timezone: Callable[[str], str] = lambda tenant: "Asia/Tokyo"
    on_event: Callable[[str, str], None] = lambda what, label: None  # metrics hook
    max_message: float = MAX_MESSAGE_SECONDS
    min_message: float = MIN_MESSAGE_SECONDS
    mailbox_limit: int = MAILBOX_LIMIT


def services(deps: ServiceDeps) -> Callable[[HandOff], ServiceScript]:
    """The agent's `service_for`: the script for a hand-off, bound to `deps`."""

    def service_for(handoff: HandOff) -> ServiceScript:
        match handoff.service:
            case Service.ANNOUNCE:
                return lambda call: announce(call, deps)
            case Service.BUSY:
                return lambda call: busy(call, deps)
            case Service.VOICEMAIL:
                return lambda call: voicemail(call, deps)
            case Service.VOICEMAIL_MENU:
                return lambda call: menu(call, deps)

    return service_for


# --------------------------------------------------------------------------- scripts
END_PAUSE = 0.4  # seconds of silence after a prompt before we hang up (its last packets land)


async def announce(call: MediaCall, deps: ServiceDeps) -> None:
    h = call.handoff
    if not call.answer():
        return
    if not await _prompt(call, deps, h.prompt or "template-1"):
        return
    if h.then is Then.VOICEMAIL:
        await _record_message(call, deps, greeting=False)
    else:
        await asyncio.sleep(END_PAUSE)


async def busy(call: MediaCall, deps: ServiceDeps) -> None:
    if not call.early():
        return
    await _prompt(call, deps, "busy")
    call.reject(call.handoff.cause or 486)


async def voicemail(call: MediaCall, deps: ServiceDeps) -> None:
    h = call.handoff
    assert h.mailbox is not None
    if await deps.voicemail.count(h.tenant, h.mailbox) >= deps.mailbox_limit:
        deps.on_event("mailbox_full", h.tenant)
        if call.answer():
            await _prompt(call, deps, "mailbox-full")
        return
    if call.answer():
        await _record_message(call, deps, greeting=True)


async def _record_message(call: MediaCall, deps: ServiceDeps, *, greeting: bool) -> None:
    h = call.handoff
    assert h.mailbox is not None
    if greeting and not await _prompt(call, deps, "voicemail-greeting"):
        return
    if not await _prompt(call, deps, "beep"):
        return
    received = deps.wall_clock()
    result = await call.record(deps.max_message, stop_digits="#")
    if result.reason == "max":
        await _prompt(call, deps, "record-end-tone")
    if result.seconds < deps.min_message:
        deps.on_event("too_short", h.tenant)
        log.info("call %s: message of %.2f s not kept", call.call_id, result.seconds)
        return
    message = NewMessage(
        tenant_id=h.tenant, mailbox=h.mailbox, caller=h.caller, dialled=h.target or h.mailbox,
        received_at=received, pcm=result.pcm,
    )  # fmt: skip
    stored = await asyncio.shield(deps.voicemail.save(message, deps.mailbox_limit))
    deps.on_event("stored" if stored else "mailbox_full", h.tenant)
    log.info("call %s: %.1f s message %s", call.call_id, result.seconds, stored or "refused")


# --------------------------------------------------------------------------- retrieval menu
async def menu(call: MediaCall, deps: ServiceDeps) -> None:
    h = call.handoff
    if not call.answer():
        return
    messages = await deps.voicemail.messages(h.tenant, h.mailboxes)
    new = sum(1 for m in messages if not m.heard)
    if not await _say(call, deps, summary(new, len(messages) - new)) or not messages:
        await _say(call, deps, ("vm-goodbye",))
        return
    key = await _ask(call, deps, "vm-main-menu", "1#")
    if key == "1":
        await _walk(call, deps, messages)
    await _say(call, deps, ("vm-goodbye",))


async def _walk(call: MediaCall, deps: ServiceDeps, messages: list[MessageInfo]) -> None:
    tz = ZoneInfo(deps.timezone(call.handoff.tenant))
    index = 0
    while index < len(messages) and not call.hung_up:
        msg = messages[index]
        if not await _play_message(call, deps, index + 1, msg, tz):
            return
        key = await _ask(call, deps, "vm-message-menu", "1279#")
        match key:
            case "1":
                continue
            case "7":
                await deps.voicemail.delete(msg.tenant_id, msg.id)
                deps.on_event("deleted", msg.tenant_id)
                await _say(call, deps, ("vm-deleted",))
            case "9":
                await _say(call, deps, ("vm-saved",))
            case "#" | None:
                return
        index += 1
    if not call.hung_up:
        await _say(call, deps, ("vm-no-more",))


async def _play_message(
    call: MediaCall, deps: ServiceDeps, index: int, msg: MessageInfo, tz: ZoneInfo
) -> bool:
    received = msg.received_at.astimezone(tz)
    caller = _national(msg.caller)
    if not await _say(call, deps, message_header(index, received, caller), interrupt=True):
        return not call.hung_up
    audio = await deps.voicemail.audio(msg.tenant_id, msg.id)
    if audio is None:
        return not call.hung_up
    if not msg.heard:
        await deps.voicemail.mark(msg.tenant_id, msg.id, True)
    await call.play(audio, interrupt_on_digit=True)
    return not call.hung_up


async def _ask(call: MediaCall, deps: ServiceDeps, prompt: str, keys: str) -> str | None:
    """Play a menu and read one of `keys`; repeat on a wrong key or silence, then give up."""
    for _ in range(MENU_REPEATS):
        await _say(call, deps, (prompt,), interrupt=True)
        digit = await call.digit(MENU_TIMEOUT)
        if call.hung_up:
            return None
        if digit is not None and digit in keys:
            deps.on_event("dtmf", digit)
            return digit
        if digit is not None:
            await _say(call, deps, ("vm-invalid",))
    return None


# --------------------------------------------------------------------------- playing
async def _prompt(call: MediaCall, deps: ServiceDeps, name: str) -> bool:
    pcm = None
    if name.startswith("prompt:") and deps.prompts is not None:
        pcm = await deps.prompts.pcm(call.handoff.tenant, name)
    if pcm is None:
        if name not in deps.library.names():
            log.warning("unknown prompt %r; playing template-1", name)
            name = "template-1"
        pcm = deps.library.pcm(name)
    deps.on_event("prompt", name if not name.startswith("prompt:") else "uploaded")
    return await call.play(pcm)


async def _say(
    call: MediaCall, deps: ServiceDeps, names: tuple[str, ...], *, interrupt: bool = False
) -> bool:
    return await call.play(deps.library.join(names), interrupt_on_digit=interrupt)


def _national(number: str | None) -> str | None:
    if not number:
        return None
    digits = number.removeprefix("tel:").split("@", 1)[0]
    if digits.startswith("+81"):
        return "0" + digits[3:]
    return digits if any(c.isdigit() for c in digits) else None
