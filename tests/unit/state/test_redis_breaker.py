"""The Redis backend's fail-fast breaker (switch/state/redis.py, `_Breaker`): an outage opens
it, a busy pool does not."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from switch.state.redis import _Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def pool_exhausted() -> RedisConnectionError:
    """What redis-py's BlockingConnectionPool raises when no connection frees in time."""
    try:
        try:
            raise TimeoutError
        except TimeoutError as err:
            raise RedisConnectionError("No connection available.") from err
    except RedisConnectionError as exc:
        return exc


def test_a_connection_error_opens_it_for_the_cooldown_then_one_probe_at_a_time() -> None:
    clock = Clock()
    breaker = _Breaker(1.0, clock)
    assert breaker.admit()
    breaker.failed(RedisConnectionError("Connection refused"))
    assert breaker.open and not breaker.admit()
    clock.now = 1.0
    assert breaker.admit()  # the probe
    assert not breaker.admit()  # only one at a time
    breaker.succeeded()
    assert not breaker.open and breaker.admit()


def test_a_timeout_opens_it() -> None:
    breaker = _Breaker(1.0, Clock())
    breaker.failed(RedisTimeoutError("Timeout reading from socket"))
    assert breaker.open and not breaker.admit()


def test_a_pool_with_no_free_connection_does_not_open_it() -> None:
    """A load peak (every pooled connection busy for `timeout`) fails that one command; it
    must not refuse every other call for the cooldown."""
    breaker = _Breaker(1.0, Clock())
    breaker.failed(pool_exhausted())
    assert not breaker.open and breaker.admit()


def test_a_server_error_does_not_open_it() -> None:
    breaker = _Breaker(1.0, Clock())
    breaker.failed(ResponseError("NOSCRIPT"))
    assert not breaker.open and breaker.admit()
