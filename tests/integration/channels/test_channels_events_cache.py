"""EventChannel, Cache and clear_cache, and gevent hub delivery, on a real Redis."""

from __future__ import annotations

import threading
import time

import pytest

from channels import Cache, Channel, EventChannel, GeventHubExecutor, clear_cache
from channels.errors import EncodeError, InvalidTypeError

from .conftest import read_line, wait_for


class Device:
    def __init__(self, name):
        self.name = name


def test_events_arrive_in_order_in_blocks_from_another_process(redis_url, spawn):
    blocks = []

    def receive(events):
        blocks.append(list(events))

    with EventChannel("ev", redis_url=redis_url) as channel:
        channel.register_callback(receive)
        child = spawn("""
            import sys
            from channels import EventChannel
            with EventChannel("ev", redis_url=sys.argv[1]) as c:
                c.post_many([f"event {i}" for i in range(500)])
                for i in range(500, 600):
                    c.post(f"event {i}")
        """, redis_url)
        assert child.wait(30) == 0
        wait_for(lambda: sum(map(len, blocks)) == 600)
        assert [e for block in blocks for e in block] == [f"event {i}" for i in range(600)]
        assert len(blocks) < 600


def test_slow_receiver_loses_nothing(redis_url):
    received = []

    def slow(events):
        time.sleep(0.05)
        received.extend(events)

    with EventChannel("slow", redis_url=redis_url) as receiver, \
            EventChannel("slow", redis_url=redis_url) as sender:
        receiver.register_callback(slow)
        for i in range(2000):
            sender.post(i)
        wait_for(lambda: len(received) == 2000, 30)
        assert received == list(range(2000)) and receiver.lost_events == 0


def test_stuck_receiver_still_connected_loses_nothing_beyond_maxlen(redis_url, redis_client):
    received = []
    entered = threading.Event()
    gate = threading.Event()

    def stuck(events):
        entered.set()
        gate.wait(20)
        received.extend(events)

    with EventChannel("hold", redis_url=redis_url, maxlen=5, block_size=1) as receiver, \
            EventChannel("hold", redis_url=redis_url, maxlen=5) as sender:
        receiver.register_callback(stuck)
        sender.post(-1)
        assert entered.wait(10)
        sender.post_many(range(1000))
        for i in range(1000, 2000):
            sender.post(i)
        assert redis_client.xlen("channels:events:hold") >= 2000
        gate.set()
        wait_for(lambda: len(received) == 2001, 30)
        assert received == list(range(-1, 2000)) and receiver.lost_events == 0


def test_trimming_after_a_receiver_lease_expired_is_reported(redis_url, redis_client, caplog):
    reports = []
    entered = threading.Event()
    gate = threading.Event()

    def stuck(events):
        entered.set()
        gate.wait(10)

    def lost(message):
        reports.append(message)

    with EventChannel("trim", redis_url=redis_url, maxlen=5, block_size=1, lease=0.3,
                      on_lost=lost) as channel:
        channel.register_callback(stuck)
        channel.post("first")
        assert entered.wait(10)
        # stuck in its callback longer than its lease, the receiver is no longer connected
        wait_for(lambda: not redis_client.keys("channels:eventreader:trim:*"), 10, "expiry")
        channel.post_many(range(500))
        gate.set()
        wait_for(lambda: reports, 10, "loss report")
        assert channel.lost_events >= 1 and "trimmed" in reports[0]
    assert "trimmed" in caplog.text


def test_unregistered_receiver_gets_nothing_more_and_its_thread_stops(redis_url):
    got = []

    def receive(events):
        got.extend(events)

    with EventChannel("unreg", redis_url=redis_url) as channel:
        channel.register_callback(receive)
        channel.post(1)
        wait_for(lambda: got == [1])
        channel.unregister_callback(receive)
        assert not [t for t in threading.enumerate() if t.name.startswith("channels-events")]
        channel.post(2)
        with pytest.raises(EncodeError):
            channel.post(object())


def test_cache_is_a_channel_named_after_the_object(redis_url):
    motor = Device("motor1")
    with Cache(motor, "position", default_value="X", redis_url=redis_url) as cache:
        assert cache.name == "motor1:position" and cache.value == "X"
        cache.value = 1.5
        with Channel("motor1:position", redis_url=redis_url) as same:
            assert same.value == 1.5
    with pytest.raises(TypeError) as info:
        Cache(object(), "key", redis_url=redis_url)
    assert isinstance(info.value, InvalidTypeError) and "name" in str(info.value)


def test_clear_cache_resets_the_devices_in_every_process(redis_url, spawn):
    child = spawn("""
        import sys, time
        from channels import Cache
        class Device:
            name = "mca"
        c = Cache(Device(), "params", default_value="default", redis_url=sys.argv[1])
        c.value = "loaded"
        c.flush()
        print("ready", flush=True)
        sys.stdin.readline()
        deadline = time.monotonic() + 10  # the reset reaches this process asynchronously
        while c.value == "loaded" and time.monotonic() < deadline:
            time.sleep(0.01)
        print(c.value, flush=True)
    """, redis_url)
    assert read_line(child) == "ready"
    other = Device("other")
    with Cache(Device("mca"), "params", redis_url=redis_url) as mine, \
            Cache(other, "k", default_value=0, redis_url=redis_url) as kept:
        kept.value = 5
        assert mine.value == "loaded"
        assert clear_cache(Device("mca"), redis_url=redis_url) == 1
        wait_for(lambda: mine.value is None)
        assert kept.value == 5
        child.stdin.write("\n")
        child.stdin.flush()
        assert read_line(child) == "default"
        assert clear_cache(redis_url=redis_url) == 1
        wait_for(lambda: kept.value == 0)


def test_gevent_program_gets_callbacks_in_its_hub_without_patching(redis_url):
    gevent = pytest.importorskip("gevent")
    import gevent.monkey

    got = []
    hub = gevent.get_hub()

    def changed(value):
        got.append((value, gevent.getcurrent() is not hub,
                    threading.current_thread() is threading.main_thread()))

    with GeventHubExecutor() as executor:
        with Channel("green", redis_url=redis_url, callback=changed, executor=executor) as c, \
                Channel("green", redis_url=redis_url) as setter:
            setter.value = "hello"
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                gevent.sleep(0.01)
            assert got == [("hello", True, True)]
            assert c.value == "hello"
    gevent.sleep(0)
    assert not gevent.monkey.is_module_patched("socket")
