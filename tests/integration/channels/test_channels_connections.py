"""Every kind of Redis URL with Channel, EventChannel, the sync client and the CLI.

One embedded server needs a password and has an ACL user and a unix socket; TLS goes
through a test proxy (``tests/tls_proxy.py``) since the embedded server has no TLS.
Each test uses the URL both explicitly (``redis_url=``/``--redis-url``) and through the
``REDIS_URL`` environment variable of a child process.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import textwrap
import threading
from typing import Iterator

import pytest
import redis

from channels import Channel, EventChannel
from channels.errors import ChannelsConnectionError, ChannelsError
from channels.sync import client

from tests.tls_proxy import URL_KINDS, TLSProxy, endpoint, secured_redis
from .conftest import read_line, wait_for

_DBS = itertools.cycle(range(1, 16))
WRONG = "Wrong-pw-9876"


@pytest.fixture(scope="module")
def server():
    with secured_redis() as secured:
        yield secured


@contextlib.contextmanager
def url_of(kind, server) -> Iterator[tuple[str, TLSProxy | None]]:
    db = next(_DBS)
    with endpoint(kind, server, db) as (url, proxy):
        flusher = redis.Redis.from_url(url)
        try:
            flusher.flushdb()
        finally:
            flusher.close()
        yield url, proxy


@contextlib.contextmanager
def child(code: str, env_url: str | None, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``python -c code args`` with REDIS_URL set to ``env_url``; killed by PID after."""
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    if env_url is not None:
        env["REDIS_URL"] = env_url
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def cli(env_url: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("REDIS_URL", None)
    if env_url is not None:
        env["REDIS_URL"] = env_url
    return subprocess.run([sys.executable, "-m", "channels.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def assert_through_tls(proxy: TLSProxy | None, clients: int) -> None:
    """For TLS URLs: the proxy completed a TLS handshake with each of the clients."""
    if proxy is None:
        return
    assert proxy.handshakes >= clients
    assert proxy.versions and all(v.startswith("TLSv1") for v in proxy.versions)


@pytest.mark.parametrize("kind", URL_KINDS)
def test_channel_shares_values_between_processes_over(kind, server):
    got = []
    changed_event = threading.Event()

    def changed(value):
        got.append(value)
        changed_event.set()

    with url_of(kind, server) as (url, proxy):
        with Channel("conn", default_value="here", redis_url=url, callback=changed) as c:
            with child("""
                from channels import Channel
                c = Channel("conn")  # the URL comes from REDIS_URL
                print(c.value, flush=True)
                c.value = "from child"
                c.flush()
                print("set", flush=True)
                c.close()
            """, url) as proc:
                assert read_line(proc) == "here"
                assert read_line(proc) == "set"
                assert proc.wait(20) == 0
            assert changed_event.wait(10)
            assert got == ["from child"]
            wait_for(lambda: c.value == "from child")
        assert_through_tls(proxy, 2)


@pytest.mark.parametrize("kind", URL_KINDS)
def test_event_channel_delivers_events_between_processes_over(kind, server):
    received = []

    def receive(events):
        received.extend(events)

    with url_of(kind, server) as (url, proxy):
        with EventChannel("conn-events", redis_url=url) as receiver:
            receiver.register_callback(receive)
            with child("""
                from channels import EventChannel
                with EventChannel("conn-events") as sender:  # URL from REDIS_URL
                    sender.post_many(range(100))
                    sender.post("last")
            """, url) as proc:
                assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
            wait_for(lambda: len(received) == 101)
            assert received == [*range(100), "last"]
            receiver.unregister_callback(receive)
        assert_through_tls(proxy, 2)


@pytest.mark.parametrize("kind", URL_KINDS)
def test_sync_client_and_cli_read_and_write_over(kind, server, monkeypatch):
    with url_of(kind, server) as (url, proxy):
        with Channel("conn-sync", default_value=1, redis_url=url) as held:
            written = client.write("conn-sync", 5, notify=True, redis_url=url)
            assert written is not None and written.version > 0
            assert client.read("conn-sync", redis_url=url).value == 5
            monkeypatch.setenv("REDIS_URL", url)
            before, _, after = client.read_write_read("conn-sync", 6)
            assert (before.value, after.value) == (5, 6)
            monkeypatch.delenv("REDIS_URL")

            put = cli(None, "put", "conn-sync", "7", "--redis-url", url)
            assert put.returncode == 0, put.stderr
            assert put.stdout.splitlines() == ["Old : conn-sync 6", "New : conn-sync 7"]
            get = cli(url, "get", "conn-sync", "--format", "{value}")
            assert get.returncode == 0, get.stderr
            assert get.stdout.strip() == "7"
            wait_for(lambda: held.value == 7)
        assert_through_tls(proxy, 4)


@pytest.mark.parametrize("kind", URL_KINDS)
def test_wrong_password_gives_a_clear_error_without_the_password(kind, server):
    with endpoint(kind, server, 1, password=WRONG) as (url, _):
        with pytest.raises(ChannelsConnectionError) as info:
            Channel("conn-bad", redis_url=url, timeout=2)
        message = str(info.value)
        assert "credentials" in message and WRONG not in message and "***" in message

        with EventChannel("conn-bad", redis_url=url, timeout=2) as events:
            with pytest.raises(ChannelsConnectionError) as info:
                events.post(1)
        assert "credentials" in str(info.value) and WRONG not in str(info.value)

        with pytest.raises(ChannelsConnectionError) as info:
            client.read("conn-bad", redis_url=url)
        assert "credentials" in str(info.value) and WRONG not in str(info.value)

        result = cli(url, "get", "conn-bad")
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "credentials" in result.stderr
        assert WRONG not in result.stderr + result.stdout


def test_tls_proxy_refuses_plain_text_clients(server):
    with url_of("tls", server) as (url, proxy):
        assert proxy is not None
        plain = f"redis://alice:pw@127.0.0.1:{proxy.port}/1"
        handshakes = proxy.handshakes
        with pytest.raises(ChannelsError):
            Channel("plain", redis_url=plain, timeout=2)
        assert proxy.handshakes == handshakes
        with Channel("tls", redis_url=url, timeout=2) as c:
            c.value = 1
            c.flush()
        assert proxy.handshakes > handshakes
        assert_through_tls(proxy, 1)


def test_tls_without_the_ca_is_refused(server):
    with url_of("tls", server) as (url, proxy):
        assert proxy is not None
        untrusted = url.split("?", 1)[0] + "?ssl_cert_reqs=required"
        with pytest.raises(ChannelsConnectionError) as info:
            Channel("untrusted", redis_url=untrusted, timeout=2)
        assert "certificate" in str(info.value).lower()
