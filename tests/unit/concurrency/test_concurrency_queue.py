"""Queue: no lost item, no double delivery, FIFO per producer, across threads."""

from __future__ import annotations

import queue
from collections import defaultdict
from typing import Callable, Dict, List, Optional, Tuple

import gevent
import pytest

from nexus_writer_service.concurrency import Queue, Thread
from nexus_writer_service.errors import ConcurrencyUsageError, QueueEmpty

Item = Optional[Tuple[int, int]]


def _produce(q: "Queue[Item]", producer_ids: List[int], count: int) -> int:
    def one(producer: int) -> None:
        for seq in range(count):
            q.put((producer, seq))
            if seq % 7 == 0:
                gevent.sleep(0)

    workers = [gevent.spawn(one, producer) for producer in producer_ids]
    try:
        gevent.joinall(workers, timeout=60, raise_error=True)
    finally:
        gevent.killall(workers, timeout=5)
    return len(workers)


def _consume(q: "Queue[Item]", greenlet_count: int) -> List[List[Tuple[int, int]]]:
    def one() -> List[Tuple[int, int]]:
        got: List[Tuple[int, int]] = []
        while True:
            item = q.get(timeout=30)
            if item is None:
                return got
            got.append(item)

    workers = [gevent.spawn(one) for _ in range(greenlet_count)]
    try:
        gevent.joinall(workers, timeout=60, raise_error=True)
    finally:
        gevent.killall(workers, timeout=5)
    return [worker.value for worker in workers]


def test_many_producers_and_consumers_lose_and_duplicate_nothing(
    start_thread: Callable[..., Thread],
) -> None:
    producer_threads, consumer_threads, greenlets, count = 3, 3, 8, 400
    q: Queue[Item] = Queue()
    consumers = [start_thread(name=f"consumer-{i}") for i in range(consumer_threads)]
    producers = [start_thread(name=f"producer-{i}") for i in range(producer_threads)]
    consumed = [c.apply_async(_consume, q, greenlets) for c in consumers]
    ids = [[t * greenlets + g for g in range(greenlets)] for t in range(producer_threads)]
    produced = [p.apply_async(_produce, q, ids[i], count) for i, p in enumerate(producers)]
    assert [result.get(timeout=60) for result in produced] == [greenlets] * producer_threads
    for _ in range(consumer_threads * greenlets):
        q.put(None)

    seen: Dict[int, List[int]] = defaultdict(list)
    for result in consumed:
        for got in result.get(timeout=60):
            per_producer: Dict[int, List[int]] = defaultdict(list)
            for producer, seq in got:
                per_producer[producer].append(seq)
                seen[producer].append(seq)
            for seqs in per_producer.values():
                assert seqs == sorted(seqs), "a consumer saw one producer's items out of order"
    assert sorted(seen) == sorted(i for group in ids for i in group)
    for producer, seqs in seen.items():
        assert sorted(seqs) == list(range(count)), f"producer {producer}: lost or doubled"
    assert q.empty()


def test_single_producer_single_consumer_is_fifo(start_thread: Callable[..., Thread]) -> None:
    q: Queue[int] = Queue()
    consumer = start_thread(name="consumer")
    got = consumer.spawn(lambda: [q.get(timeout=10) for _ in range(2000)])
    for index in range(2000):
        q.put(index)
    assert got.get(timeout=30) == list(range(2000))


def test_waiting_getters_are_served_in_arrival_order(greenlets: List[gevent.Greenlet]) -> None:
    q: Queue[int] = Queue()
    for _ in range(5):
        greenlets.append(gevent.spawn(q.get, timeout=5))
        gevent.sleep(0)
    for index in range(5):
        q.put(index)
    assert [g.get(timeout=5) for g in greenlets] == list(range(5))


def test_item_handed_to_a_killed_getter_is_not_lost(greenlets: List[gevent.Greenlet]) -> None:
    q: Queue[str] = Queue()
    doomed = gevent.spawn(q.get)
    greenlets.append(doomed)
    gevent.sleep(0.01)
    q.put("first")
    q.put("second")
    doomed.kill(block=True, timeout=5)
    assert [q.get(timeout=1), q.get(timeout=1)] == ["first", "second"]


def test_empty_queue_raises_empty_that_is_also_a_timeout() -> None:
    q: Queue[int] = Queue()
    with pytest.raises(QueueEmpty) as info:
        q.get(block=False)
    assert isinstance(info.value, queue.Empty) and isinstance(info.value, TimeoutError)
    with pytest.raises(QueueEmpty, match="within 0.01"):
        q.get(timeout=0.01)
    with pytest.raises(ConcurrencyUsageError):
        q.get(block=False, timeout=1)
    q.put(1)
    assert (q.qsize(), len(q), q.empty()) == (1, 1, False)
    assert q.get_nowait() == 1


def test_plain_thread_main_greenlet_can_get() -> None:
    import threading

    q: Queue[int] = Queue()
    got: List[int] = []

    def plain() -> None:
        got.append(q.get(timeout=5))
        gevent.get_hub().destroy(destroy_loop=True)

    thread = threading.Thread(target=plain)
    thread.start()
    gevent.sleep(0.05)
    q.put(42)
    thread.join(10)
    assert got == [42]
