"""Where the Redis server is, and how to talk to it with bounded waits.

The URL comes from the caller's ``redis_url`` argument, else from the ``REDIS_URL``
environment variable read *at call time*, else a :class:`ConfigurationError`.
Supported forms are those of redis-py: ``redis://[[user]:password@]host[:port][/db]``,
``rediss://...`` (TLS), ``unix:///path/to/socket[?db=N&password=...]``. Query
parameters go through to redis-py, e.g. for TLS
``rediss://host:6380/0?ssl_ca_certs=/path/ca.pem&ssl_cert_reqs=required`` (also
``ssl_certfile``, ``ssl_keyfile`` for a client certificate).

Every client made here has socket and connect timeouts, and retries a failed
command at most once (to get past a connection the server closed while it sat idle
in the pool). Redis errors are translated into :mod:`channels.errors` with the
password removed from the URL shown.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import uuid
from typing import Any, Iterator

import redis
import redis.backoff
import redis.exceptions
import redis.retry

from .errors import (
    ChannelsConnectionError,
    ChannelsTimeoutError,
    ConfigurationError,
    InvalidArgumentError,
    InvalidTypeError,
    ServerError,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "resolve_url",
    "redact",
    "make_client",
    "make_connection",
    "Namespace",
    "translate_errors",
    "check_name",
    "check_timeout",
    "default_who",
    "read_epoch",
]

DEFAULT_TIMEOUT = 3.0
"""Seconds any single blocking operation may take when no timeout is given."""

_SCHEMES = ("redis://", "rediss://", "unix://")


def resolve_url(redis_url: str | None = None) -> str:
    """The Redis URL to use: the argument, else ``$REDIS_URL`` (read now, never at
    import), else a clear error. An empty argument counts as not given, as an unset
    device property does. The one rule of both packages."""
    url = redis_url if redis_url else os.environ.get("REDIS_URL")
    if url is None or url == "":
        raise ConfigurationError(
            "no Redis URL: pass redis_url='redis://host:port/db' or set the REDIS_URL "
            "environment variable"
        )
    if not isinstance(url, str):
        raise InvalidTypeError(f"redis_url must be a str, not {type(url).__name__}")
    if not url.startswith(_SCHEMES):
        raise ConfigurationError(
            f"unsupported Redis URL {redact(url)!r}: expected redis://, rediss:// or "
            "unix://"
        )
    return url


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (safe to log and show)."""
    url = re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)
    return re.sub(r"(password=)[^&]*", r"\1***", url)


def _retry() -> redis.retry.Retry:
    return redis.retry.Retry(
        redis.backoff.NoBackoff(), 1,
        supported_errors=(redis.exceptions.ConnectionError,),
    )


def make_client(url: str, timeout: float) -> redis.Redis:
    """A redis-py client (with its own pool) whose every socket wait is bounded."""
    options: dict[str, Any] = {}
    if not url.startswith("unix://"):  # unix socket connections take no keepalive option
        options["socket_keepalive"] = True
    try:
        return redis.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=_retry(),
            protocol=2, **options,
        )
    except ValueError as exc:
        raise ConfigurationError(f"malformed Redis URL {redact(url)!r}: {exc}") from exc


def make_connection(client: redis.Redis) -> Any:
    """A dedicated connection (for pub/sub), not shared with the client's pool."""
    conn: Any = client.connection_pool.make_connection()
    conn.retry = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
    return conn


