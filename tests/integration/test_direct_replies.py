"""Replies read by the data layer's own RESP parser (``_fast_redis.DirectCommand``)
against a real server, over every kind of URL (password, ACL user, unix socket, TLS)
and both protocols: the same values as redis-py's own reading, large payloads in
read-only arrays, errors and timeouts as redis-py gives them."""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pytest
import redis
from redis.client import NEVER_DECODE

from nexus_writer_service.data._fast_redis import DIRECT_BYTES, DirectCommand
from tests.tls_proxy import URL_KINDS, endpoint, secured_redis


@pytest.fixture(scope="module")
def server() -> Iterator[Any]:
    with secured_redis() as secured:
        yield secured


def plain(value: Any) -> Any:
    """A reply with its arrays as bytes and its maps as lists of pairs (for ==)."""
    if isinstance(value, np.ndarray):
        return value.tobytes()
    if isinstance(value, dict):
        return [[plain(k), plain(v)] for k, v in value.items()]
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def redis_pys(client: redis.Redis, *args: Any) -> Any:
    raw = redis.Redis(connection_pool=client.connection_pool)
    raw.response_callbacks.clear()
    return raw.execute_command(*args, **{NEVER_DECODE: True})


def payloads(seed: int) -> list[bytes]:
    rng = np.random.default_rng(seed)
    sizes = [0, 1, 100, DIRECT_BYTES - 1, DIRECT_BYTES, DIRECT_BYTES + 3, 3 << 20]
    return [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for size in sizes]


@pytest.mark.parametrize("protocol", [2, 3])
@pytest.mark.parametrize("kind", URL_KINDS)
def test_a_direct_reply_is_what_redis_py_reads(kind: str, protocol: int, server: Any
                                               ) -> None:
    with endpoint(kind, server, 3) as (url, _):
        client = redis.Redis.from_url(url, protocol=protocol)
        command = DirectCommand(client)
        try:
            client.flushdb()
            for i, payload in enumerate(payloads(protocol)):
                client.xadd("a", {"payload": payload, "len": i}, id=f"{i}-1")
                client.xadd("b", {"payload": payload[:7]}, id=f"{i}-1")
            args = ("XREAD", "COUNT", 5, "STREAMS", "a", "b", "0-0", "0-0")
            for _ in range(2):  # the connection serves on
                reply = command(*args)
                assert plain(reply) == plain(redis_pys(client, *args))
                args = ("XREAD", "COUNT", 100, "STREAMS", "a", "b", "4-0", "4-0")
            entries = (reply if isinstance(reply, dict) else dict(reply))[b"a"]
            big = entries[-1][1][1]
            assert len(big) == 3 << 20
            if kind != "tls":  # (TLS: read by redis-py, as bytes)
                assert isinstance(big, np.ndarray) and not big.flags.writeable
            assert command("XREAD", "BLOCK", 10, "STREAMS", "empty", "$") is None
            assert command("PING") == b"PONG"
        finally:
            command.close()
            client.close()


def test_an_error_reply_is_raised_and_the_connection_serves_on(server: Any) -> None:
    with endpoint("unix", server, 4) as (url, _):
        client = redis.Redis.from_url(url)
        command = DirectCommand(client)
        try:
            client.set("text", "x")
            with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
                command("XREAD", "STREAMS", "text", "0-0")
            assert command("GET", "text") == b"x"
        finally:
            command.close()
            client.close()


def test_a_reply_that_does_not_come_in_time_raises_redis_pys_timeout(server: Any
                                                                     ) -> None:
    with endpoint("password", server, 5) as (url, _):
        client = redis.Redis.from_url(url, socket_timeout=0.2)
        command = DirectCommand(client)
        try:
            with pytest.raises(redis.TimeoutError):
                command("XREAD", "BLOCK", 1000, "STREAMS", "empty", "$")
            assert command("PING") == b"PONG"
        finally:
            command.close()
            client.close()


@pytest.mark.parametrize("kind", ["password", "unix"])
def test_a_connection_the_server_closed_is_replaced_and_the_reply_still_comes(
        kind: str, server: Any) -> None:
    with endpoint(kind, server, 6) as (url, _):
        client = redis.Redis.from_url(url)
        command = DirectCommand(client)
        try:
            client.flushdb()
            client.xadd("a", {"payload": bytes(DIRECT_BYTES)}, id="1-1")
            own = command("CLIENT", "ID")
            client.execute_command("CLIENT", "KILL", "ID", own)
            reply = command("XREAD", "STREAMS", "a", "0-0")
            assert plain(reply) == plain(redis_pys(client, "XREAD", "STREAMS", "a", "0-0"))
            again = command("CLIENT", "ID")
            assert again != own
            assert command("CLIENT", "ID") == again  # its new connection, kept
        finally:
            command.close()
            client.close()
