"""The synchronous client and the command-line tools, on a real Redis."""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time

import pytest

from channels import Channel, cli
from channels.errors import ChannelsError, InvalidTypeError
from channels.sync import client

from .conftest import wait_for


def test_read_gives_value_and_metadata(redis_url):
    with Channel("r", redis_url=redis_url, value=[1, 2]) as c:
        response = client.read("r", redis_url=redis_url)
        assert response.value == [1, 2] and response.present
        assert response.version == c.version and ":" in response.who
        assert abs(response.when - time.time()) < 60
    assert not client.read("r", redis_url=redis_url).present


def test_write_notify_confirms_and_read_write_read_sandwiches(redis_url):
    with Channel("w", redis_url=redis_url, value=1) as c:
        assert client.write("w", 2, redis_url=redis_url) is None
        confirmation = client.write("w", 3, notify=True, redis_url=redis_url)
        assert confirmation is not None and confirmation.version > confirmation.previous_version
        before, written, after = client.read_write_read("w", 4, notify=True,
                                                        redis_url=redis_url)
        assert (before.value, after.value) == (3, 4) and written is not None
        assert after.version == written.version
        wait_for(lambda: c.value == 4)


def test_subscription_tokens_weak_callbacks_and_duration(redis_url):
    responses = []

    def record(response):
        responses.append(response.value)

    sub = client.subscribe("s", redis_url=redis_url)
    token = sub.add_callback(record)
    dropped = sub.add_callback(lambda response: responses.append("lambda"))
    assert isinstance(token, int) and token != dropped
    gc.collect()
    assert list(sub.callbacks) == [token]
    with Channel("s", redis_url=redis_url, value="a") as c:
        def writer():
            time.sleep(0.2)
            c.value = "b"

        thread = threading.Thread(target=writer)
        thread.start()
        start = time.monotonic()
        sub.block(duration=0.6)
        thread.join()
        assert 0.55 < time.monotonic() - start < 3
    assert responses == ["a", "b"]
    sub.remove_callback(token)
    sub.clear()
    assert not sub.callbacks
    with pytest.raises(InvalidTypeError):
        sub.add_callback(3)  # type: ignore[arg-type]


def test_interrupt_before_block_is_honoured(redis_url):
    sub = client.subscribe("i", redis_url=redis_url)
    sub.interrupt()
    start = time.monotonic()
    sub.block()
    client.interrupt()
    client.block(sub)
    assert time.monotonic() - start < 1


def test_interrupting_one_thread_does_not_stop_another(redis_url):
    subs = {name: client.subscribe("p", redis_url=redis_url) for name in ("a", "b")}
    ended = {}
    threads = {}
    for name, sub in subs.items():
        def run(name=name, sub=sub):
            client.block(sub, duration=30)
            ended[name] = time.monotonic()
        threads[name] = threading.Thread(target=run, name=f"block-{name}")
        threads[name].start()
    time.sleep(0.3)
    client.interrupt(threads["a"])
    threads["a"].join(5)
    assert "a" in ended and "b" not in ended
    subs["b"].interrupt()
    threads["b"].join(5)
    assert "b" in ended


def test_keyboard_interrupt_from_a_callback_ends_block_cleanly(redis_url):
    def stop(response):
        raise KeyboardInterrupt

    sub = client.subscribe("k", redis_url=redis_url)
    sub.add_callback(stop)
    sub.block(duration=10)


def test_sync_errors_are_clear(redis_url):
    from nexus_writer_service.embedded import free_port

    with pytest.raises(ChannelsError) as info:
        client.read("x", redis_url=f"redis://127.0.0.1:{free_port()}", timeout=0.5)
    assert isinstance(info.value, ConnectionError) or isinstance(info.value, TimeoutError)
    with pytest.raises(TypeError):
        client.write("x", object(), redis_url=redis_url)
    with pytest.raises(ValueError):
        client.read("", redis_url=redis_url)


def test_cli_put_get_exit_codes_and_format(redis_url, capsys):
    with Channel("cli", redis_url=redis_url, value=1):
        assert cli.put_main(["cli", '{"a": [1, 2]}', "--redis-url", redis_url]) == 0
        out = capsys.readouterr().out
        assert "Old : cli 1" in out and "New : cli {'a': [1, 2]}" in out
        assert cli.get_main(["cli", "--redis-url", redis_url, "--format",
                             "{name}={value} v{version}"]) == 0
        assert capsys.readouterr().out.startswith("cli={'a': [1, 2]} v")
        assert cli.get_main(["cli", "--redis-url", redis_url, "--format", "{nope}"]) == 1
        assert "bad --format" in capsys.readouterr().err
    assert cli.get_main(["missing", "--redis-url", redis_url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("channels-get: error: no value") and err.count("\n") == 1


def test_cli_reports_unreachable_redis_in_one_line(monkeypatch):
    from nexus_writer_service.embedded import free_port

    monkeypatch.delenv("REDIS_URL", raising=False)
    proc = subprocess.run(
        [sys.executable, "-m", "channels.cli", "get", "x", "--timeout", "0.5",
         "--redis-url", f"redis://127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("channels-get: error:")
    proc = subprocess.run([sys.executable, "-m", "channels.cli", "get", "x"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "REDIS_URL" in proc.stderr


def test_cli_monitor_maximum_and_duration(redis_url):
    with Channel("mon", redis_url=redis_url, value=0) as c:
        proc = subprocess.Popen(
            [sys.executable, "-m", "channels.cli", "monitor", "mon", "--maximum", "3",
             "--duration", "30", "--redis-url", redis_url, "--format", "{value}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "0"
            c.value = 1
            c.value = 2
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 0, err
            assert out.split() == ["1", "2"]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert cli.monitor_main(["mon", "--duration", "0.2", "--redis-url", redis_url]) == 0
