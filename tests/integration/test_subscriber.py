"""The Subscriber base class over a real Redis server, in its three modes."""

from __future__ import annotations

import re
import threading
import time

import gevent
import numpy as np
import pytest
import redis

from nexus_writer_service.concurrency import Event, Thread
from nexus_writer_service.data import EventType, Publisher, get_scan_node
from nexus_writer_service.errors import ConfigurationError, SubscriberStateError, WaitTimeout
from nexus_writer_service.subscribers import Subscriber, SubscriberMode, SubscriberState

MODES = list(SubscriberMode)
NPOINTS = 30


class Recorder(Subscriber):
    """Records every event with the thread it was processed in."""

    def __init__(self, *args, poison=None, **kwargs):
        super().__init__(*args, poll_interval=0.05, **kwargs)
        self.events = []
        self.threads = set()
        self.poison = poison
        self.stopped_in = None
        self.first_event = Event()

    def _process_event(self, event_type, node, event_data):
        self.threads.add(threading.get_ident())
        if self.poison is not None and self.poison(event_type, node):
            raise ValueError(f"cannot process {event_type.value} of {node.name}")
        self.events.append((event_type, node.name, event_data))
        self.first_event.send()

    def _on_stop(self):
        self.stopped_in = threading.get_ident()

    def channel_data(self, name):
        blocks = [d.data for t, n, d in self.events if t is EventType.NEW_DATA and n == name]
        return np.concatenate(blocks) if blocks else np.empty(0)


@pytest.fixture
def publisher(redis_url):
    pub = Publisher("sess", redis_url, lease=2.0, retention=60)
    try:
        yield pub
    finally:
        pub.close()


def publish_scan(publisher, end=True, npoints=NPOINTS):
    """A scan with a counter and a spectrum; returns (scan publisher, data sent)."""
    scan = publisher.create_scan({"title": "subscriber test"})
    scan.add_channel("diode", "<f8")
    scan.add_channel("mca", "<u4", (4,))
    scan.prepare()
    sent = {
        "diode": np.arange(npoints, dtype="<f8") * 0.5,
        "mca": np.arange(npoints * 4, dtype="<u4").reshape(npoints, 4),
    }
    for start in range(0, npoints, 10):
        scan.send({name: data[start:start + 10] for name, data in sent.items()})
    if end:
        scan.end()
    return scan, sent


@pytest.fixture
def worker():
    thread = Thread(name="scan-consumers")
    thread.start(timeout=10)
    try:
        yield thread
    finally:
        thread.stop(timeout=10)


@pytest.fixture
def make(redis_url):
    """Build Recorders on a published scan; kill any still running at teardown."""
    made = []

    def build(scan, mode, worker=None, **kwargs):
        node = get_scan_node(scan.key, redis_url)
        use_worker = worker if mode is SubscriberMode.PARALLEL else None
        made.append(Recorder(node, mode, worker=use_worker, **kwargs))
        return made[-1]

    yield build
    for sub in made:
        if sub.state is not SubscriberState.INIT:
            sub.kill(wait=True, timeout=10)


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_every_event_arrives_in_order_and_scan_ends_off(publisher, make, mode, worker):
    scan, sent = publish_scan(publisher)
    sub = make(scan, mode, worker)
    assert sub.state is SubscriberState.INIT
    assert sub.info["title"] == "subscriber test"
    sub.start(wait=True, timeout=10)
    sub.join(timeout=10)
    assert sub.state is SubscriberState.OFF, sub.state_reason
    assert sub.done() and sub.duration() > 0
    assert sub.ended_at is not None and sub.ended_at <= time.monotonic()
    kinds = [t for t, _, _ in sub.events]
    assert kinds[0] is EventType.NEW_NODE and kinds[-1] is EventType.END_SCAN
    assert kinds.count(EventType.PREPARED_SCAN) == 1
    positions = [d.position for _, _, d in sub.events]
    assert positions == sorted(positions, key=lambda p: tuple(map(int, p.split("-"))))
    for name, data in sent.items():
        np.testing.assert_array_equal(sub.channel_data(name), data)
    main = threading.get_ident()
    if mode is SubscriberMode.PARALLEL:
        assert sub.threads == {worker.ident} and sub.stopped_in == worker.ident
    else:
        assert sub.threads == {main} and sub.stopped_in == main


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_stop_drains_received_events_and_ends_off(publisher, make, mode, worker):
    scan, sent = publish_scan(publisher, end=False)
    sub = make(scan, mode, worker)
    sub.start(wait=True, timeout=10)
    assert sub.first_event.wait(10)
    with pytest.raises(WaitTimeout, match=re.escape(sub.name)):
        sub.join(timeout=0.2)
    assert sub.state is SubscriberState.ON
    sub.stop(wait=True, timeout=10)
    assert sub.state is SubscriberState.OFF
    assert sub.state_reason == "stopped on request"
    np.testing.assert_array_equal(sub.channel_data("diode"), sent["diode"])
    assert sub.stopped_in is not None
    sub.stop()
    sub.kill()
    assert sub.state is SubscriberState.OFF


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_kill_ends_fault_and_fault_is_sticky(publisher, make, mode, worker):
    scan, _ = publish_scan(publisher, end=False)
    sub = make(scan, mode, worker)
    sub.start(wait=True, timeout=10)
    assert sub.first_event.wait(10)
    sub.kill(wait=True, timeout=10)
    assert sub.state is SubscriberState.FAULT
    assert "killed" in sub.state_reason
    assert sub.stopped_in is not None
    sub.stop(wait=True, timeout=1)
    assert sub.state is SubscriberState.FAULT
    scan.end()
    sub.start(timeout=10)
    sub.join(timeout=10)
    assert sub.state is SubscriberState.OFF, sub.state_reason


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_exception_in_consumer_faults_with_its_message(publisher, make, mode, worker):
    scan, _ = publish_scan(publisher)
    sub = make(scan, mode, worker,
               poison=lambda t, node: t is EventType.NEW_DATA and node.name == "mca")
    sub.start(timeout=10)
    sub.join(timeout=10)
    assert sub.state is SubscriberState.FAULT
    assert "ValueError: cannot process NEW_DATA of mca" in sub.state_reason
    assert EventType.END_SCAN not in [t for t, _, _ in sub.events]
    assert sub.stopped_in is not None


