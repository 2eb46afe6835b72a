"""Channel across real processes on a real Redis."""

from __future__ import annotations

import gc
import os
import signal
import threading
import time

import numpy
import pytest
import redis

from channels import Channel
from channels.errors import (
    CallbackError,
    ChannelsError,
    ClosedError,
    ConfigurationError,
    EncodeError,
    InvalidArgumentError,
    InvalidTypeError,
    ValueTooLargeError,
)
from channels.codec import Codec

from .conftest import read_line, wait_for

HOLDER = """
import sys, time
from channels import Channel
url, name, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
c = Channel(name, redis_url=url, lease=lease)
c.value = sys.argv[4]
c.flush()
print("ready", flush=True)
sys.stdin.readline()
"""


def _value_key_exists(client: redis.Redis, name: str) -> bool:
    return bool(client.exists(f"channels:value:{name}"))


def test_default_value_is_shared_with_a_channel_without_default(redis_url):
    with Channel("test", default_value=42, redis_url=redis_url) as a:
        assert a.value == 42
        with Channel("test", redis_url=redis_url) as b:
            assert b.value == 42


def test_set_in_another_process_reaches_value_and_callback(redis_url, spawn):
    got = []
    done = threading.Event()

    def changed(value):
        got.append(value)
        done.set()

    with Channel("shared", default_value=0, redis_url=redis_url, callback=changed) as c:
        child = spawn("""
            import sys
            from channels import Channel
            c = Channel("shared", redis_url=sys.argv[1])
            print(c.value, flush=True)
            c.value = {"from": "child", "data": (1, 2)}
            c.close()
        """, redis_url)
        assert read_line(child) == "0"
        assert done.wait(20)
        assert child.wait(20) == 0
        assert got == [{"from": "child", "data": (1, 2)}]
        wait_for(lambda: c.value == {"from": "child", "data": (1, 2)})


def test_value_given_to_a_constructor_in_another_process_is_read_here(redis_url, spawn):
    child = spawn(HOLDER, redis_url, "ctor", "3", "from-child")
    assert read_line(child) == "ready"
    with Channel("ctor", default_value="mine", redis_url=redis_url) as c:
        assert c.value == "from-child"


def test_last_holder_closing_removes_the_value_at_once(redis_url, redis_client):
    c = Channel("gone", redis_url=redis_url, value=numpy.arange(3))
    assert _value_key_exists(redis_client, "gone")
    c.close()
    c.close()
    assert not _value_key_exists(redis_client, "gone")
    with Channel("gone", default_value="default", redis_url=redis_url) as again:
        assert again.value == "default"


def test_garbage_collected_holder_releases_the_channel(redis_url, redis_client):
    keeper = Channel("other", redis_url=redis_url)
    c = Channel("collected", redis_url=redis_url, value=1)
    del c
    gc.collect()
    wait_for(lambda: not _value_key_exists(redis_client, "collected"), 5, "release after gc")
    keeper.close()


def test_clean_exit_of_the_last_holder_removes_the_value(redis_url, redis_client, spawn):
    child = spawn("""
        import sys
        from channels import Channel
        c = Channel("exit", redis_url=sys.argv[1], value="x", lease=60)
        print("ready", flush=True)
    """, redis_url)
    assert read_line(child) == "ready"
    assert child.wait(20) == 0
    assert not _value_key_exists(redis_client, "exit")


def test_last_holder_killed_clears_value_after_its_lease(redis_url, redis_client, spawn):
    child = spawn(HOLDER, redis_url, "killed", "0.5", "v")
    assert read_line(child) == "ready"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(10)
    wait_for(lambda: not _value_key_exists(redis_client, "killed"), 5, "lease expiry")
    with Channel("killed", default_value="d", redis_url=redis_url) as c:
        assert c.value == "d"


def test_two_holders_one_killed_value_kept(redis_url, redis_client, spawn):
    with Channel("pair", redis_url=redis_url, lease=0.5) as mine:
        child = spawn(HOLDER, redis_url, "pair", "0.5", "kept")
        assert read_line(child) == "ready"
        wait_for(lambda: mine.value == "kept")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        time.sleep(1.5)  # three leases of the dead holder: the value must still be there
        assert _value_key_exists(redis_client, "pair")
        assert mine.value == "kept"
        assert redis_client.zcard("channels:holders:pair") == 1