class Namespace:
    """Key and pub/sub names for one database.

    Keys are per database in Redis, pub/sub channel names are not: they carry the
    database index so that users of different databases never see each other.
    """

    prefix = "channels"

    def __init__(self, db: int) -> None:
        self.db = db
        self.clock = f"{self.prefix}:clock"
        self.epoch = f"{self.prefix}:epoch"
        self.caches = f"{self.prefix}:caches"
        self.update_pattern = f"{self.prefix}:{db}:update:*"
        self._update_prefix = f"{self.prefix}:{db}:update:".encode()

    @classmethod
    def of(cls, client: redis.Redis) -> "Namespace":
        return cls(int(client.connection_pool.connection_kwargs.get("db", 0) or 0))

    def value_key(self, name: str) -> str:
        return f"{self.prefix}:value:{name}"

    def holders_key(self, name: str) -> str:
        return f"{self.prefix}:holders:{name}"

    def events_key(self, name: str) -> str:
        return f"{self.prefix}:events:{name}"

    def event_readers_key(self, name: str) -> str:
        return f"{self.prefix}:eventreaders:{name}"

    def event_reader_prefix(self, name: str) -> str:
        return f"{self.prefix}:eventreader:{name}"

    def update_channel(self, name: str) -> str:
        return f"{self.prefix}:{self.db}:update:{name}"

    def name_of_update_channel(self, channel: bytes) -> str | None:
        if channel.startswith(self._update_prefix):
            return channel[len(self._update_prefix):].decode("utf-8", "surrogateescape")
        return None

    def value_key_pattern(self, name_prefix: str) -> str:
        escaped = re.sub(r"([*?\[\]\\])", r"\\\1", name_prefix)
        return f"{self.prefix}:value:{escaped}*"


@contextlib.contextmanager
def translate_errors(url: str, what: str, timeout: float | None = None) -> Iterator[None]:
    """Turn redis-py exceptions raised inside the block into :mod:`channels.errors`."""
    try:
        yield
    except redis.exceptions.AuthenticationError as exc:
        raise ChannelsConnectionError(
            f"{what}: Redis at {redact(url)} refused the credentials ({exc}); "
            "check the user and password in the URL"
        ) from exc
    except (redis.exceptions.TimeoutError, socket.timeout) as exc:
        raise ChannelsTimeoutError(
            f"{what}: no answer from Redis at {redact(url)} within {timeout} s ({exc}); "
            "check that the server is running and not overloaded, or raise the timeout"
        ) from exc
    except redis.exceptions.ConnectionError as exc:
        raise ChannelsConnectionError(
            f"{what}: cannot talk to Redis at {redact(url)} ({exc}); "
            "check that the server is running and the URL is right"
        ) from exc
    except redis.exceptions.ResponseError as exc:
        raise ServerError(f"{what}: Redis at {redact(url)} answered with an error: {exc}") from exc
    except redis.exceptions.RedisError as exc:
        raise ChannelsConnectionError(f"{what}: Redis error at {redact(url)}: {exc}") from exc


def check_name(name: object) -> str:
    """``name`` if it is a usable channel name, else a clear error."""
    if not isinstance(name, str):
        raise InvalidTypeError(f"channel name must be a str, not {type(name).__name__}")
    if not name:
        raise InvalidArgumentError("channel name must not be empty")
    return name


def check_timeout(timeout: object) -> float:
    """``timeout`` as a positive float (``None`` means :data:`DEFAULT_TIMEOUT`)."""
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise InvalidTypeError(f"timeout must be a number of seconds, not {timeout!r}")
    if not timeout > 0:
        raise InvalidArgumentError(f"timeout must be > 0 seconds, not {timeout!r}")
    return float(timeout)


def read_epoch(conn: Any, ns: Namespace) -> bytes:
    """The data epoch of the database, on a raw connection (one round trip).

    ``channels:epoch`` holds a random token, created by the first process that asks.
    When the server loses its data (restart without persistence, flush), the key goes
    and the next process creates a new one: a changed epoch tells a process that the
    versions it knows no longer mean anything.
    """
    token = uuid.uuid4().hex.encode()
    conn.send_command("SET", ns.epoch, token, "NX", "GET")
    old = conn.read_response()
    return bytes(old) if old else token


def default_who() -> str:
    """How this process is named in the metadata of values it sets: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"
