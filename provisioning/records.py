"""Read-side records: what the provisioning store returns besides the routing model.

`provisioning.model` is the routing snapshot (what the switch needs). The REST API also shows
things the switch never looks at: an ID's timestamps and release counter without its hashes,
uploaded prompts, the web phonebook, API tokens. Those are these frozen records, built from
rows by `provisioning.store.queries` and rendered by `provisioning.api.resources`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from .model import DeviceKind

__all__ = ["DeviceInfo", "PhonebookEntry", "PromptInfo", "Scope", "TokenInfo"]

Scope = Literal["operator", "tenant"]


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceInfo:
    """An ID as the API shows it: never a password nor a hash.
    `release_seq` counts the "release the logged-in device" requests;
    `release_requested_at` is the last one (UTC)."""

    id: str
    tenant_id: str
    username: str
    kind: DeviceKind
    presented_number: str
    display_name: str | None
    free_calls_10min: bool
    web_phonebook: bool
    release_seq: int
    release_requested_at: datetime | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PromptInfo:
    """An uploaded announcement. Reference it as `announcement="prompt:<id>"`."""

    id: str
    tenant_id: str
    name: str
    content_type: str
    size: int
    created_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PhonebookEntry:
    id: str
    tenant_id: str
    name: str
    number: str
    company: str | None
    note: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInfo:
    id: str
    scope: Scope
    tenant_id: str | None
    label: str | None
    created_at: datetime
