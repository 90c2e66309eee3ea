"""Switch-wide routing settings (the `[routing]` configuration section): values of the
service that no tenant provisions. Frozen and validated; `decide` takes them as an argument so
routing stays pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_SETTINGS", "RoutingSettings"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingSettings:
    """`voicemail_access_code`: what a device dials to listen to its voicemail (1417 is the
    code of the carriers' voicemail centres in Japan, so users already know it)."""

    voicemail_access_code: str = "1417"

    def __post_init__(self) -> None:
        code = self.voicemail_access_code
        if not (code.isdigit() or (code[:1] in "*#" and code[1:].isdigit())) or not code:
            raise ValueError(f"voicemail_access_code must be digits (or *digits), got {code!r}")
        if code in ("110", "118", "119"):
            raise ValueError("voicemail_access_code cannot be an emergency number")

    @classmethod
    def from_section(cls, section: Mapping[str, Any]) -> RoutingSettings:
        unknown = sorted(set(section) - {"voicemail_access_code"})
        if unknown:
            raise ValueError(
                f"unknown configuration keys: {', '.join('routing.' + k for k in unknown)}"
            )
        code = section.get("voicemail_access_code", "1417")
        if not isinstance(code, str):
            raise ValueError("routing.voicemail_access_code: a string of digits expected")
        return cls(voicemail_access_code=code)


DEFAULT_SETTINGS = RoutingSettings()
