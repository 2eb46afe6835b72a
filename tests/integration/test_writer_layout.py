"""The file layout as our users' readers see it, on scans published by the simulator:
the default plot silx opens, the frames nexusformat reads, the names nxcheck knows."""

from __future__ import annotations

from typing import Any

import h5py
import numpy as np
import pytest
from nexusformat.nexus import nxload
from silx.io import nxdata

from nexus_writer_service.io import SaveOptions
from nexus_writer_service.io import lima_images
from nexus_writer_service.simulation import PublishedScan, SimulationOptions, read_truth
from nexus_writer_service.simulation import TruthScan, simulate
from nexus_writer_service.subscribers import SubscriberState
from tests.nxcheck import nxcheck_errors, nxcheck_warnings
from tests.silx_views import silx_view
from tests.writer_support import frame_checksums, session_writer, wait_scans_done


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _write(redis_url: str, tmp_path: Any, session: str, scans: tuple[str, ...],
           options: SaveOptions | None = None, **kwargs: Any
           ) -> list[tuple[PublishedScan, TruthScan]]:
    """Publish ``scans`` with the writer running; each scan with its truth."""
    root = str(tmp_path / "data")
    options = SaveOptions.from_mapping(dict((options or SaveOptions()).as_dict(),
                                            allowed_roots=[root]))
    truth = str(tmp_path / f"truth-{session}.h5")
    with session_writer(redis_url, session, options) as writer:
        published = simulate(SimulationOptions(session=session, redis_url=redis_url,
                                               root=root, truth=truth, scans=scans,
                                               block_size=7, **kwargs))
        records = wait_scans_done(writer, len(published))
        assert [r.state for r in records] == [SubscriberState.OFF] * len(published)
    truths = list(read_truth(truth).values())
    return list(zip(published, truths))


def _default_plot(h5: h5py.File) -> h5py.Group:
    entry = h5[_text(h5.attrs["default"])]
    return entry[_text(entry.attrs["default"])]


def test_amesh_opens_in_silx_as_a_scatter_of_the_signal_over_both_motors(
        redis_url: str, tmp_path: Any) -> None:
    ((scan, truth),) = _write(redis_url, tmp_path, "scatter", ("amesh",), npoints=30)
    signal_name = truth.scan_info["plots"][0]["items"][0]["value"]
    with h5py.File(scan.filename, "r") as h5:
        plot = _default_plot(h5)
        assert silx_view(plot) == "scatter"
        signal = plot[_text(plot.attrs["signal"])]
        np.testing.assert_array_equal(signal[()], truth.channels[signal_name])
        nxd = nxdata.NXdata(plot)
        assert nxd.axes_dataset_names == ["samy", "samz"]  # x fast, y slow
        np.testing.assert_array_equal(nxd.axes[0][()], truth.channels["axis:samy"])
        np.testing.assert_array_equal(nxd.axes[1][()], truth.channels["axis:samz"])
        for name in nxd.auxiliary_signals_names:
            assert plot[name].shape == signal.shape
    assert nxcheck_errors(scan.filename, ignore_entry_names=True) == []


@pytest.mark.xfail(strict=True, reason="keepshape's axes are 2D grids (samy and samz per "
                   "point), which silx does not take as axes: it rejects the NXdata group")
def test_amesh_with_keepshape_opens_in_silx_as_an_image(
        redis_url: str, tmp_path: Any) -> None:
    ((scan, truth),) = _write(redis_url, tmp_path, "grid", ("amesh",),
                              SaveOptions(keepshape=True), npoints=30)
    n1, n2 = truth.scan_info["npoints1"], truth.scan_info["npoints2"]
    with h5py.File(scan.filename, "r") as h5:
        plot = _default_plot(h5)
        assert silx_view(plot) == "image"
        signal = plot[_text(plot.attrs["signal"])]
        np.testing.assert_array_equal(signal[()].ravel(),
                                      truth.channels["diode:diode1"])
        assert signal.shape == (n2, n1)
    assert nxcheck_errors(scan.filename, ignore_entry_names=True) == []


def test_line_scans_open_in_silx_as_curves(redis_url: str, tmp_path: Any) -> None:
    for scan, truth in _write(redis_url, tmp_path, "curves", ("ascan", "a2scan")):
        with h5py.File(scan.filename, "r") as h5:
            plot = _default_plot(h5)
            assert silx_view(plot) == "curve"
            assert _text(plot.attrs["axes"][0]) == "samy"


