"""The memory a writer process gives back: HDF5's free lists bounded and emptied, the
malloc heap trimmed (glibc, Linux: the machines the writer runs on)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from nexus_writer_service.io._lowlevel import _hdf5_library
from nexus_writer_service.tuning import limit_hdf5_free_lists, release_memory


def test_hdf5_is_found_and_its_free_lists_are_bounded_then_emptied(tmp_path: Path) -> None:
    assert _hdf5_library() is not None
    assert limit_hdf5_free_lists() is True
    with h5py.File(tmp_path / "a.h5", "w") as h5:
        for index in range(200):
            h5.create_dataset(f"d{index}", data=np.arange(10.0))
    assert release_memory() is True
    with h5py.File(tmp_path / "a.h5", "r") as h5:  # HDF5 works on as before
        assert len(h5) == 200
        np.testing.assert_array_equal(h5["d199"][()], np.arange(10.0))
