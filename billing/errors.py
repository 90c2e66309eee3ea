"""Errors of the rating core. Each carries a stable kebab-case `error_id` (never reworded: the
CDR pipeline counts them by it and the API will return it) and JSON-able `details`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class BillingError(ValueError):
    """Base of every billing error: bad input, never a bug of ours."""

    def __init__(
        self, error_id: str, message: str, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.message = message
        self.details: dict[str, Any] = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        return {"error_id": self.error_id, "message": self.message, "details": self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.error_id!r}, {self.message!r}, {self.details!r})"


class TariffError(BillingError):
    """A tariff document or table refused. `details["path"]` names the offending field, e.g.
    "versions[1].outbound.desk.mobile.yen"."""

    def __init__(self, error_id: str, path: str, reason: str) -> None:
        super().__init__(error_id, f"{path}: {reason}" if path else reason, {"path": path})
        self.path = path
        self.reason = reason


class RatingError(BillingError):
    """A call that cannot be rated (invalid input, no tariff in force, a refused destination
    that was answered …)."""


class StatementError(BillingError):
    """Rows that do not belong to the statement asked for."""