def test_lima_frames_in_several_files_open_in_nexusformat(redis_url: str, tmp_path: Any
                                                          ) -> None:
    ((scan, truth),) = _write(redis_url, tmp_path, "nexusformat", ("lima",), npoints=25)
    (lima,) = truth.limas.values()
    assert len({filename for filename, _, _ in lima.references}) == 3  # 10 frames a file
    root = nxload(scan.filename)
    for path in ("1.1/instrument/lima_simulator/data", "1.1/measurement/lima_simulator",
                 "1.1/plot2D/lima_simulator"):
        field = root[path]
        assert field.shape == (25, 64, 80), path
        np.testing.assert_array_equal(frame_checksums(field.nxdata), lima.checksums)
        np.testing.assert_array_equal(frame_checksums(field[7:12].nxdata),
                                      lima.checksums[7:12])
    assert nxcheck_errors(scan.filename, ignore_entry_names=True) == []


def test_lima_frames_beyond_the_mapping_limit_keep_one_mapping_per_file(
        redis_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lima_images, "FRAME_MAPPINGS_MAX", 20)
    ((scan, truth),) = _write(redis_url, tmp_path, "runs", ("lima",), npoints=25)
    (lima,) = truth.limas.values()
    with h5py.File(scan.filename, "r") as h5:
        dataset = h5["1.1/instrument/lima_simulator/data"]
        assert len(dataset.virtual_sources()) == 3
        np.testing.assert_array_equal(frame_checksums(dataset[()]), lima.checksums)


#: What nxcheck may still warn about: names NeXus has none for (docs/file-layout.rst).
ENTRY_ATTRIBUTES = {"scan_key", "scan_uid", "subscan"}
MCA_QUANTITIES = {"icr", "ocr", "livetime", "deadtime"}
#: the classic writer's names of the APPxrf application definition (not NeXus's)
APPXRF_FIELDS = {"i0", "it", "mca", "elapsed_time", "live_time"}


def _unexplained(h5: h5py.File, warning: str, where: str, units: dict[str, str]) -> bool:
    """Whether ``warning`` (about ``where``) is not one of the documented ones."""
    kind, _, path = where.partition(": ")
    attribute = warning.split('"')[1].lstrip("@") if warning.startswith('"@') else None
    if kind == "NXentry" and warning.endswith("is not defined as an attribute in NXentry"):
        return attribute not in ENTRY_ATTRIBUTES
    if warning == "This field is not defined in NXdetector":
        return path.rsplit("/", 1)[-1] not in MCA_QUANTITIES
    if warning == "This field is not defined in NXsubentry":
        return path.rsplit("/", 1)[-1] not in APPXRF_FIELDS
    if warning == "Units of NX_ANY not specified":
        channel = _text(h5[path].attrs.get("channel", ""))
        return not channel or channel in units
    if warning == '"@axes" is not present in the group':
        group = h5[path]
        signal = group[_text(group.attrs["signal"])]
        return "axes" not in signal.attrs  # a scatter's axes are the signal's
    return True


def test_nxcheck_warns_only_of_what_nexus_has_no_name_for(redis_url: str, tmp_path: Any
                                                          ) -> None:
    scans = ("ct", "ascan", "amesh", "two_top_masters", "mca", "lima", "many_channels")
    counts = {}
    for scan, truth in _write(redis_url, tmp_path, "names", scans, nchannels=6):
        units = {name: info["unit"] for name, info in truth.scan_info["channels"].items()
                 if info.get("unit")}
        warnings = nxcheck_warnings(scan.filename)
        with h5py.File(scan.filename, "r") as h5:
            unexplained = [w for w in warnings if _unexplained(h5, *w, units)]
        assert unexplained == [], scan.kind
        counts[scan.kind] = len(warnings)
        with h5py.File(scan.filename, "r") as h5:
            for name, unit in units.items():
                for entry in h5.values():
                    link = entry["measurement"].get(name.rsplit(":", 1)[-1])
                    if link is not None and _text(link.attrs.get("channel", "")) == name:
                        assert _text(link.attrs["units"]) == unit, name
    # the spectrum, the quantities, and the APPxrf names
    assert counts["mca"] == counts["ascan"] + 1 + len(MCA_QUANTITIES) + len(APPXRF_FIELDS)
