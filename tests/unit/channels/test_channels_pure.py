"""Pure helpers: errors, URLs, names, update messages, lease settings."""

from __future__ import annotations

import pytest

from channels import errors
from channels.channel import DEFAULT_LEASE, resolve_lease
from channels.connection import Namespace, check_name, check_timeout, redact, resolve_url
from channels.store import parse_update


@pytest.mark.parametrize("cls, builtin", [
    (errors.ChannelsTimeoutError, TimeoutError),
    (errors.ChannelsConnectionError, ConnectionError),
    (errors.ConfigurationError, ValueError),
    (errors.EncodeError, TypeError),
    (errors.ValueTooLargeError, ValueError),
    (errors.DecodeError, ValueError),
    (errors.CallbackError, RuntimeError),
    (errors.ClosedError, RuntimeError),
])
def test_every_error_is_a_channels_error_and_its_builtin(cls, builtin):
    assert issubclass(cls, errors.ChannelsError) and issubclass(cls, builtin)


def test_url_argument_wins_over_environment(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://env:1/0")
    assert resolve_url("redis://arg:2/0") == "redis://arg:2/0"
    assert resolve_url() == "redis://env:1/0"


def test_environment_is_read_at_call_time(monkeypatch):
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(errors.ConfigurationError, match="REDIS_URL"):
        resolve_url()
    monkeypatch.setenv("REDIS_URL", "unix:///tmp/r.sock?db=2")
    assert resolve_url() == "unix:///tmp/r.sock?db=2"


@pytest.mark.parametrize("url", ["http://x", "localhost:6379"])
def test_unsupported_url_schemes_are_refused(url):
    with pytest.raises(errors.ConfigurationError, match="redis://"):
        resolve_url(url)


def test_passwords_never_appear_in_shown_urls():
    assert redact("redis://user:secret@host:1/0") == "redis://user:***@host:1/0"
    assert redact("rediss://:secret@host") == "rediss://:***@host"
    assert redact("unix:///s?db=1&password=secret") == "unix:///s?db=1&password=***"


@pytest.mark.parametrize("name, error", [
    ("", errors.InvalidArgumentError), (None, errors.InvalidTypeError),
    (b"x", errors.InvalidTypeError), (3, errors.InvalidTypeError),
])
def test_bad_names_are_refused(name, error):
    with pytest.raises(error):
        check_name(name)


@pytest.mark.parametrize("timeout", [0, -1, "1", True])
def test_bad_timeouts_are_refused(timeout):
    with pytest.raises(errors.ChannelsError):
        check_timeout(timeout)


def test_pubsub_names_carry_the_database_index():
    assert Namespace(3).update_channel("a") != Namespace(4).update_channel("a")
    ns = Namespace(3)
    assert ns.name_of_update_channel(ns.update_channel("a:b c").encode()) == "a:b c"
    assert ns.value_key_pattern("x*[") == r"channels:value:x\*\[*"


def test_update_messages_parse_and_malformed_ones_are_refused():
    update = parse_update(b"s 7 5 1700000000000000 6 host:1\x00 bytes")
    assert (update.version, update.previous, update.who, update.data) == (
        7, 5, "host:1", b"\x00 bytes")
    assert not update.cleared
    assert parse_update(b"c 8 7 1 0 ").cleared
    for bad in (b"x 1 0 1 0 ", b"s 1 0 1 9 ab", b"s 1"):
        with pytest.raises(ValueError):
            parse_update(bad)


def test_lease_comes_from_argument_then_environment(monkeypatch):
    monkeypatch.delenv("CHANNELS_LEASE", raising=False)
    assert resolve_lease(None) == DEFAULT_LEASE
    monkeypatch.setenv("CHANNELS_LEASE", "0.5")
    assert resolve_lease(None) == 0.5
    assert resolve_lease(2) == 2.0
    monkeypatch.setenv("CHANNELS_LEASE", "soon")
    with pytest.raises(errors.ConfigurationError):
        resolve_lease(None)
    with pytest.raises(errors.InvalidArgumentError):
        resolve_lease(0.0)
