"""Domain errors of the provisioning services (`provisioning.services`).

Every refusal is a `ProvisioningError` with
- `status`: the HTTP status the REST API answers with (4xx; 503 for `StoreUnavailable`),
- `error_id`: a stable kebab-case identifier clients may switch on (never reworded),
- `details`: a JSON-able dict naming the rule and the limit, e.g.
  `{"rule": "additional numbers ≤ 2", "limit": 2, "requested": 3}`.

The REST layer renders `err.to_dict()` as the response body. A refused request changes nothing:
the service validates inside the store transaction and rolls it back on any error.

Status policy
- 400 `InvalidInput`: the request itself is malformed (bad number format, unknown timezone,
  ring time not in the allowed set, schedule of the wrong shape …), whatever the state.
- 401 `Unauthenticated`, 403 `Forbidden`: token missing/unknown, or the principal's scope
  does not cover the resource (tenant token on another tenant, tenant token on an
  operator-only operation).
- 404 `NotFound`.
- 409 `RuleViolation`: the request is well formed but would break a service rule given the
  current state (limits, identity check, ring group would become empty …).
- 409 `Conflict`: a uniqueness clash (`number-taken`, `username-taken`, `id-taken`).
- 413 `TooLarge`: an uploaded prompt above the size limit.
- 503 `StoreUnavailable`: the database cannot be reached; retry later.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar


class ProvisioningError(Exception):
    """Base of every domain error. Subclasses fix the HTTP status."""

    status: ClassVar[int] = 400

    def __init__(
        self, error_id: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        """The JSON error body: `{"error_id", "message", "details"}`."""
        return {"error_id": self.error_id, "message": self.message, "details": self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.error_id!r}, {self.message!r}, {self.details!r})"


class InvalidInput(ProvisioningError):
    status = 400


class Unauthenticated(ProvisioningError):
    status = 401

    def __init__(self, message: str = "missing or unknown API token") -> None:
        super().__init__("invalid-token", message)


class Forbidden(ProvisioningError):
    status = 403


class NotFound(ProvisioningError):
    status = 404

    def __init__(self, what: str, key: object) -> None:
        super().__init__("not-found", f"{what} {key!r} not found", {"what": what, "key": str(key)})


class RuleViolation(ProvisioningError):
    status = 409


class Conflict(ProvisioningError):
    status = 409


class TooLarge(ProvisioningError):
    status = 413


class StoreUnavailable(ProvisioningError):
    status = 503

    def __init__(self, message: str = "the provisioning store is unavailable") -> None:
        super().__init__("store-unavailable", message)


class PhonebookImportRejected(InvalidInput):
    """A CSV import with bad rows: nothing was imported (all-or-nothing). `details["errors"]`
    lists every bad row as `{"row": <1-based line number in the file>, "reason": "…"}`."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(
            "phonebook-import-invalid",
            f"{len(errors)} bad row(s) in the CSV; nothing was imported",
            {"rule": "every row must be valid (all-or-nothing import)", "errors": errors},
        )


# Every error_id the service raises, with its status: the API's OpenAPI document can list them.
ERROR_IDS: Mapping[str, int] = {
    # 400
    "invalid-input": 400,
    "invalid-number": 400,
    "invalid-timezone": 400,
    "invalid-ring-time": 400,
    "invalid-ring-delay": 400,
    "invalid-schedule": 400,
    "invalid-announcement": 400,
    "invalid-cursor": 400,
    "invalid-filter": 400,
    "too-many-recordings": 400,
    "phonebook-import-invalid": 400,
    # 401 / 403 / 404
    "invalid-token": 401,
    "operator-only": 403,
    "wrong-tenant": 403,
    "tenant-suspended": 403,
    "not-found": 404,
    "no-such-month": 404,
    "recording-file-missing": 404,
    # 409 rules
    "contract-number-exists": 409,
    "contract-number-required": 409,
    "too-many-additional-numbers": 409,
    "additional-numbers-exceed-additional-ids": 409,
    "toll-free-needs-several-ids": 409,
    "toll-free-not-presentable": 409,
    "presented-number-not-own": 409,
    "number-presented-by-device": 409,
    "ring-group-empty": 409,
    "ring-group-not-own-ids": 409,
    "last-id": 409,
    "free-calls-apps-only": 409,
    "identity-not-verified": 409,
    "option-required": 409,
    "forward-slot-needs-forwarding-option": 409,
    "forwarding-needs-target": 409,
    "prompt-in-use": 409,
    "too-many-prompts": 409,
    "phonebook-full": 409,
    "realm-locked": 409,
    "realm-mismatch": 409,
    # 409 uniqueness
    "number-taken": 409,
    "username-taken": 409,
    "id-taken": 409,
    # 413 / 503
    "prompt-too-large": 413,
    "store-unavailable": 503,
    "statements-unavailable": 503,
    "live-state-unavailable": 503,
}
