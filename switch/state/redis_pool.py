"""The connection pool of the Redis state backend, for the two deployments it supports:

- one server: `redis://[[user]:password@]host[:port][/db][?options]` (`rediss://` for TLS,
  redis-py's URL);
- a master found through **Redis Sentinel**: `redis+sentinel://[[user]:password@]host:port
  [,host:port…]/service[/db][?sentinel_password=…]` - the sentinels' addresses, the name of
  the monitored master, the database. The password in the user part is the master's;
  `sentinel_password` the sentinels' own, when they require one. After a fail-over the pool
  asks the sentinels again: connections to the old master are dropped as they fail (the
  backend's one immediate retry - redis.py, Failures - lands on the new master), so callers
  see at most the fail-over's own gap as `StateUnavailable`.

Both pools block for a free connection (at most `size` of them, up to `timeout`) instead of
raising at once (redis.py, Connections). Redis Cluster is not supported: the state's Lua
scripts touch keys of several hash slots (a binding's keys and the expiry index), which a
cluster refuses.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, ConnectionPool
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

__all__ = ["SENTINEL_SCHEME", "SentinelURL", "connection_pool", "parse_sentinel_url"]

SENTINEL_SCHEME = "redis+sentinel"


class SentinelURL:
    """A parsed `redis+sentinel://` URL (module docstring). ValueError when malformed; the
    message never repeats the URL (it may hold a password)."""

    def __init__(
        self,
        sentinels: list[tuple[str, int]],
        service: str,
        db: int,
        username: str | None,
        password: str | None,
        sentinel_password: str | None,
    ) -> None:
        self.sentinels = sentinels
        self.service = service
        self.db = db
        self.username = username
        self.password = password
        self.sentinel_password = sentinel_password


def parse_sentinel_url(url: str) -> SentinelURL:
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        raise ValueError(f"not a {SENTINEL_SCHEME}:// URL")
    userinfo, _, hosts = parts.netloc.rpartition("@")
    username: str | None = None
    password: str | None = None
    if userinfo:
        user, _, word = userinfo.partition(":")
        username, password = unquote(user) or None, unquote(word) or None
    sentinels = []
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("each sentinel must be host:port")
        sentinels.append((host, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("the master's service name (and a database number) expected in the path")
    if len(path) == 2 and not path[1].isdigit():
        raise ValueError("the database must be a number")
    query = parse_qs(parts.query)
    unknown = set(query) - {"sentinel_password"}
    if unknown:
        raise ValueError(f"unknown options: {', '.join(sorted(unknown))}")
    given = query.get("sentinel_password")
    db = int(path[1]) if len(path) == 2 else 0
    return SentinelURL(
        sentinels, unquote(path[0]), db, username, password, given[0] if given else None
    )


class _Blocking(BlockingConnectionPool):
    """redis-py's blocking pool, but an idle connection is handed out at once: no condition
    lock, no `asyncio.timeout` (a timer scheduled and cancelled per command) and no
    observability hooks unless it has to wait. The connection is still checked
    (`ensure_connection`: connected, no stray data), and a waiter woken by a release that
    finds the connection taken waits on (up to its timeout). About 5 % of a worker's CPU on
    Redis state at 500 calls/s went to the pool's hand-out."""

    async def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
        if not self._available_connections or self._in_maintenance:
            return await super().get_connection()  # type: ignore[no-untyped-call]
        connection = self._available_connections.pop()
        self._in_use_connections.add(connection)
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection


class _BlockingSentinelPool(SentinelConnectionPool, _Blocking):
    """The master's connections, found through the sentinels, in a blocking pool."""


def connection_pool(url: str, *, size: int, timeout: float) -> ConnectionPool:
    """The pool for `url` (module docstring); `timeout` bounds connecting, each command and
    the wait for a free connection."""
    common: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 1),
    }
    if not url.startswith(SENTINEL_SCHEME + "://"):
        return _Blocking.from_url(url, max_connections=size, timeout=timeout, **common)
    parsed = parse_sentinel_url(url)
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    if parsed.sentinel_password:
        sentinel_kwargs["password"] = parsed.sentinel_password
    manager = Sentinel(parsed.sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    return _BlockingSentinelPool(  # type: ignore[no-untyped-call]
        parsed.service,
        manager,
        max_connections=size,
        timeout=timeout,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **common,
    )
