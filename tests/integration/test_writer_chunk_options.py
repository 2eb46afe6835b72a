"""BLISS's per-scan chunk options (``writer_options.chunk_options``): each compression
scheme BLISS names, and ours, in the file with HDF5's own filter ids and parameters,
the data read back by h5py bit-exact; the size limit; malformed keys.

Scans are the reference ascan of BLISS 2.4 published through our Redis streams (see
test_writer_bliss_keys), with the chunk options of each test.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np
import pytest

from nexus_writer_service.data import Publisher
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.io.options import SCHEMES
from nexus_writer_service.subscribers import ScanRecord, SubscriberState
from tests.blissdata_support import ASCAN_CHANNELS, ascan_data
from tests.integration.faults.conftest import assert_fault, fast_options
from tests.integration.test_writer_bliss_keys import reference_info
from tests.writer_support import session_writer, wait_scans_done

SPECTRUM = "mca1:spectrum_det0"
DIODE = "simulation_diode_sampling_controller:diode"
#: HDF5 filter ids: deflate, shuffle, bitshuffle (its cd_values[4]: 0 none, 2 lz4, 3 zstd)
DEFLATE, SHUFFLE, BITSHUFFLE = 1, 2, 32008
EXPECTED_FILTERS = {
    "none": [],
    "gzip": [(DEFLATE, (4,))],
    "byteshuffle": [(SHUFFLE, None)],
    "gzip-byteshuffle": [(SHUFFLE, None), (DEFLATE, (4,))],
    "bitshuffle": [(BITSHUFFLE, 0)],
    "lz4-bitshuffle": [(BITSHUFFLE, 2)],
    "zstd-bitshuffle": [(BITSHUFFLE, 3)],
}


def filters(dataset: h5py.Dataset) -> list[tuple[int, Any]]:
    """The dataset's filter pipeline: (id, deflate level / bitshuffle compressor)."""
    dcpl = dataset.id.get_create_plist()
    found = []
    for index in range(dcpl.get_nfilters()):
        code, _, values, _ = dcpl.get_filter(index)
        if code == DEFLATE:
            found.append((code, tuple(values)))
        elif code == BITSHUFFLE:
            assert values[2] == dataset.dtype.itemsize, values  # element size
            found.append((code, values[4]))
        else:
            assert code == SHUFFLE and values == (dataset.dtype.itemsize,), values
            found.append((code, None))
    return found


