"""Redis connections of the data layer and the one server-side script it needs.

The URL comes from the caller, else from ``REDIS_URL`` read at call time (never at
import). Accepted forms are redis-py's: ``redis://[[user]:password@]host[:port][/db]``,
``rediss://...`` (TLS; options such as ``?ssl_ca_certs=/path/ca.pem`` in the query),
``unix:///path/to/socket[?db=N&password=...]``. Passwords never appear in messages.
Clients are plain blocking ``redis.Redis`` objects with socket timeouts; they are safe
to share between threads (one connection pool per client).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Generator, Iterator, TypeVar

import redis
from channels.connection import redact, resolve_url
from channels.errors import ConfigurationError as ChannelsConfigurationError
from channels.errors import InvalidTypeError
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from ..errors import (
    ConfigurationError,
    ForeignKeyError,
    RedisCommandError,
    RedisUnavailableError,
)
from .events import EndReason
from .keys import ScanKeys, SessionKeys

__all__ = ["Client", "resolve_redis_url", "connect", "redis_errors", "end_scan"]

#: A ``redis.Redis`` returning bytes. redis-py's annotations cannot express that its
#: replies are bytes when ``decode_responses`` is off, so the data layer types it loosely.
Client = Any

SESSION_STREAM_MAXLEN = 100_000


def resolve_redis_url(redis_url: str | None = None) -> str:
    """The explicit ``redis_url``, else the ``REDIS_URL`` environment variable (the
    rule of :func:`channels.connection.resolve_url`, shared by both packages)."""
    try:
        return resolve_url(redis_url)
    except (ChannelsConfigurationError, InvalidTypeError) as exc:
        raise ConfigurationError(str(exc)) from None


#: How a reading client rides out a dropped connection: the command is sent again on a
#: new connection after 20, 40, ... ms (at most 0.5 s apart, about 1 s in all), so a
#: ``CLIENT KILL`` or a proxy that drops idle connections costs a moment, not the scan.
#: Longer outages reach the caller, whose owner restarts it (the device, the command).
DROP_RETRIES = 6
_DROP_BACKOFF = (0.02, 0.5)  # first wait, longest wait (s)


def connect(redis_url: str | None = None, socket_timeout: float = 30.0, *,
            retry_dropped: bool = False, once: bool = False) -> redis.Redis:
    """A client for ``redis_url`` (see :func:`resolve_redis_url`).

    Its connections are named ``nexus_writer_service:<pid>`` (``CLIENT LIST`` tells
    whose they are). With ``retry_dropped``, a command whose connection is dropped is
    sent again (see :data:`DROP_RETRIES`): only for commands that may run twice, as
    reads, acknowledgements and trims do; a publisher's writes may not. With ``once``,
    a command is never sent again, whatever redis-py would do by default (for a quick
    look that must not hold its caller up).
    """
    url = resolve_redis_url(redis_url)
    retry: dict[str, Any] = {}
    if retry_dropped:
        base, cap = _DROP_BACKOFF
        retry = {"retry": Retry(ExponentialBackoff(cap=cap, base=base), DROP_RETRIES),
                 "retry_on_error": [redis.ConnectionError]}
    elif once:
        retry = {"retry": Retry(NoBackoff(), 0)}
    try:
        return redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=5.0,
            health_check_interval=30, client_name=f"nexus_writer_service:{os.getpid()}",
            **retry,
        )
    except ValueError as exc:
        raise ConfigurationError(f"invalid Redis URL {redact(url)!r}: {exc}") from None


#: Error codes of Redis replies (their first word, as errno for system calls) that
#: mean a key holds a value of another kind than ours: written by someone else.
_FOREIGN_CODES = frozenset({"WRONGTYPE"})


def _error_code(exc: redis.ResponseError) -> str:
    """The error code of a Redis error reply: its first word (``ERR``, ``WRONGTYPE``...)."""
    words = str(exc.args[0] if exc.args else "").split(None, 1)
    return words[0] if words else ""


@contextlib.contextmanager
def redis_errors(what: str, foreign_on_error: bool = False) -> Iterator[None]:
    """Translate redis-py errors into ours; ``what`` names the key or operation.

    A key of another kind (``WRONGTYPE``) is a :class:`ForeignKeyError`; so is any
    refusal when ``foreign_on_error`` (for commands whose only refusal is a key holding
    a foreign value, such as ``INCR`` of a key that holds no integer: a generic
    ``ERR``).
    """
    try:
        yield
    except redis.ResponseError as exc:
        if foreign_on_error or _error_code(exc) in _FOREIGN_CODES:
            raise ForeignKeyError(
                f"{what}: a key holds another type of value ({exc}); it was not written "
                "by nexus_writer_service, use another session name or delete the key"
            ) from None
        raise RedisCommandError(f"{what}: Redis refused the command ({exc})") from None
    except redis.AuthenticationError as exc:
        raise RedisUnavailableError(
            f"{what}: Redis refused the credentials ({exc}); check the user and password "
            "in the Redis URL"
        ) from None
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise RedisUnavailableError(
            f"{what}: Redis is unreachable ({exc}); check that the server runs and the URL"
        ) from exc


_T = TypeVar("_T")


def translated(what: str, items: Generator[_T, None, None]) -> Iterator[_T]:
    """``items``, with the redis-py errors raised while producing each one translated
    as :func:`redis_errors` does (for walks over a library that calls Redis itself,
    such as blissdata). Closing it closes ``items``."""
    try:
        while True:
            with redis_errors(what):
                try:
                    item = next(items)
                except StopIteration:
                    return
            yield item
    finally:
        items.close()


# Ends a scan once: records the reason, appends END to the scan stream and to the
# session stream, drops the lease and sets the retention time on every scan key.
# With ARGV[4] == "1" it only acts when the publisher's lease has expired.
_END_SCAN_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HEXISTS', KEYS[1], 'end_reason') == 1 then return 0 end
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[4]) == 1 then return 0 end
local now = redis.call('TIME')
redis.call('HSET', KEYS[1], 'end_reason', ARGV[1], 'end_message', ARGV[2],
           'end_time', now[1] .. '.' .. string.format('%06d', tonumber(now[2])))
redis.call('XADD', KEYS[2], '*', 't', 'end', 'r', ARGV[1], 'm', ARGV[2])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[6], '*', 't', 'end', 'k', ARGV[5], 'r', ARGV[1])
redis.call('DEL', KEYS[4])
local retention = tonumber(ARGV[3])
for _, i in ipairs({1, 2, 5, 6}) do
  if retention > 0 then redis.call('EXPIRE', KEYS[i], retention) end
end
return 1
"""


def end_scan(
    client: Client, scan: ScanKeys, reason: EndReason, message: str = "",
    retention: float = 0, only_if_lease_expired: bool = False,
) -> bool:
    """End the scan with ``reason`` unless it has already ended; True if this call ended it."""
    session = SessionKeys(scan.session)
    keys = [scan.info, scan.events, session.stream, scan.lease, scan.nodes, scan.acks]
    args = [EndReason(reason).value, message, int(retention),
            "1" if only_if_lease_expired else "0", scan.base, SESSION_STREAM_MAXLEN]
    with redis_errors(f"ending scan {scan.base}"):
        result = client.eval(_END_SCAN_LUA, len(keys), *keys, *args)
    return result == 1