def test_malformed_entry_in_redis_faults_the_subscriber(publisher, make, redis_url, caplog):
    scan, _ = publish_scan(publisher, end=False)
    client = redis.Redis.from_url(redis_url)
    try:
        client.xadd(scan.keys.events, {"t": "data", "d99": b"xx", "f99": b"0"})
    finally:
        client.close()
    sub = make(scan, SubscriberMode.CONCURRENT)
    sub.start(timeout=10)
    sub.join(timeout=10)
    assert sub.state is SubscriberState.FAULT
    assert "MalformedEventError" in sub.state_reason
    assert "undeclared channel #99" in sub.state_reason
    np.testing.assert_array_equal(sub.channel_data("diode"), np.arange(NPOINTS) * 0.5)
    tracebacks = [r for r in caplog.records if r.exc_info and sub.name in r.getMessage()]
    assert len(tracebacks) == 1


def test_shared_worker_one_faults_the_other_completes(publisher, make, worker):
    bad_scan, _ = publish_scan(publisher)
    good_scan, sent = publish_scan(publisher, end=False)
    bad = make(bad_scan, SubscriberMode.PARALLEL, worker,
               poison=lambda t, node: t is EventType.PREPARED_SCAN)
    good = make(good_scan, SubscriberMode.PARALLEL, worker)
    good.start(wait=True, timeout=10)
    bad.start(wait=True, timeout=10)
    bad.join(timeout=10)
    assert bad.state is SubscriberState.FAULT and "ValueError" in bad.state_reason
    assert good.state is SubscriberState.ON
    good_scan.send({"diode": np.ones(5), "mca": np.ones((5, 4), "<u4")})
    good_scan.end()
    good.join(timeout=10)
    assert good.state is SubscriberState.OFF, good.state_reason
    assert len(good.channel_data("diode")) == NPOINTS + 5
    assert good.threads == bad.threads == {worker.ident}
    assert worker.is_alive()


def test_parallel_without_worker_owns_and_stops_its_thread(publisher, make):
    scan, sent = publish_scan(publisher)
    sub = make(scan, SubscriberMode.PARALLEL)
    sub.start(timeout=10)
    sub.join(timeout=10)
    assert sub.state is SubscriberState.OFF, sub.state_reason
    np.testing.assert_array_equal(sub.channel_data("mca"), sent["mca"])
    assert threading.get_ident() not in sub.threads


def test_illegal_requests_name_both_states(publisher, make):
    scan, _ = publish_scan(publisher, end=False)
    sub = make(scan, SubscriberMode.SEQUENTIAL)
    with pytest.raises(SubscriberStateError, match="INIT -> OFF"):
        sub.stop()
    with pytest.raises(SubscriberStateError, match="INIT -> FAULT"):
        sub.kill()
    with pytest.raises(SubscriberStateError, match="never started"):
        sub.join(timeout=1)
    assert sub.duration() == 0.0 and not sub.done() and sub.ended_at is None
    sub.start(wait=True, timeout=10)
    try:
        with pytest.raises(SubscriberStateError, match="ON -> ON"):
            sub.start()
    finally:
        sub.stop(wait=True, timeout=10)
    assert sub.state is SubscriberState.OFF


def test_worker_only_in_parallel_mode(redis_url, worker):
    node = get_scan_node("nws:sess:scan:1", redis_url)
    with pytest.raises(ConfigurationError, match="parallel"):
        Recorder(node, SubscriberMode.SEQUENTIAL, worker=worker)


