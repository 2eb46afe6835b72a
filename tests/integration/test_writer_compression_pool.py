"""One session writer compresses the chunks of all its scans on one pool of
``compression_threads`` threads (io.compressor.CompressionPool): two scans running
at once are both written bit-exact, no more threads than the option says are used,
and stopping the session writer stops them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from nexus_writer_service.data import Publisher
from nexus_writer_service.subscribers import SubscriberState
from tests.integration.faults.conftest import fast_options
from tests.writer_support import session_writer, wait_scans_done

SESSION = "pooled"
CHANNELS = ("diode", "counter")


def compressor_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t.name.startswith(f"{SESSION}-compressor") and t.is_alive()]


def scan_info(path: Path, npoints: int) -> dict[str, Any]:
    """A BLISS scan asking for gzip-byteshuffle on every dataset, chunks of 64 points."""
    return {"title": path.stem, "filename": str(path), "npoints": npoints,
            "writer_options": {"chunk_options": {
                "compression_scheme": "gzip-byteshuffle", "compression_limit_nbytes": 0,
                "chunk_nbytes": 512, "chunk_split": 1}}}


def values(npoints: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {name: rng.poisson(1000 * (i + 1), npoints).astype("f8")
            for i, name in enumerate(CHANNELS)}


def test_two_concurrent_compressed_scans_share_the_sessions_threads(
        redis_url: str, tmp_path: Path) -> None:
    npoints, block = 1000, 37
    paths = [tmp_path / "first.h5", tmp_path / "second.h5"]
    truth = [values(npoints, 1), values(npoints, 2)]
    options = fast_options(allowed_roots=(str(tmp_path),), compression_threads=2)
    with session_writer(redis_url, SESSION, options, poll_interval=0.05) as writer:
        with Publisher(SESSION, redis_url) as publisher:
            scans = []
            for number, path in enumerate(paths, 1):
                scan = publisher.create_scan(scan_info(path, npoints), name="loopscan",
                                             number=number)
                for name in CHANNELS:
                    scan.add_channel(name, "f8")
                scan.prepare()
                scans.append(scan)
            # both scans running: their blocks interleaved
            for start in range(0, npoints, block):
                for scan, data in zip(scans, truth):
                    scan.send({name: v[start:start + block] for name, v in data.items()})
            for scan in scans:
                scan.end()
            records = wait_scans_done(writer, 2)
        assert [r.state for r in records] == [SubscriberState.OFF] * 2, \
            [r.writer.state_reason for r in records]
        assert 1 <= len(compressor_threads()) <= 2
        assert not [t for t in threading.enumerate() if t.name.startswith("chunk-compressor")]
    assert compressor_threads() == []
    for number, (path, data) in enumerate(zip(paths, truth), 1):
        with h5py.File(path, "r") as h5:
            for name in CHANNELS:
                dataset = h5[f"{number}.1/instrument/{name}/data"]
                assert dataset.compression == "gzip" and dataset.shuffle
                assert dataset.chunks == (64,)
                np.testing.assert_array_equal(dataset[()], data[name])
