"""AsyncResult: set once, read from any thread, exceptions keep their traceback."""

from __future__ import annotations

import threading
import traceback
from typing import Callable, List

import gevent
import pytest

from nexus_writer_service.concurrency import AsyncResult, Thread
from nexus_writer_service.errors import ConcurrencyUsageError


class ScanBroken(ValueError):
    pass


def fail_deep_in_the_worker() -> None:
    raise ScanBroken("channel 'diode' has no data")


def test_value_crosses_threads(start_thread: Callable[..., Thread]) -> None:
    result: AsyncResult[int] = AsyncResult()
    worker = start_thread(name="producer")
    assert not result.ready()
    worker.apply_async(lambda: result.set(threading.get_ident()))
    assert result.get(timeout=5) == worker.ident != threading.get_ident()
    assert result.ready() and result.successful()


def test_exception_crosses_threads_with_its_traceback(start_thread: Callable[..., Thread]) -> None:
    worker = start_thread(name="failing")
    pending = worker.apply_async(fail_deep_in_the_worker)
    assert pending.wait(5)
    assert pending.ready() and not pending.successful()
    with pytest.raises(ScanBroken, match="diode") as info:
        pending.get(timeout=5)
    frames = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "fail_deep_in_the_worker" in frames
    with pytest.raises(ScanBroken) as again:
        pending.get(timeout=5)
    frames_again = [frame.name for frame in traceback.extract_tb(again.value.__traceback__)]
    assert frames_again.count("fail_deep_in_the_worker") == 1


def test_an_exception_instance_is_stored_as_a_failure() -> None:
    result: AsyncResult[int] = AsyncResult()
    result.set(KeyError("missing"))
    assert isinstance(result.exception, KeyError)
    with pytest.raises(KeyError):
        result.get(block=False)
    kept: AsyncResult[Exception] = AsyncResult()
    kept.set_value(KeyError("as a value"))
    assert isinstance(kept.get(block=False), KeyError)


def test_setting_twice_is_an_error() -> None:
    result: AsyncResult[int] = AsyncResult()
    result.set(1)
    with pytest.raises(ConcurrencyUsageError, match="already set"):
        result.set(2)
    with pytest.raises(ConcurrencyUsageError, match="already set"):
        result.set_exception(ValueError())
    assert result.get() == 1


def test_many_readers_in_many_threads_get_the_same_value(
    start_thread: Callable[..., Thread],
) -> None:
    result: AsyncResult[str] = AsyncResult()

    def read_in_greenlets() -> List[str]:
        readers = [gevent.spawn(result.get, timeout=10) for _ in range(10)]
        try:
            gevent.joinall(readers, timeout=15, raise_error=True)
        finally:
            gevent.killall(readers, timeout=5)
        return [reader.value for reader in readers]

    threads = [start_thread(name=f"reader-{i}") for i in range(4)]
    pending = [t.apply_async(read_in_greenlets) for t in threads]
    gevent.sleep(0.05)
    result.set("done")
    assert [p.get(timeout=20) for p in pending] == [["done"] * 10] * 4
