"""The compression threads shared by the scan files of a session (io.compressor):
clients served in turn, a bounded number of threads, a clean stop."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from nexus_writer_service.errors import NexusWriterError
from nexus_writer_service.io.codecs import codec_for
from nexus_writer_service.io.compressor import ChunkCompressor, CompressionPool


def test_a_client_with_many_chunks_waiting_does_not_starve_another() -> None:
    """One thread; scan A hands over 20 chunks, then scan B one: B's is encoded in
    A's turn's wake, not after all of A's; each client's in its order."""
    gate = threading.Event()
    order: list[str] = []

    def job(name: str, wait: bool = False) -> str:
        if wait:
            assert gate.wait(10)
        order.append(name)
        return name

    a, b = object(), object()
    with CompressionPool(1, name="test-compressor") as pool:
        futures = [pool.submit(a, job, "a0", True)]
        futures += [pool.submit(a, job, f"a{i}") for i in range(1, 20)]
        futures.append(pool.submit(b, job, "b0"))
        gate.set()
        assert [f.result(10) for f in futures][-1] == "b0"
    assert order.index("b0") <= 2  # after a0, and maybe a1
    assert [name for name in order if name != "b0"] == [f"a{i}" for i in range(20)]


def test_the_pool_runs_at_most_its_threads_and_close_stops_them() -> None:
    pool = CompressionPool(2, name="test-compressor")
    codec = codec_for("gzip-byteshuffle")
    assert codec is not None
    clients = [ChunkCompressor(pool=pool) for _ in range(5)]
    written: list[list[Any]] = [[] for _ in clients]
    try:
        assert pool.threads == []  # none until the first chunk
        for i, client in enumerate(clients):
            for seed in range(4):
                chunk = np.random.default_rng(seed).poisson(100, 1000).astype("f8")
                client.submit(codec, chunk, written[i].append)
        assert 1 <= len(pool.threads) <= 2
        for client in clients:
            client.drain()
        assert [len(w) for w in written] == [4] * 5
    finally:
        for client in clients:
            client.close()
        pool.close()
    assert pool.threads == []
    assert not [t for t in threading.enumerate() if t.name.startswith("test-compressor")]
    pool.close()  # idempotent


def test_a_chunk_submitted_after_the_pool_stopped_is_refused_with_the_remedy() -> None:
    pool = CompressionPool(1, name="test-compressor")
    client = ChunkCompressor(pool=pool)
    codec = codec_for("gzip")
    assert codec is not None
    started, gate = threading.Event(), threading.Event()

    def busy() -> bool:
        started.set()
        return gate.wait(10)

    blocker = pool.submit(object(), busy)
    assert started.wait(10)
    client.submit(codec, np.zeros(100), lambda _: None)  # queued behind the blocker
    pool.close(timeout=0.01)  # cancels what waits; its thread still busy
    gate.set()
    assert blocker.result(10) is True
    pool.close()
    assert pool.threads == []
    with pytest.raises(NexusWriterError, match="compression threads were stopped.*start "
                                               "the writer again"):
        client.drain()
    with pytest.raises(NexusWriterError, match="compression threads were stopped"):
        client.submit(codec, np.zeros(100), lambda _: None)
    client.close()


def test_a_compressor_without_a_pool_has_threads_of_its_own_and_stops_them() -> None:
    client = ChunkCompressor(1)
    codec = codec_for("gzip")
    assert codec is not None
    out: list[Any] = []
    client.submit(codec, np.arange(1000.0), out.append)
    client.drain()
    assert len(out) == 1 and client.chunks == 1
    client.close()
    assert client.pool.threads == []
