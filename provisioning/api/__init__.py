"""The provisioning REST API (aiohttp), mounted at /v1 by the switch app. See app.py."""

from __future__ import annotations

from .app import (
    API_CONVERTER,
    API_DOCUMENT,
    API_METRICS,
    API_PREFIX,
    API_RECORDINGS,
    API_SERVICES,
    API_VOICEMAIL,
    create_api_app,
    mount_api,
    operations,
)

__all__ = [
    "API_CONVERTER",
    "API_DOCUMENT",
    "API_METRICS",
    "API_PREFIX",
    "API_RECORDINGS",
    "API_SERVICES",
    "API_VOICEMAIL",
    "create_api_app",
    "mount_api",
    "operations",
]