def with_chunk_options(root: Path, npoints: int, **chunk_options: Any
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    info, ending = reference_info(root)
    info["npoints"] = npoints
    info["writer_options"]["chunk_options"] = chunk_options
    return info, ending


def publish(publisher: Publisher, info: Mapping[str, Any], ending: Mapping[str, Any],
            data: Mapping[str, np.ndarray], block: int) -> None:
    scan = publisher.create_scan(copy.deepcopy(dict(info)), name="ascan",
                                 number=int(info["scan_nb"]))
    units = {name: channel.get("unit") for name, channel in info["channels"].items()}
    for name, (dtype, shape) in ASCAN_CHANNELS.items():
        scan.add_channel(name, dtype, shape=shape, subscan="axis", unit=units.get(name))
    scan.prepare()
    npoints = len(data[DIODE])
    for start in range(0, npoints, block):
        scan.send({name: values[start:start + block] for name, values in data.items()})
    scan.update_info(dict(ending))
    scan.end()


def write_scans(redis_url: str, root: Path, scans: list[tuple[dict[str, Any], dict[str, Any]]],
                npoints: int, block: int, options: SaveOptions | None = None
                ) -> list[ScanRecord]:
    options = options or fast_options(allowed_roots=(str(root),))
    with session_writer(redis_url, "demo", options, poll_interval=0.05) as writer:
        with Publisher("demo", redis_url) as publisher:
            for info, ending in scans:
                publish(publisher, info, ending, ascan_data(npoints), block)
            records = wait_scans_done(writer, len(scans))
        assert writer.state is SubscriberState.ON, writer.state_reason
    return records


@pytest.mark.parametrize("scheme", SCHEMES)
def test_each_scheme_is_written_with_hdf5s_filters_above_the_limit(
        redis_url: str, tmp_path: Path, scheme: str) -> None:
    """Spectra (100 x 128 int32, 51 kB) over the limit are compressed, in chunks of
    3 points (the last one partial); the diode (400 bytes) under it is not."""
    npoints = 100
    info, ending = with_chunk_options(tmp_path, npoints, chunk_nbytes=1536, chunk_split=None,
                                      compression_limit_nbytes=1000,
                                      compression_scheme=scheme.upper())
    (record,) = write_scans(redis_url, tmp_path, [(info, ending)], npoints, block=7)
    assert record.state is SubscriberState.OFF, record.writer.state_reason
    truth = ascan_data(npoints)
    with h5py.File(info["filename"], "r") as h5:
        spectrum = h5["3.1/instrument/mca1_det0/data"]
        assert spectrum.chunks == (3, 128)
        assert filters(spectrum) == EXPECTED_FILTERS[scheme]
        np.testing.assert_array_equal(spectrum[()], truth[SPECTRUM])
        diode = h5["3.1/measurement/diode"]
        assert filters(diode) == []
        np.testing.assert_array_equal(diode[()], truth[DIODE])
        assert json.loads(h5["3.1/writer/chunk_options"][()]) == {
            "chunk_nbytes": 1536, "chunk_split": 4, "compression_limit_nbytes": 1000,
            "compression_scheme": scheme}


def test_empty_chunk_options_give_the_classic_defaults(redis_url: str, tmp_path: Path
                                                       ) -> None:
    """BLISS's reference scan sends ``chunk_options: {}``: gzip-byteshuffle above 1 MB
    (4200 spectra of 512 bytes are 2.1 MB; their 0D channels are not), chunks of at
    most a quarter of the scan."""
    npoints = 4200
    info, ending = with_chunk_options(tmp_path, npoints)
    (record,) = write_scans(redis_url, tmp_path, [(info, ending)], npoints, block=500)
    assert record.state is SubscriberState.OFF, record.writer.state_reason
    truth = ascan_data(npoints)
    with h5py.File(info["filename"], "r") as h5:
        spectrum = h5["3.1/instrument/mca1_det0/data"]
        assert filters(spectrum) == EXPECTED_FILTERS["gzip-byteshuffle"]
        assert spectrum.chunks == (1050, 128)
        np.testing.assert_array_equal(spectrum[()], truth[SPECTRUM])
        assert filters(h5["3.1/measurement/diode"]) == []
        assert json.loads(h5["3.1/writer/chunk_options"][()]) == {
            "chunk_nbytes": 1 << 20, "chunk_split": 4, "compression_limit_nbytes": 1 << 20,
            "compression_scheme": "gzip-byteshuffle"}


def test_the_session_option_beats_the_classic_default_not_the_scans_key(
        redis_url: str, tmp_path: Path) -> None:
    npoints = 20
    options = fast_options(allowed_roots=(str(tmp_path),), compression="lz4-bitshuffle")
    first = with_chunk_options(tmp_path, npoints, compression_limit_nbytes=0)
    second = with_chunk_options(tmp_path, npoints, compression_limit_nbytes=0,
                                compression_scheme="gzip")
    second[0]["scan_nb"] = 4
    records = write_scans(redis_url, tmp_path, [first, second], npoints, 20, options)
    assert [r.state for r in records] == [SubscriberState.OFF] * 2
    with h5py.File(first[0]["filename"], "r") as h5:
        assert filters(h5["3.1/measurement/diode"]) == EXPECTED_FILTERS["lz4-bitshuffle"]
        assert filters(h5["4.1/measurement/diode"]) == EXPECTED_FILTERS["gzip"]


@pytest.mark.parametrize("key, value", [("compression_scheme", "zip"),
                                        ("chunk_nbytes", -1), ("chunk_split", "4")])
def test_malformed_chunk_options_fault_the_scan_naming_the_key_and_the_next_is_written(
        redis_url: str, tmp_path: Path, key: str, value: Any) -> None:
    npoints = 10
    bad = with_chunk_options(tmp_path, npoints, **{key: value})
    good = with_chunk_options(tmp_path, npoints)
    good[0]["scan_nb"] = 4
    first, second = write_scans(redis_url, tmp_path, [bad, good], npoints, 10)
    assert_fault(first, f"writer_options/chunk_options/{key}", repr(value),
                 "malformed scan_info")
    assert second.state is SubscriberState.OFF, second.writer.state_reason
    with h5py.File(good[0]["filename"], "r") as h5:
        np.testing.assert_array_equal(h5["4.1/measurement/diode"][()],
                                      ascan_data(npoints)[DIODE])
