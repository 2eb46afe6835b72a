"""The classic writer's XRF application definition (APPxrf) in MCA scans: an
NXsubentry linking I0, It, the spectra and their times, checked against the
simulator's ground truth; with ``stack_mcas`` one stacked dataset."""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np
import pytest

from nexus_writer_service.io import SaveOptions
from nexus_writer_service.simulation import SimulationOptions, read_truth, simulate
from nexus_writer_service.subscribers import SubscriberState
from tests.nxcheck import nxcheck_errors, nxcheck_warnings
from tests.writer_support import session_writer, wait_scans_done


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@pytest.mark.parametrize("stack_mcas, detectors", [(False, 1), (False, 2), (True, 2)])
def test_mca_scan_has_the_xrf_application(redis_url: str, tmp_path: Any, stack_mcas: bool,
                                          detectors: int) -> None:
    root = str(tmp_path / "data")
    truth = str(tmp_path / "truth.h5")
    options = SaveOptions(stack_mcas=stack_mcas, allowed_roots=(root,), flush_period=0.05)
    with session_writer(redis_url, "xrf", options) as writer:
        (published,) = simulate(SimulationOptions(
            session="xrf", redis_url=redis_url, root=root, truth=truth, scans=("mca",),
            mca_detectors=detectors, npoints=9, block_size=4))
        (record,) = wait_scans_done(writer, 1)
    assert record.state is SubscriberState.OFF, record.as_dict()
    channels = next(iter(read_truth(truth).values())).channels
    entry = f"/{published.number}.1"
    with h5py.File(published.filename, "r") as h5:
        xrf = h5[f"{entry}/xrf"]
        assert _text(xrf.attrs["NX_class"]) == "NXsubentry"
        assert _text(xrf["definition"][()]) == "APPxrf"
        assert _text(xrf["start_time"][()]) == _text(h5[f"{entry}/start_time"][()])
        np.testing.assert_array_equal(xrf["i0"][()], channels["mon:mon"])
        np.testing.assert_array_equal(xrf["it"][()], channels["diode:diode1"])
        if stack_mcas:
            assert xrf["mca"].shape == (9, detectors, 4096)
            assert xrf.get("mca", getlink=True).path == f"{entry}/instrument/mca1/data"
        for det in range(detectors):
            if stack_mcas:  # one stacked dataset per quantity, a column per detector
                names, column = ("mca", "elapsed_time", "live_time"), (slice(None), det)
            elif detectors == 1:
                names, column = ("mca", "elapsed_time", "live_time"), (slice(None),)
            else:
                names = (f"mca{det:02d}", f"elapsed_time_mca{det:02d}",
                         f"live_time_mca{det:02d}")
                column = (slice(None),)
            for name, quantity in zip(names, ("spectrum", "realtime", "livetime")):
                np.testing.assert_array_equal(xrf[name][column],
                                              channels[f"mca1:{quantity}_det{det}"])
    assert nxcheck_errors(published.filename, ignore_entry_names=True) == []
    # APPxrf is the classic writer's, not a NeXus application definition: nxcheck
    # does not know its fields (their names are the classic writer's)
    warned = {where.rsplit("/", 1)[1] for message, where in
              nxcheck_warnings(published.filename) if "/xrf" in where}
    assert warned <= {"i0", "it", "mca", "elapsed_time", "live_time"} | {
        f"{name}{det:02d}" for name in ("mca", "elapsed_time_mca", "live_time_mca")
        for det in range(detectors)}


def test_bliss_ascan_with_the_classic_technique_configuration(redis_url: str,
                                                              tmp_path: Any) -> None:
    from tests.integration.test_writer_bliss_keys import reference_info, write_ascan

    info, ending = reference_info(tmp_path)
    info["nexuswriter"]["technique"] = {"name": "XRF", "applications": {"xrf": {
        "class": "APPxrf", "I0": "diode", "It": "", "mca": ["mca1:det0"]}}}
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert record.state is SubscriberState.OFF, record.as_dict()
    with h5py.File(info["filename"], "r") as h5:
        xrf = h5["3.1/xrf"]
        assert sorted(xrf) == ["definition", "elapsed_time", "i0", "live_time", "mca",
                               "start_time"]
        assert xrf.get("i0", getlink=True).path == "/3.1/instrument/diode/data"
        assert xrf.get("mca", getlink=True).path == "/3.1/instrument/mca1_det0/data"
        assert xrf.get("elapsed_time", getlink=True).path == \
            "/3.1/instrument/mca1_det0/real_time"
        # BLISS's MCA has no energy live time: the trigger live time is the live time
        assert xrf.get("live_time", getlink=True).path == \
            "/3.1/instrument/mca1_det0/trigger_livetime"
    assert nxcheck_errors(info["filename"], ignore_entry_names=True) == []


def test_malformed_application_faults_the_scan_naming_the_key(redis_url: str,
                                                              tmp_path: Any) -> None:
    from tests.integration.faults.conftest import assert_fault
    from tests.integration.test_writer_bliss_keys import reference_info, write_ascan

    info, ending = reference_info(tmp_path)
    info["nexuswriter"]["technique"] = {"applications": {"xrf": {"class": "APPxrf",
                                                                 "mca": "mca1"}}}
    record, _ = write_ascan(redis_url, tmp_path, info, ending)
    assert_fault(record, "'nexuswriter/technique/applications/xrf/mca'",
                 "malformed scan_info")