def test_stopped_holder_does_not_block_readers_and_loses_its_lease(
        redis_url, redis_client, spawn):
    child = spawn(HOLDER, redis_url, "stopped", "0.5", "v")
    assert read_line(child) == "ready"
    os.kill(child.pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        with Channel("stopped", redis_url=redis_url, timeout=1.0) as c:
            assert c.value == "v"
            c.value = "w"
        assert time.monotonic() - start < 1.0
        wait_for(lambda: not _value_key_exists(redis_client, "stopped"), 5, "lease expiry")
        with Channel("stopped", default_value="d", redis_url=redis_url) as c:
            assert c.value == "d"
    finally:
        os.kill(child.pid, signal.SIGCONT)


def test_sets_from_two_processes_converge_with_monotonic_versions(redis_url, spawn):
    seen = []
    lock = threading.Lock()

    def changed(value):
        with lock:
            seen.append((c.version, value))

    writer = """
        import sys
        from channels import Channel
        c = Channel("race", redis_url=sys.argv[1])
        print("ready", flush=True)
        sys.stdin.readline()
        for i in range(1000):
            c.value = (sys.argv[2], i)
        c.flush()
        print("done", flush=True)
        sys.stdin.readline()
    """
    with Channel("race", redis_url=redis_url, callback=changed) as c:
        children = [spawn(writer, redis_url, tag) for tag in ("a", "b")]
        for child in children:
            assert read_line(child) == "ready"
        for child in children:
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children:
            assert read_line(child, 60) == "done"
        versions = {}
        for tag in ("a", "b"):
            probe = Channel("race", redis_url=redis_url)
            versions[tag] = (probe.version, probe.value)
            probe.close()
        wait_for(lambda: c.version == versions["b"][0] and c.value == versions["b"][1])
        assert versions["a"] == versions["b"]
        assert versions["a"][1][1] == 999

        def last_seen():
            with lock:
                return seen[-1][1] if seen else None

        # callbacks run after the value is visible: the last one may still be on its way
        wait_for(lambda: last_seen() == c.value)
        with lock:
            values = [value for _, value in seen]
        for tag in ("a", "b"):
            indices = [i for t, i in values if t == tag]
            assert indices == sorted(indices)
        assert values[-1] == c.value


SKEWED_WRITER = """
import sys, time
real_time, real_time_ns = time.time, time.time_ns
offset = float(sys.argv[3])
time.time = lambda: real_time() + offset  # this process's clock is off by offset s
time.time_ns = lambda: real_time_ns() + int(offset * 1e9)
from channels import Channel
c = Channel("skew", redis_url=sys.argv[1], lease=1.0)
print(f"ready {time.time() - real_time():.0f}", flush=True)
sys.stdin.readline()
for i in range(1000):
    c.value = (sys.argv[2], i)
c.flush()
print("done", flush=True)
sys.stdin.readline()
c.close()
"""


def test_sets_from_two_processes_with_skewed_clocks_converge_and_keep_their_leases(
        redis_url, redis_client, spawn):
    seen = []
    lock = threading.Lock()

    def changed(value):
        with lock:
            seen.append((c.version, value))

    skews = {"a": "-3600", "b": "3600"}
    with Channel("skew", redis_url=redis_url, callback=changed, lease=1.0) as c:
        children = {tag: spawn(SKEWED_WRITER, redis_url, tag, skew) for tag, skew in skews.items()}
        for tag, child in children.items():
            assert read_line(child) == f"ready {skews[tag]}"
        for child in children.values():
            child.stdin.write("go\n")
            child.stdin.flush()
        for child in children.values():
            assert read_line(child, 60) == "done"
        with Channel("skew", redis_url=redis_url) as probe:
            final = (probe.version, probe.value)
        wait_for(lambda: (c.version, c.value) == final)
        assert final[1][1] == 999
        wait_for(lambda: seen and seen[-1][1] == final[1], what="callback with the final value")
        with lock:
            versions = [version for version, _ in seen]
            values = [value for _, value in seen]
        assert versions == sorted(versions)
        for tag in skews:
            indices = [i for t, i in values if t == tag]
            assert indices == sorted(indices)
        assert values[-1] == c.value

        # several lease periods later, the skewed holders still hold: nothing expired early
        time.sleep(3.0)
        assert _value_key_exists(redis_client, "skew")
        now_s, now_us = redis_client.time()
        now_ms = now_s * 1000 + now_us // 1000
        holders = redis_client.zrange("channels:holders:skew", 0, -1, withscores=True)
        assert len(holders) == 3
        assert all(now_ms < score <= now_ms + 60_000 for _, score in holders)
        # metadata carries the server's time, not a writer's clock
        from channels.sync import client

        response = client.read("skew", redis_url=redis_url)
        assert response.version == c.version and response.value == final[1]
        assert response.when <= now_s + now_us / 1e6
        writer = children[final[1][0]]
        assert response.who.endswith(f":{writer.pid}")
        for child in children.values():
            child.stdin.write("\n")
            child.stdin.flush()
            assert child.wait(20) == 0
    assert not _value_key_exists(redis_client, "skew")


def test_pipelined_sets_keep_their_order_and_are_read_back_at_once(redis_url, redis_client):
    published = []
    pubsub = redis_client.pubsub()
    pubsub.subscribe(f"channels:{redis_client.get_connection_kwargs()['db']}:update:burst")
    try:
        with Channel("burst", redis_url=redis_url) as c:
            for i in range(2000):
                c.value = i
                assert c.value == i
            c.flush()
            stored = redis_client.hgetall("channels:value:burst")
            assert Codec().decode(stored[b"v"]) == 1999
            assert c.version == int(stored[b"n"])
            while len(published) < 2000:
                message = pubsub.get_message(timeout=10)
                assert message is not None, "missing update messages"
                if message["type"] == "message":
                    published.append(message["data"])
    finally:
        pubsub.close()
    versions = [int(m.split(b" ")[1]) for m in published]
    values = [Codec().decode(m.split(b" ", 5)[5][len(c._link.who):]) for m in published]
    assert values == list(range(2000))
    assert versions == sorted(versions) and len(set(versions)) == 2000


def test_forced_disconnect_resynchronises_and_calls_back(redis_url, redis_client):
    got = []

    def changed(value):
        got.append(value)

    with Channel("resync", default_value=0, redis_url=redis_url, callback=changed) as c:
        redis_client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        redis_client.hset("channels:value:resync", mapping={
            "v": Codec().encode("changed behind our back"),
            "n": redis_client.incr("channels:clock"), "w": "test", "t": 0})
        wait_for(lambda: c.value == "changed behind our back", 10, "resync")
        wait_for(lambda: got == ["changed behind our back"])
        with Channel("resync", redis_url=redis_url) as other:
            other.value = "after"
        wait_for(lambda: c.value == "after")


def test_subscribe_then_snapshot_never_misses_the_latest_value(redis_url, spawn):
    child = spawn("""
        import sys
        from channels import Channel
        c = Channel("snap", redis_url=sys.argv[1])
        c.value = 0
        c.flush()
        print("ready", flush=True)
        i = 1
        while True:
            c.value = i
            i += 1
    """, redis_url)
    assert read_line(child) == "ready"
    for _ in range(20):
        with Channel("snap", redis_url=redis_url) as c:
            last = c.value
            time.sleep(0.01)
            assert c.value is not None and c.value >= last
    child.kill()
    child.wait(10)
    with Channel("snap", redis_url=redis_url) as c, Channel("snap", redis_url=redis_url) as d:
        final = redis.Redis.from_url(redis_url)
        try:
            wait_for(lambda: c.value == d.value)
        finally:
            final.close()


def test_callback_failure_is_logged_and_others_still_run(redis_url, caplog):
    good = []

    def bad(value):
        raise RuntimeError("boom")

    def fine(value):
        good.append(value)

    with Channel("cb", redis_url=redis_url) as c:
        c.register_callback(bad)
        c.register_callback(fine)
        c.value = 1
        c.value = 2
        wait_for(lambda: good == [1, 2])
    assert "boom" in caplog.text


def test_callback_setting_its_own_channel_gets_a_clear_error(redis_url, caplog):
    errors = []

    def loop(value):
        try:
            c.value = value + 1
        except CallbackError as exc:
            errors.append(exc)

    with Channel("loop", redis_url=redis_url, callback=loop) as c:
        c.value = 1
        wait_for(lambda: errors)
        assert "same channel" in str(errors[0])
        assert c.value == 1


def test_callbacks_are_weak_and_can_be_unregistered(redis_url):
    got = []

    class Receiver:
        def on_value(self, value):
            got.append(value)

    receiver = Receiver()
    with Channel("weak", redis_url=redis_url) as c:
        c.register_callback(receiver.on_value)
        c.value = 1
        wait_for(lambda: got == [1])
        del receiver
        gc.collect()
        c.value = 2
        seen = []

        def see(value):
            seen.append(value)

        def lambda_like(value):
            got.append(value)

        c.register_callback(see)
        c.register_callback(lambda_like)
        del lambda_like
        c.value = 3
        wait_for(lambda: seen[-1:] == [3])
        c.unregister_callback(see)
        c.value = 4
        probe = []

        def later(value):
            probe.append(value)

        c.register_callback(later)
        c.value = 5
        wait_for(lambda: probe[-1:] == [5])
        assert got == [1] and 4 not in seen


def test_a_change_already_visible_is_not_reported_to_a_callback_registered_later(
        redis_url):
    """The notification of a change can still be queued when a callback registers."""

    class HeldExecutor:
        def __init__(self):
            self.held = []
            self.release = False

        def submit(self, func, *args):
            if self.release:
                func(*args)
            else:
                self.held.append((func, args))

    executor = HeldExecutor()
    first, second = [], []

    def on_first(value):
        first.append(value)

    def on_second(value):
        second.append(value)

    with Channel("visible", redis_url=redis_url, executor=executor,
                 callback=on_first) as c, \
            Channel("visible", redis_url=redis_url) as other:
        other.value = 1
        other.flush()
        wait_for(lambda: c.value == 1 and executor.held)
        c.register_callback(on_second)
        executor.release = True
        for func, args in executor.held:
            func(*args)
        assert first == [1] and second == []
        other.value = 2
        wait_for(lambda: first == [1, 2] and second == [2])


def test_bad_inputs_get_clear_errors(redis_url, monkeypatch):
    with pytest.raises(InvalidArgumentError):
        Channel("", redis_url=redis_url)
    with pytest.raises(InvalidTypeError):
        Channel(3, redis_url=redis_url)  # type: ignore[arg-type]
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        Channel("x")
    monkeypatch.setenv("REDIS_URL", redis_url)
    with Channel("x", codec=Codec(max_size=64)) as c:
        with pytest.raises(TypeError) as info:
            c.value = object()
        assert isinstance(info.value, EncodeError)
        with pytest.raises(ValueError) as too_big:
            c.value = "x" * 100
        assert isinstance(too_big.value, ValueTooLargeError)
        with pytest.raises(TypeError):
            c.register_callback(42)  # type: ignore[arg-type]
        assert c.value is None
    with pytest.raises(ClosedError):
        c.value = 1


def test_redis_unreachable_gives_a_channels_error_within_the_timeout(tmp_path):
    from nexus_writer_service.embedded import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    start = time.monotonic()
    with pytest.raises(ChannelsError) as info:
        Channel("x", redis_url=url, timeout=0.5)
    assert isinstance(info.value, (TimeoutError, ConnectionError))
    assert time.monotonic() - start < 2.0
    assert "127.0.0.1" in str(info.value)


def test_redis_restart_errors_within_timeout_then_recovers(tmp_path):
    from nexus_writer_service.embedded import EmbeddedRedis, free_port
    from channels.sync import client

    port = free_port()
    server = EmbeddedRedis(port=port, workdir=tmp_path)
    server.start()
    try:
        url = f"{server.url}/0"
        got = []

        def changed(value):
            got.append(value)

        with Channel("phoenix", redis_url=url, timeout=0.5, callback=changed, lease=1) as c:
            c.value = 1
            server.stop()
            start = time.monotonic()
            with pytest.raises(ChannelsError) as info:
                c.value = 2
                c.flush()
            assert isinstance(info.value, (TimeoutError, ConnectionError))
            assert time.monotonic() - start < 1.5
            server.start()

            def recovered():
                try:
                    client.write("phoenix", 3, redis_url=url)
                except ChannelsError:
                    return False
                return 3 in got

            wait_for(recovered, 15, "recovery after restart")
            c.value = 4
            assert c.value == 4
    finally:
        server.cleanup()


def test_a_set_that_could_not_reach_redis_is_raised_by_a_later_set(tmp_path):
    from nexus_writer_service.embedded import EmbeddedRedis, free_port

    server = EmbeddedRedis(port=free_port(), workdir=tmp_path)
    server.start()
    try:
        url = f"{server.url}/0"
        with Channel("lost", redis_url=url, timeout=0.5) as c:
            c.value = 1
            c.flush()
            server.stop()
            c.value = 2  # queued: the failure is known later
            errors = []

            def a_later_set_raises():
                try:
                    c.value = 3
                except ChannelsError as exc:
                    errors.append(exc)
                    return True
                return False

            wait_for(a_later_set_raises, 10, "the error of the lost set")
            assert isinstance(errors[0], ConnectionError)
            assert "setting channel 'lost'" in str(errors[0])
            server.start()
            c.value = 4
            c.flush()
            assert c.value == 4
    finally:
        server.cleanup()


def test_setting_after_the_server_forgot_its_scripts_loads_them_again(
        redis_url, redis_client):
    """SCRIPT FLUSH (or a restarted server) answers NOSCRIPT: the set is sent again with
    the script, not failed."""
    with Channel("flushed", default_value=0, redis_url=redis_url) as channel:
        channel.value = 1
        redis_client.script_flush()
        channel.value = 2
        with Channel("flushed", redis_url=redis_url) as other:
            assert other.value == 2
