"""The APPxrf application definition planned from the classic writer's technique
configuration (pure planning, no file)."""

from __future__ import annotations

from typing import Any

import pytest

from nexus_writer_service.errors import MalformedInfoError
from nexus_writer_service.io.applications import matching_name
from nexus_writer_service.io.layout import (
    FieldPlan,
    GroupPlan,
    LinkPlan,
    NodeSpec,
    ScanDescription,
    plan_scan,
)
from nexus_writer_service.io.options import SaveOptions

CHAIN = {"axis": {"master": {"scalars": ["axis:samy"]}}}


def _mca(det: int) -> list[NodeSpec]:
    return [NodeSpec(f"mca1:spectrum_det{det}", "channel", "axis", "<u4", (16,)),
            NodeSpec(f"mca1:realtime_det{det}", "channel", "axis", "<f8"),
            NodeSpec(f"mca1:trigger_livetime_det{det}", "channel", "axis", "<f8"),
            NodeSpec(f"mca1:energy_livetime_det{det}", "channel", "axis", "<f8")]


def _nodes(detectors: int) -> tuple[NodeSpec, ...]:
    nodes = [NodeSpec("axis:samy", "channel", "axis", "<f8"),
             NodeSpec("simulation_diode_controller:iodet", "channel", "axis", "<f8"),
             NodeSpec("simulation_diode_controller:idet", "channel", "axis", "<f8")]
    return tuple(nodes + [n for det in range(detectors) for n in _mca(det)])


def _plan(applications: Any, detectors: int = 1, **options: Any) -> dict[str, Any]:
    info = {"filename": "/tmp/x.h5", "npoints": 5, "acquisition_chain": CHAIN,
            "start_time": "2026-12-07T10:00:00+01:00",
            "nexuswriter": {"technique": {"name": "XRF", "applications": applications}}}
    layout = plan_scan(ScanDescription("k", "ascan", 3, info, _nodes(detectors)),
                       SaveOptions(**options))
    return {item.path: item for item in layout.entries[0].items}


XRF = {"xrf": {"class": "APPxrf", "I0": "iodet", "It": "idet", "mca": ["mca1:det0"]}}


def test_xrf_application_links_i0_it_mca_and_times():
    items = _plan(XRF)
    sub = items["/3.1/xrf"]
    assert isinstance(sub, GroupPlan) and sub.nx_class == "NXsubentry"
    assert isinstance(items["/3.1/xrf/definition"], FieldPlan)
    assert items["/3.1/xrf/definition"].value == "APPxrf"
    assert items["/3.1/xrf/start_time"].value == "2026-12-07T10:00:00+01:00"
    links = {path.rsplit("/", 1)[1]: item.target for path, item in items.items()
             if isinstance(item, LinkPlan) and path.startswith("/3.1/xrf/")}
    assert links == {"i0": "/3.1/instrument/iodet/data", "it": "/3.1/instrument/idet/data",
                     "mca": "/3.1/instrument/mca1_det0/data",
                     "elapsed_time": "/3.1/instrument/mca1_det0/real_time",
                     "live_time": "/3.1/instrument/mca1_det0/energy_livetime"}


def test_several_detectors_get_numbered_names_and_stack_mcas_one_dataset():
    xrf = {"xrf": dict(XRF["xrf"], mca=[])}
    items = _plan(xrf, detectors=2)
    names = sorted(path.rsplit("/", 1)[1] for path in items if path.startswith("/3.1/xrf/"))
    assert names == ["definition", "elapsed_time_mca00", "elapsed_time_mca01", "i0", "it",
                     "live_time_mca00", "live_time_mca01", "mca00", "mca01", "start_time"]
    assert items["/3.1/xrf/mca01"].target == "/3.1/instrument/mca1_det1/data"
    stacked = _plan(xrf, detectors=2, stack_mcas=True)
    assert stacked["/3.1/xrf/mca"].target == "/3.1/instrument/mca1/data"
    assert stacked["/3.1/xrf/elapsed_time"].target == "/3.1/instrument/mca1/real_time"
    assert stacked["/3.1/xrf/live_time"].target == "/3.1/instrument/mca1/energy_livetime"
    assert "/3.1/xrf/mca00" not in stacked


def test_only_appxrf_applications_are_written_and_unknown_names_link_nothing():
    items = _plan({"other": {"class": "APPother"},
                   "xrf": {"class": "appxrf", "I0": "nothere", "mca": ["mca9:det0"]}})
    assert "/3.1/other" not in items
    links = [p for p, item in items.items() if isinstance(item, LinkPlan)]
    assert not [p for p in links if p.startswith("/3.1/xrf/")]
    assert "/3.1/xrf" not in _plan(None)


@pytest.mark.parametrize("applications, key", [
    (["xrf"], "applications"),
    ({"xrf": "APPxrf"}, "applications/xrf"),
    ({"xrf": {"class": "APPxrf", "mca": "mca1"}}, "applications/xrf/mca"),
    ({"xrf": {"class": "APPxrf", "I0": 3}}, "applications/xrf/I0"),
    ({"measurement": {"class": "APPxrf"}}, "applications"),
])
def test_malformed_application_is_refused_naming_the_key(applications, key):
    with pytest.raises(MalformedInfoError, match=f"nexuswriter/technique/{key}'"):
        _plan(applications)


def test_names_refer_to_channels_as_in_the_classic_writer():
    assert matching_name("iodet", "simulation_diode_controller:iodet")
    assert matching_name("mca1:det0", "mca1:realtime_det0")
    assert matching_name("xmap1:det0", "simxmap1:spectrum_det0")
    assert not matching_name("mca1:det0", "mca1:realtime_det1")
    assert not matching_name("a:b:c", "b:c")
