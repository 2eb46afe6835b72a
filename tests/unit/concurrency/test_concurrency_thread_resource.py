"""ThreadResource: one resource per thread, enumerable, gone with its thread."""

from __future__ import annotations

import gc
import itertools
import threading
from typing import Callable, List

import pytest

from nexus_writer_service.concurrency import Thread, ThreadResource


def test_each_thread_gets_its_own_resource_and_keeps_it(
    start_thread: Callable[..., Thread],
) -> None:
    counter = itertools.count()
    resource = ThreadResource(lambda: (threading.get_ident(), next(counter)))
    mine = resource.get()
    assert resource.get() is mine and mine[0] == threading.get_ident()
    workers = [start_thread(name=f"res-{i}") for i in range(3)]
    theirs = [w.apply(resource.get) for w in workers]
    assert [w.apply(resource.get) for w in workers] == theirs
    assert sorted(r[0] for r in theirs) == sorted(w.ident or 0 for w in workers)
    assert sorted(resource, key=lambda r: r[1]) == [mine] + theirs


def test_pop_forgets_only_the_calling_threads_resource(
    start_thread: Callable[..., Thread],
) -> None:
    resource = ThreadResource(object)
    mine = resource.get()
    worker = start_thread(name="res")
    theirs = worker.apply(resource.get)
    assert resource.pop() is mine
    assert resource.pop() is None
    assert list(resource) == [theirs]
    assert resource.get() is not mine


def test_resource_dies_with_its_thread() -> None:
    resource = ThreadResource(lambda: [threading.current_thread().name])
    resource.get()
    created: List[object] = []
    thread = threading.Thread(target=lambda: created.append(resource.get()), name="short")
    thread.start()
    thread.join(10)
    assert len(created) == 1
    assert [r for r in resource] == [[threading.current_thread().name]]
    del thread
    gc.collect()
    assert len(resource) == 1


def test_init_resource_must_be_callable() -> None:
    with pytest.raises(TypeError, match="init_resource"):
        ThreadResource(42)  # type: ignore[arg-type]
