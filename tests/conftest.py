"""Fixtures shared by all tests: real servers, per-test isolation, a leak guard.

* ``redis_server`` (session): an embedded Valkey server, or the server named by the
  ``REDIS_URL`` environment variable when it is set.
* ``redis_url`` (function): a URL on its own database index, flushed before the test.
* ``redis_client`` (function): a ``redis.Redis`` on that database.
* ``blissdata_server`` (session): an embedded Valkey with the RedisJSON and RediSearch
  modules that blissdata 2.x needs (``BLISSDATA_REDIS_URL`` when it is set).
* ``blissdata_url`` (function): its database 0 (RediSearch indexes no other), emptied
  and set up for blissdata at the start of the test.
* ``tango_database`` (session): the sqlite Tango database shipped with pytango.
* every test fails if it leaves a thread or a live greenlet behind (mark it
  ``allow_leftovers`` with a reason when that is intended).
"""

from __future__ import annotations

import gc
import itertools
import os
import subprocess
import threading
import time
from typing import Any, Iterator

import pytest
import redis

from nexus_writer_service.embedded import EmbeddedRedis, EmbeddedTangoDatabase

_DB_INDICES = itertools.cycle(range(1, 16))


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (no database index) of the Redis server used by the whole run."""
    external = os.environ.get("REDIS_URL")
    if external:
        yield external.rstrip("/").rsplit("/", 1)[0] if external.count("/") > 2 else external
        return
    server = EmbeddedRedis(workdir=tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def redis_url(redis_server: str) -> Iterator[str]:
    """A Redis URL on a database index of its own, empty at the start of the test."""
    url = f"{redis_server}/{next(_DB_INDICES)}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    yield url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def blissdata_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a server with the modules blissdata 2.x needs, for the whole run."""
    external = os.environ.get("BLISSDATA_REDIS_URL")
    if external:
        yield external
        return
    server = EmbeddedRedis(workdir=tmp_path_factory.mktemp("redis-blissdata"), blissdata=True)
    server.start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def blissdata_url(blissdata_server: str) -> Iterator[str]:
    """Database 0 of ``blissdata_server``, emptied and initialised as BLISS does."""
    from blissdata.redis_engine.store import DataStore

    url = f"{blissdata_server}/0"
    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()
    DataStore(url, init_db=True)  # its connections close when it is collected
    yield url


@pytest.fixture(scope="session")
def tango_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTangoDatabase]:
    database = EmbeddedTangoDatabase(workdir=tmp_path_factory.mktemp("tango-db"))
    database.start()
    try:
        yield database
    finally:
        database.cleanup()


def _live_greenlets() -> set[int]:
    try:
        import greenlet
        from gevent.hub import Hub
    except ImportError:
        return set()
    found = set()
    for obj in gc.get_objects():
        if isinstance(obj, greenlet.greenlet) and not isinstance(obj, Hub):
            if obj and not obj.dead and obj.parent is not None:
                found.add(id(obj))
    return found


@pytest.fixture(autouse=True)
def leak_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves threads or greenlets running after it returns."""
    if request.node.get_closest_marker("allow_leftovers"):
        yield
        return
    threads_before = set(threading.enumerate())
    greenlets_before = _live_greenlets()
    yield
    deadline = time.monotonic() + 5.0
    while True:
        # foreign threads (omniORB's, seen once they call into Python) are not ours
        extra_threads = [
            t for t in threading.enumerate() if t not in threads_before and t.is_alive()
            and not isinstance(t, threading._DummyThread)
        ]
        extra_greenlets = _live_greenlets() - greenlets_before
        if not extra_threads and not extra_greenlets:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    names = ", ".join(t.name for t in extra_threads)
    pytest.fail(
        f"test left {len(extra_threads)} thread(s) [{names}] and "
        f"{len(extra_greenlets)} greenlet(s) running: stop what the test starts"
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[Any]]]:
    """Child processes a test starts; any still running at the end is killed by its PID."""
    started: list[subprocess.Popen[Any]] = []
    try:
        yield started
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(10)