class SlowRecorder(Recorder):
    """Processes slowly and records the largest backlog it saw."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.largest = (0, 0)

    def _process_event(self, event_type, node, event_data):
        self.largest = max(self.largest, self.backlog, key=lambda b: b[1])
        time.sleep(0.001)
        super()._process_event(event_type, node, event_data)


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_a_slow_consumer_holds_a_bounded_backlog_and_loses_nothing(
        publisher, redis_url, mode, monkeypatch):
    from nexus_writer_service.subscribers import subscriber as module

    limit = 4096
    monkeypatch.setattr(module, "MAX_BACKLOG_BYTES", limit)
    scan, sent = publish_scan(publisher, npoints=400)
    recorder = SlowRecorder(get_scan_node(scan.key, redis_url), mode=mode)
    recorder.start()
    recorder.join(timeout=60)
    assert recorder.state is SubscriberState.OFF, recorder.state_reason
    np.testing.assert_array_equal(recorder.channel_data("diode"), sent["diode"])
    np.testing.assert_array_equal(recorder.channel_data("mca"), sent["mca"])
    largest_event = 10 * 16 + module._EVENT_OVERHEAD
    assert 0 < recorder.largest[1] <= limit + 2 * largest_event, recorder.largest
    assert recorder.backlog == (0, 0)


class FailsToStart(Recorder):
    def _on_start(self):
        raise ConnectionError("the start hook cannot reach its server")


def test_start_and_wait_returns_at_once_when_the_start_hook_fails(publisher, redis_url):
    scan, _ = publish_scan(publisher)
    sub = FailsToStart(get_scan_node(scan.key, redis_url))
    started = time.monotonic()
    sub.start(wait=True, timeout=30)
    assert time.monotonic() - started < 5
    sub.join(timeout=10)
    assert sub.state is SubscriberState.FAULT
    assert "cannot reach its server" in sub.state_reason


class PausingRecorder(Recorder):
    """At the first data event, pauses its reader and publishes more points meanwhile
    (more of ``scan``, sent by the consumer itself); records how many events the
    reader read while paused, once a read under way at the start has ended."""

    def __init__(self, *args, scan=None, hold=0.3, **kwargs):
        super().__init__(*args, **kwargs)
        self.scan = scan
        self.hold = hold
        self.read_during_pause = None
        self.release = threading.Event()

    def _process_event(self, event_type, node, event_data):
        if event_type is EventType.NEW_DATA and self.read_during_pause is None:
            with self._reader_paused():
                # a read under way when the pause began (blocking 0.05 s at most) ends
                time.sleep(0.2)
                before = self._run.read_events
                self.scan.send({"diode": np.full(5, -1.0), "mca": np.zeros((5, 4), "<u4")})
                self.release.wait(self.hold)
                self.read_during_pause = self._run.read_events - before
        super()._process_event(event_type, node, event_data)


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_a_paused_reader_reads_nothing_until_the_consumer_lets_it_go_on(
        publisher, redis_url, mode, worker):
    scan, sent = publish_scan(publisher, end=False)
    use_worker = worker if mode is SubscriberMode.PARALLEL else None
    sub = PausingRecorder(get_scan_node(scan.key, redis_url), mode, worker=use_worker,
                          scan=scan)
    try:
        sub.start(wait=True, timeout=10)
        assert sub.first_event.wait(10)
        deadline = time.monotonic() + 10
        while sub.read_during_pause is None and time.monotonic() < deadline:
            gevent.sleep(0.01)  # the start thread's hub forwards the events
        # the reader polls every 0.05 s: unpaused, it reads the new points in time
        assert sub.read_during_pause == 0
        scan.end()
        sub.join(timeout=10)
        assert sub.state is SubscriberState.OFF, sub.state_reason
        np.testing.assert_array_equal(sub.channel_data("diode"),
                                      np.concatenate([sent["diode"], np.full(5, -1.0)]))
    finally:
        if not sub.done():
            sub.kill(wait=True, timeout=10)


def test_a_stop_reaches_a_paused_reader_at_once(publisher, redis_url, worker):
    scan, _ = publish_scan(publisher, end=False)
    sub = PausingRecorder(get_scan_node(scan.key, redis_url), SubscriberMode.PARALLEL,
                          worker=worker, scan=scan, hold=30)
    try:
        sub.start(wait=True, timeout=10)
        deadline = time.monotonic() + 10
        while sub._run.reading_allowed.is_set() and time.monotonic() < deadline:
            gevent.sleep(0.01)  # the start thread's hub forwards the events
        assert not sub._run.reading_allowed.is_set()
        sub.stop()
        sub._run.reader.join(2)
        assert not sub._run.reader.is_alive(), "the paused reader did not see the stop"
        assert sub.state is SubscriberState.ON  # the consumer is still inside its pause
        sub.release.set()
        sub.join(timeout=10)
        assert sub.state is SubscriberState.OFF
        assert sub.state_reason == "stopped on request"
    finally:
        sub.release.set()
        if not sub.done():
            sub.kill(wait=True, timeout=10)
