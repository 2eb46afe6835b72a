"""Variable-length points are padded in bounded slices: one very long point in a
block does not make the writer pad every point of the block to its length."""

from __future__ import annotations

import tracemalloc
from typing import Any

import h5py
import numpy as np
import pytest

from nexus_writer_service.data import Publisher
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.io.nexus import RAGGED_SLICE_BYTES, ragged_slices
from nexus_writer_service.subscribers import SubscriberState
from tests.writer_support import session_writer, wait_scans_done

MIB = 1 << 20
SHORT_POINTS = 2000
LONG_INDEX = 1000
LONG_LENGTH = 200_000
#: Padding the whole block to the long point would take 2001 x 200000 x 8 B = 3.2 GB.
PEAK_BOUND = 200 * MIB


@pytest.mark.parametrize("lengths, limit", [
    ([1] * 2000 + [200_000] + [1] * 3, 64 * MIB),
    ([5, 3, 8, 8, 1, 0, 0, 2], 32),
    ([0, 0, 0], 8),
    ([], 8),
    ([100, 1, 1, 100, 1], 100),
], ids=["long-point", "small", "empty-points", "no-points", "larger-than-limit"])
def test_ragged_slices_cover_every_point_under_the_bound(lengths: list[int], limit: int) -> None:
    slices = ragged_slices(lengths, 8, limit)
    assert [i for start, stop in slices for i in range(start, stop)] == list(range(len(lengths)))
    for start, stop in slices:
        assert stop > start
        padded = (stop - start) * max(lengths[start:stop]) * 8
        assert padded <= limit or stop - start == 1, (start, stop, padded)


def _points() -> list[np.ndarray[Any, Any]]:
    points = [np.array([float(i)]) for i in range(SHORT_POINTS)]
    points.insert(LONG_INDEX, np.arange(LONG_LENGTH, dtype=np.float64) * 0.5)
    return points


@pytest.mark.slow
def test_one_long_variable_length_point_keeps_the_writer_memory_bounded(
        redis_url: str, tmp_path: Any) -> None:
    filename = str(tmp_path / "ragged" / "ragged.h5")
    points = _points()
    options = SaveOptions(allowed_roots=(str(tmp_path),), chunk_bytes=64)
    info = {"title": "ragged", "filename": filename, "npoints": len(points)}
    tracemalloc.start()
    try:
        with session_writer(redis_url, "ragged", options) as writer:
            with Publisher("ragged", redis_url) as publisher:
                scan = publisher.create_scan(info, name="loopscan", number=1)
                scan.add_channel("fluo:peaks", "float64", (-1,))
                scan.prepare()
                scan.send({"fluo:peaks": points})  # one stream entry: one block
                scan.end()
            record = wait_scans_done(writer, 1)[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert record.state is SubscriberState.OFF, record.as_dict()
    print(f"peak traced memory while writing: {peak / MIB:.1f} MiB "
          f"(padded slices of at most {RAGGED_SLICE_BYTES / MIB:.0f} MiB)")
    assert peak < PEAK_BOUND, f"{peak / MIB:.1f} MiB"
    with h5py.File(filename, "r") as h5:
        data = h5["/1.1/instrument/peaks/data"]
        lengths = h5["/1.1/instrument/peaks/data_lengths"][()]
        assert data.shape == (len(points), LONG_LENGTH)
        np.testing.assert_array_equal(lengths, [len(p) for p in points])
        for start in range(0, len(points), 64):
            rows = data[start:start + 64]
            for offset, row in enumerate(rows):
                point = points[start + offset]
                np.testing.assert_array_equal(row[:len(point)], point)
                assert np.isnan(row[len(point):]).all(), start + offset
