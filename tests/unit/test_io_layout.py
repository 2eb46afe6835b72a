"""The NeXus layout planner on the simulator's scans, without h5py or Redis."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from typing import Any, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nexus_writer_service.io.layout import (
    FieldPlan,
    GridPlan,
    GroupPlan,
    ImagesPlan,
    LinkPlan,
    NodeSpec,
    PlanItem,
    ScanDescription,
    ScanLayout,
    StreamPlan,
    chunk_rows,
    plan_scan,
)
from nexus_writer_service.io.options import SaveOptions
from nexus_writer_service.simulation import SCAN_TYPES, ScanParameters, ScanPlan, build_scan
from nexus_writer_service.simulation import signals

NUMBER = 7
PARAMS = ScanParameters(session="demo", number=NUMBER, root="/data/visitor", nchannels=6)
NEXUS_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
OPTION_SETS = {
    "default": SaveOptions(),
    "keepshape": SaveOptions(keepshape=True),
    "long_names": SaveOptions(short_names=False),
    "strict": SaveOptions(strict_names=True, multivalue_positioners=True),
    "references": SaveOptions(disable_external_hdf5=True),
}
REPLANNED_KINDS = ["ascan", "a2scan", "amesh", "mca", "lima", "two_top_masters",
                   "many_channels"]


@functools.lru_cache(maxsize=None)
def scan_plan(kind: str) -> ScanPlan:
    return build_scan(kind, PARAMS)


def node_specs(plan: ScanPlan) -> list[NodeSpec]:
    nodes = [NodeSpec(spec.name, "channel", str(spec.subscan), np.dtype(spec.dtype).str,
                      spec.shape, spec.unit) for spec in plan.channels]
    nodes += [NodeSpec(lima.name, "lima", str(lima.subscan), np.dtype(lima.dtype).str,
                       lima.shape) for lima in plan.limas]
    return nodes


def describe(plan: ScanPlan, nodes: Sequence[NodeSpec] | None = None) -> ScanDescription:
    nodes = node_specs(plan) if nodes is None else nodes
    return ScanDescription(f"{PARAMS.session}:scans:{plan.number}_{plan.name}", plan.name,
                           plan.number, plan.scan_info, tuple(nodes))


def layout_of(kind: str, options: SaveOptions | None = None) -> ScanLayout:
    return plan_scan(describe(scan_plan(kind)), options or SaveOptions())


def all_items(layout: ScanLayout) -> list[PlanItem]:
    return [item for entry in layout.entries for item in entry.items]


def by_path(layout: ScanLayout) -> dict[str, PlanItem]:
    return {item.path: item for item in all_items(layout)}


def children(layout: ScanLayout, group: str) -> dict[str, PlanItem]:
    """Direct members of ``group``, by name."""
    prefix = group + "/"
    return {item.path[len(prefix):]: item for item in all_items(layout)
            if item.path.startswith(prefix) and "/" not in item.path[len(prefix):]}


def measurement(layout: ScanLayout, entry: str) -> dict[str, LinkPlan]:
    links = children(layout, f"/{entry}/measurement")
    assert all(isinstance(link, LinkPlan) for link in links.values())
    return links  # type: ignore[return-value]


def link_names(layout: ScanLayout, entry: str) -> dict[str, str]:
    """Channel or lima name -> its name in ``measurement``."""
    targets = {plan.path: name for name, plan in {**layout.streams, **layout.images}.items()}
    return {targets[link.target]: name for name, link in measurement(layout, entry).items()}


def check_consistent(layout: ScanLayout) -> None:
    """Unique paths, every item under its entry, every link to something the layout writes."""
    paths = [item.path for item in all_items(layout)]
    assert len(paths) == len(set(paths)), sorted(p for p in paths if paths.count(p) > 1)
    for entry in layout.entries:
        for item in entry.items:
            assert item.path == f"/{entry.name}" or item.path.startswith(f"/{entry.name}/")
    datasets = {item.path for item in all_items(layout)
                if isinstance(item, (StreamPlan, ImagesPlan, FieldPlan))}
    for item in all_items(layout):
        if isinstance(item, LinkPlan):
            assert item.target in datasets, item
        if isinstance(item, GridPlan):
            assert isinstance(by_path(layout)[item.source], StreamPlan), item
        if isinstance(item, StreamPlan) and item.lengths_path is not None:
            assert item.lengths_path not in paths


# -- entries -------------------------------------------------------------------


@pytest.mark.parametrize("kind", SCAN_TYPES)
def test_one_entry_per_subscan_named_number_dot_index(kind):
    plan = scan_plan(kind)
    layout = layout_of(kind)
    assert [entry.name for entry in layout.entries] == [
        f"{NUMBER}.{i}" for i in range(1, len(plan.subscans) + 1)]
    assert [entry.subscan for entry in layout.entries] == plan.subscans
    for entry in layout.entries:
        root = entry.items[0]
        assert isinstance(root, GroupPlan) and root.path == f"/{entry.name}"
        assert root.nx_class == "NXentry"


def test_two_top_masters_give_two_entries():
    layout = layout_of("two_top_masters")
    assert [entry.name for entry in layout.entries] == [f"{NUMBER}.1", f"{NUMBER}.2"]
    assert "timer2:elapsed_time" in link_names(layout, f"{NUMBER}.2")
    assert "timer2:elapsed_time" not in link_names(layout, f"{NUMBER}.1")
    assert "axis:samy" in link_names(layout, f"{NUMBER}.1")


@pytest.mark.parametrize("kind", SCAN_TYPES)
def test_strict_names_are_valid_nexus_names(kind):
    layout = layout_of(kind, SaveOptions(strict_names=True))
    assert all(NEXUS_NAME.match(entry.name) for entry in layout.entries)
    assert layout.entries[0].name == f"entry_{NUMBER}_1"
    assert layout.root_attrs["default"] == layout.entries[0].name
    check_consistent(layout)


@pytest.mark.parametrize("kind", SCAN_TYPES)
def test_root_default_is_the_first_entry(kind):
    layout = layout_of(kind)
    assert layout.root_attrs["NX_class"] == "NXroot"
    assert layout.root_attrs["default"] == f"{NUMBER}.1"


# -- consistency ------------------------------------------------------------------


@pytest.mark.parametrize("kind", SCAN_TYPES)
def test_paths_unique_under_their_entry_and_links_resolve(kind):
    for name, options in OPTION_SETS.items():
        try:
            check_consistent(layout_of(kind, options))
        except AssertionError as error:
            raise AssertionError(f"with options {name}: {error}") from error


@pytest.mark.parametrize("kind", SCAN_TYPES)
def test_every_channel_streams_once_with_its_dtype_shape_and_unit(kind):
    plan = scan_plan(kind)
    layout = layout_of(kind)
    streams = [item for item in all_items(layout) if isinstance(item, StreamPlan)]
    assert sorted(stream.channel for stream in streams) == sorted(c.name for c in plan.channels)
    assert set(layout.streams) == {c.name for c in plan.channels}
    for spec in plan.channels:
        stream = layout.streams[spec.name]
        assert stream.channel == spec.name
        assert np.dtype(stream.dtype) == spec.dtype
        assert stream.point_shape == tuple(spec.shape)
        assert stream.lengths_path is None
        if spec.unit:
            assert stream.attrs["units"] == spec.unit
        else:
            assert "units" not in stream.attrs


@pytest.mark.parametrize("kind", SCAN_TYPES)
def test_every_lima_has_an_images_plan(kind):
    plan = scan_plan(kind)
    layout = layout_of(kind)
    assert set(layout.images) == {lima.name for lima in plan.limas}
    for lima in plan.limas:
        images = layout.images[lima.name]
        assert images.frame_shape == tuple(lima.shape)
        assert np.dtype(images.dtype) == lima.dtype
        assert images.virtual is True
        assert by_path(layout)[images.path] is images


# -- measurement ------------------------------------------------------------------


@pytest.mark.parametrize("short", [True, False], ids=["short", "long"])
@pytest.mark.parametrize("kind", SCAN_TYPES)
def test_measurement_has_one_unique_link_per_node(kind, short):
    layout = layout_of(kind, SaveOptions(short_names=short))
    for entry in layout.entries:
        subscan_nodes = {n.name for n in node_specs(scan_plan(kind)) if n.subscan == entry.subscan}
        names = link_names(layout, entry.name)
        assert set(names) == subscan_nodes
        assert len(set(names.values())) == len(names)
        assert all(NEXUS_NAME.match(name) for name in names.values())


@pytest.mark.parametrize("kind, expected", [
    ("ascan", {"diode:diode1": "diode1", "axis:samy": "samy", "mon:mon": "mon",
               "timer:elapsed_time": "elapsed_time"}),
    ("mca", {"mca1:spectrum_det0": "spectrum_det0", "mca1:icr_det0": "icr_det0"}),
    ("lima", {"lima_simulator:image": "lima_simulator",
              "lima_simulator:roi_counters:roi1_sum": "roi1_sum"}),
])
def test_short_names_are_the_last_name_part(kind, expected):
    names = link_names(layout_of(kind), f"{NUMBER}.1")
    assert {name: names[name] for name in expected} == expected


@pytest.mark.parametrize("kind, expected", [
    ("ascan", {"diode:diode1": "diode_diode1", "axis:samy": "axis_samy"}),
    ("mca", {"mca1:spectrum_det0": "mca1_spectrum_det0"}),
    ("lima", {"lima_simulator:image": "lima_simulator_image",
              "lima_simulator:roi_counters:roi1_sum": "lima_simulator_roi_counters_roi1_sum"}),
])
def test_long_names_are_the_full_channel_name(kind, expected):
    names = link_names(layout_of(kind, SaveOptions(short_names=False)), f"{NUMBER}.1")
    assert {name: names[name] for name in expected} == expected


# -- scan types ---------------------------------------------------------------------


def test_ascan_motor_is_a_positioner_and_counter_a_detector():
    layout = layout_of("ascan")
    items = by_path(layout)
    instrument = f"/{NUMBER}.1/instrument"
    samy = items[f"{instrument}/samy"]
    assert isinstance(samy, GroupPlan) and samy.nx_class == "NXpositioner"
    assert layout.streams["axis:samy"].path == f"{instrument}/samy/value"
    diode = items[f"{instrument}/diode1"]
    assert isinstance(diode, GroupPlan) and diode.nx_class == "NXdetector"
    assert layout.streams["diode:diode1"].path == f"{instrument}/diode1/data"


def test_ascan_plot0d_shows_diode1_against_samy_by_default():
    layout = layout_of("ascan")
    entry = layout.entries[0]
    plot = by_path(layout)[f"/{entry.name}/plot0D"]
    assert isinstance(plot, GroupPlan) and plot.nx_class == "NXdata"
    assert plot.attrs["signal"] == "diode1"
    assert plot.attrs["axes"] == ["samy"]
    members = children(layout, plot.path)
    assert members["diode1"] == LinkPlan(members["diode1"].path,
                                         layout.streams["diode:diode1"].path)
    assert members["samy"] == LinkPlan(members["samy"].path, layout.streams["axis:samy"].path)
    # the simulated ascan publishes BLISS's display_extra.plotselect (the curves the
    # user shows), whose NXdata group is the default, as the classic writer makes it;
    # without that key, plot0D is the default
    assert entry.default == "plotselect"
    plan = scan_plan("ascan")
    info = {k: v for k, v in plan.scan_info.items() if k != "display_extra"}
    description = dataclasses.replace(describe(plan), scan_info=info)
    assert plan_scan(description, SaveOptions()).entries[0].default == "plot0D"


def test_mca_detector_group_holds_spectrum_and_rates():
    layout = layout_of("mca")
    group = f"/{NUMBER}.1/instrument/mca1_det0"
    detector = by_path(layout)[group]
    assert isinstance(detector, GroupPlan) and detector.nx_class == "NXdetector"
    members = children(layout, group)
    # NeXus names realtime real_time (NXdetector); the others have no NeXus name;
    # type and description are the device_info BLISS gives its MCAs
    assert set(members) == {"data", "icr", "ocr", "livetime", "real_time", "deadtime",
                            "type", "description"}
    assert members["type"] == FieldPlan(f"{group}/type", "mca")
    assert members["real_time"] == layout.streams["mca1:realtime_det0"]
    data = members["data"]
    assert isinstance(data, StreamPlan) and data.channel == "mca1:spectrum_det0"
    assert data.point_shape == (signals.MCA_CHANNELS,)
    assert data.attrs["interpretation"] == "spectrum"
    assert members["icr"] == layout.streams["mca1:icr_det0"]
    assert layout.streams["mca1:livetime_det0"].attrs["units"] == "s"


def test_mca_has_a_spectrum_plot():
    layout = layout_of("mca")
    plot = by_path(layout)[f"/{NUMBER}.1/plot1D"]
    assert isinstance(plot, GroupPlan) and plot.nx_class == "NXdata"
    assert plot.attrs["signal"] == "spectrum_det0"
    assert plot.attrs["interpretation"] == "spectrum"
    assert "spectrum_det0" in children(layout, plot.path)


def test_lima_image_plot_is_the_entry_default():
    layout = layout_of("lima")
    entry = layout.entries[0]
    plot = by_path(layout)[f"/{entry.name}/plot2D"]
    assert isinstance(plot, GroupPlan) and plot.nx_class == "NXdata"
    assert plot.attrs["interpretation"] == "image"
    assert plot.attrs["signal"] == "lima_simulator"
    images = layout.images["lima_simulator:image"]
    assert images.path == f"/{entry.name}/instrument/lima_simulator/data"
    assert children(layout, plot.path)["lima_simulator"].target == images.path  # type: ignore
    assert entry.default == "plot2D"


def test_lima_without_external_hdf5_has_references_and_no_image_plot():
    layout = layout_of("lima", SaveOptions(disable_external_hdf5=True))
    entry = layout.entries[0]
    images = layout.images["lima_simulator:image"]
    assert images.virtual is False
    assert f"/{entry.name}/plot2D" not in by_path(layout)
    assert entry.default != "plot2D" and entry.default is not None
    assert link_names(layout, entry.name)["lima_simulator:image"] == "lima_simulator"


def test_amesh_keepshape_shows_counters_as_a_grid():
    n1, n2 = scan_plan("amesh").scan_info["npoints1"], scan_plan("amesh").scan_info["npoints2"]
    layout = layout_of("amesh", SaveOptions(keepshape=True))
    plot = f"/{NUMBER}.1/plot0D"
    members = children(layout, plot)
    assert members and all(isinstance(item, GridPlan) for item in members.values())
    streams = {stream.path: stream for stream in layout.streams.values()}
    for item in members.values():
        assert isinstance(item, GridPlan)
        assert item.shape == (n2, n1)
        assert streams[item.source].channel == item.attrs["channel"]
        assert np.dtype(item.dtype) == np.dtype(streams[item.source].dtype)
    assert {"diode1", "samy", "samz"} <= set(members)
    group = by_path(layout)[plot]
    assert isinstance(group, GroupPlan)
    assert group.attrs["signal"] == "diode1"
    assert group.attrs["axes"] == ["samz", "samy"]


def test_amesh_without_keepshape_has_no_grid():
    layout = layout_of("amesh")
    assert not any(isinstance(item, GridPlan) for item in all_items(layout))
    members = children(layout, f"/{NUMBER}.1/plot0D")
    assert all(isinstance(item, LinkPlan) for item in members.values())


def test_amesh_without_keepshape_is_a_scatter_of_the_counters_over_both_motors():
    layout = layout_of("amesh")
    group = by_path(layout)[f"/{NUMBER}.1/plot0D"]
    assert isinstance(group, GroupPlan)
    assert group.attrs["signal"] == "diode1"
    assert "axes" not in group.attrs  # one name per signal dimension, or nxcheck errs
    signals = [group.attrs["signal"], *group.attrs["auxiliary_signals"]]
    assert group.member_attrs == {name: {"axes": "samy:samz"} for name in signals}
    assert {"samy", "samz"} <= set(children(layout, group.path))


def test_amesh_scatter_axes_follow_the_motors_declared_so_far():
    plan = scan_plan("amesh")
    nodes = [n for n in node_specs(plan) if n.name != "axis:samz"]
    group = by_path(plan_scan(describe(plan, nodes), SaveOptions()))[f"/{NUMBER}.1/plot0D"]
    assert isinstance(group, GroupPlan)
    assert group.member_attrs and all(attrs == {"axes": "samy"}
                                      for attrs in group.member_attrs.values())


def test_a_scatter_plot_preference_gives_a_scatter_without_a_grid():
    plan = scan_plan("a2scan")
    info = dict(plan.scan_info, plots=[{"kind": "scatter-plot", "items": [
        {"kind": "scatter", "x": "axis:samy", "y": "axis:samz", "value": "diode:diode2"}]}])
    description = ScanDescription("k", plan.name, NUMBER, info, tuple(node_specs(plan)))
    group = by_path(plan_scan(description, SaveOptions()))[f"/{NUMBER}.1/plot0D"]
    assert isinstance(group, GroupPlan)
    assert group.attrs["signal"] == "diode2"
    assert group.member_attrs["diode2"] == {"axes": "samy:samz"}


@pytest.mark.parametrize("kind", sorted(set(SCAN_TYPES) - {"amesh"}))
def test_line_scans_have_no_scatter(kind):
    for item in all_items(layout_of(kind)):
        assert not (isinstance(item, GroupPlan) and item.member_attrs), item


@pytest.mark.parametrize("kind", sorted(set(SCAN_TYPES) - {"amesh"}))
def test_keepshape_does_nothing_to_line_scans(kind):
    layout = layout_of(kind, SaveOptions(keepshape=True))
    assert not any(isinstance(item, GridPlan) for item in all_items(layout))


# -- positioners ----------------------------------------------------------------------


def test_moving_motor_in_positioners_links_to_its_value():
    layout = layout_of("ascan")
    link = by_path(layout)[f"/{NUMBER}.1/instrument/positioners/samy"]
    assert link == LinkPlan(link.path, layout.streams["axis:samy"].path)


def test_moving_motor_stays_out_of_positioners_until_its_channel_is_declared():
    members = children(plan_scan(describe(scan_plan("ascan"), []), SaveOptions()),
                       f"/{NUMBER}.1/instrument/positioners")
    assert "samy" not in members
    assert isinstance(members["samx"], FieldPlan)


def test_amesh_both_motors_link_to_their_values():
    layout = layout_of("amesh")
    items = by_path(layout)
    for motor in ("samy", "samz"):
        link = items[f"/{NUMBER}.1/instrument/positioners/{motor}"]
        assert link == LinkPlan(link.path, layout.streams[f"axis:{motor}"].path)


def test_static_motors_are_fields_with_units():
    info = scan_plan("ascan").scan_info["positioners"]
    members = children(layout_of("ascan"), f"/{NUMBER}.1/instrument/positioners")
    for motor, unit in (("samx", "mm"), ("srot", "deg"), ("energy", "keV")):
        field = members[motor]
        assert isinstance(field, FieldPlan)
        assert field.value == info["positioners_start"][motor]
        assert field.attrs == {"units": unit}


def test_multivalue_positioners_give_start_and_end():
    info = scan_plan("ascan").scan_info["positioners"]
    layout = layout_of("ascan", SaveOptions(multivalue_positioners=True))
    members = children(layout, f"/{NUMBER}.1/instrument/positioners")
    field = members["samx"]
    assert isinstance(field, FieldPlan)
    assert field.value == [info["positioners_start"]["samx"], info["positioners_end"]["samx"]]
    assert isinstance(members["samy"], LinkPlan)


@pytest.mark.parametrize("group", ["positioners_start", "positioners_end",
                                   "positioners_dial_start", "positioners_dial_end"])
def test_positioner_snapshots_are_collections(group):
    info = scan_plan("ascan").scan_info["positioners"]
    layout = layout_of("ascan")
    path = f"/{NUMBER}.1/instrument/{group}"
    assert by_path(layout)[path] == GroupPlan(path, "NXcollection")
    members = children(layout, path)
    assert {name: field.value for name, field in members.items()} == info[group]  # type: ignore
    assert members["samy"].attrs == {"units": "mm"}  # type: ignore[union-attr]


def test_positioners_of_the_second_entry_are_static():
    layout = layout_of("two_top_masters")
    members = children(layout, f"/{NUMBER}.2/instrument/positioners")
    assert isinstance(members["samy"], FieldPlan)


# -- naming -------------------------------------------------------------------------------


def plain(names: Sequence[str], shapes: Sequence[tuple[int, ...]] = (), dtype: str = "<f8",
          scan_info: dict[str, Any] | None = None) -> ScanDescription:
    shapes = list(shapes) or [()] * len(names)
    nodes = tuple(NodeSpec(name, "channel", "main", dtype, shape)
                  for name, shape in zip(names, shapes))
    return ScanDescription("demo:scans:1_test", "test", 1, scan_info or {}, nodes)


def test_same_short_name_gives_distinct_devices_and_links():
    layout = plan_scan(plain(["a:x", "b:x"]), SaveOptions())
    check_consistent(layout)
    a, b = layout.streams["a:x"].path, layout.streams["b:x"].path
    assert a.rsplit("/", 1)[0] != b.rsplit("/", 1)[0]
    names = link_names(layout, "1.1")
    assert names["a:x"] != names["b:x"]


def test_entry_without_nodes_still_has_its_groups():
    layout = plan_scan(plain([]), SaveOptions())
    assert [entry.name for entry in layout.entries] == ["1.1"]
    assert {"/1.1", "/1.1/instrument", "/1.1/measurement", "/1.1/writer"} <= set(by_path(layout))
    assert layout.entries[0].default is None


# -- re-planning -------------------------------------------------------------------------


def assert_superset(before: ScanLayout, after: ScanLayout) -> None:
    later = by_path(after)
    for path, item in by_path(before).items():
        assert path in later, path
        assert type(later[path]) is type(item), path
        if not isinstance(item, GroupPlan):
            assert later[path] == item, path


@pytest.mark.parametrize("options", [SaveOptions(), SaveOptions(keepshape=True),
                                     SaveOptions(short_names=False)],
                         ids=["default", "keepshape", "long_names"])
@pytest.mark.parametrize("kind", REPLANNED_KINDS)
def test_replanning_with_more_nodes_keeps_every_item(kind, options):
    plan = scan_plan(kind)
    nodes = node_specs(plan)
    layouts = [plan_scan(describe(plan, nodes[:k]), options) for k in range(len(nodes) + 1)]
    for before, after in zip(layouts, layouts[1:]):
        assert_superset(before, after)
    assert_superset(layouts[0], layouts[-1])


def test_replanning_keeps_the_first_channel_names_on_collision():
    first = plan_scan(plain(["a:x"]), SaveOptions())
    both = plan_scan(plain(["a:x", "b:x"]), SaveOptions())
    assert_superset(first, both)


# -- streams ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype, is_nan", [("<f4", True), ("<f8", True), ("<i4", False),
                                           ("<u2", False)])
def test_variable_length_channel_is_padded_and_records_lengths(dtype, is_nan):
    layout = plan_scan(plain(["det:trace"], [(-1,)], dtype), SaveOptions())
    stream = layout.streams["det:trace"]
    assert stream.lengths_path is not None
    assert stream.lengths_path.rsplit("/", 1)[0] == stream.path.rsplit("/", 1)[0]
    assert len(stream.point_shape) == 1
    if is_nan:
        assert math.isnan(stream.fill)
    else:
        assert stream.fill == 0
    check_consistent(layout)
    assert link_names(layout, "1.1") == {"det:trace": "trace"}
    assert "/1.1/plot1D" not in by_path(layout)


def test_fixed_length_channel_has_no_lengths():
    layout = plan_scan(plain(["det:spectrum"], [(16,)]), SaveOptions())
    stream = layout.streams["det:spectrum"]
    assert stream.lengths_path is None and stream.point_shape == (16,)


@pytest.mark.parametrize("point_bytes, chunk, expected, rows", [
    (8, 1 << 20, 11, 11),
    (8, 800, 1000, 100),
    (8, 1 << 20, 0, 4096),
    (1 << 24, 1 << 20, 100, 1),
    (16384, 65536, 11, 4),
    (0, 64, 10, 10),
    (1, 1 << 30, 10 ** 9, 1 << 16),
])
def test_chunk_rows_examples(point_bytes, chunk, expected, rows):
    assert chunk_rows(point_bytes, chunk, expected) == rows


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 1 << 26), st.integers(64, 1 << 30), st.integers(0, 10 ** 7))
def test_chunk_rows_fill_about_chunk_bytes(point_bytes, chunk, expected):
    rows = chunk_rows(point_bytes, chunk, expected)
    assert rows >= 1
    if expected > 0:
        assert rows <= expected
    if point_bytes <= chunk:
        assert rows * max(point_bytes, 1) <= chunk
    capped = rows in (expected, 4096, 1 << 16)
    assert capped or (rows + 1) * max(point_bytes, 1) > chunk


def test_streams_chunk_by_the_option_and_the_scan_size():
    layout = layout_of("mca", SaveOptions(chunk_bytes=65536))
    assert layout.streams["mca1:spectrum_det0"].chunk_rows == 65536 // (4 * signals.MCA_CHANNELS)
    assert layout.streams["diode:diode1"].chunk_rows == scan_plan("mca").scan_info["npoints"]
    long = layout_of("long", SaveOptions(chunk_bytes=4096))
    assert long.streams["diode:diode1"].chunk_rows == 4096 // 8


# -- writer note ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ascan", "amesh", "lima", "two_top_masters"])
def test_writer_note_records_scan_key_info_and_options(kind):
    plan = scan_plan(kind)
    options = SaveOptions(keepshape=True)
    description = describe(plan)
    layout = plan_scan(description, options)
    for entry in layout.entries:
        note = children(layout, f"/{entry.name}/writer")
        assert note["scan_key"].value == description.key  # type: ignore[union-attr]
        scan_info = note["scan_info"]
        assert isinstance(scan_info, FieldPlan)
        assert scan_info.attrs["type"] == "application/json"
        assert json.loads(scan_info.value) == json.loads(json.dumps(plan.scan_info))
        assert json.loads(note["options"].value) == options.as_dict()  # type: ignore
        root = by_path(layout)[f"/{entry.name}"]
        assert root.attrs["scan_key"] == description.key  # type: ignore[union-attr]


def test_planning_is_deterministic_and_leaves_scan_info_alone():
    plan = scan_plan("amesh")
    before = json.dumps(plan.scan_info, sort_keys=True)
    first = plan_scan(describe(plan), SaveOptions(keepshape=True))
    second = plan_scan(describe(plan), SaveOptions(keepshape=True))
    assert first == second
    assert json.dumps(plan.scan_info, sort_keys=True) == before


# -- random channel names ------------------------------------------------------------------

PARTS = st.text(alphabet="abx", min_size=1, max_size=2)
NAMES = st.lists(PARTS, min_size=1, max_size=3).map(":".join)
SHAPES = st.sampled_from([(), (), (), (5,), (-1,), (4, 3)])


@st.composite
def random_scans(draw: st.DrawFn) -> ScanDescription:
    """Channels named from a tiny alphabet, so that names collide; some are masters.

    The curve plot's ``x`` is any scalar channel, declared in any order.
    """
    names = draw(st.lists(NAMES, min_size=1, max_size=8, unique=True))
    shapes = [draw(SHAPES) for _ in names]
    masters = [name for name, shape in zip(names, shapes) if not shape and draw(st.booleans())]
    scalars = [n for n, s in zip(names, shapes) if not s]
    x = draw(st.sampled_from(scalars)) if scalars else None
    positioners = {name.rsplit(":", 1)[-1]: 1.0 for name in masters}
    scan_info = {
        "npoints": draw(st.integers(0, 50)),
        "acquisition_chain": {"main": {"master": {"scalars": masters}}},
        "positioners": {"positioners_start": positioners, "positioners_end": positioners},
        "plots": [{"kind": "curve-plot", "items": [{"kind": "curve", "x": x}]}] if x else [],
    }
    return plain(names, shapes, draw(st.sampled_from(["<f8", "<i4"])), scan_info)


@settings(max_examples=150, deadline=None)
@given(random_scans(), st.booleans())
def test_random_channel_names_give_unique_paths_and_names(description, short):
    layout = plan_scan(description, SaveOptions(short_names=short))
    check_consistent(layout)
    names = link_names(layout, "1.1")
    assert set(names) == {node.name for node in description.nodes}
    assert len(set(names.values())) == len(names)
    assert set(layout.streams) == set(names)


@settings(max_examples=150, deadline=None)
@given(random_scans(), st.booleans(), st.booleans())
def test_random_channel_names_replan_as_a_superset(description, short, keepshape):
    options = SaveOptions(short_names=short, keepshape=keepshape)
    nodes = description.nodes
    previous = None
    for k in range(len(nodes) + 1):
        layout = plan_scan(ScanDescription(description.key, description.name, description.number,
                                           description.scan_info, nodes[:k]), options)
        if previous is not None:
            assert_superset(previous, layout)
        previous = layout


# -- stack_mcas ------------------------------------------------------------------


def _mca_node(name: str, dtype: str = "<u4", shape: tuple[int, ...] = ()) -> NodeSpec:
    return NodeSpec(name, "channel", "axis", dtype, shape)


def test_mca_stacks_orders_detectors_by_number_and_keeps_other_channels_out():
    from nexus_writer_service.io.layout import mca_stacks

    nodes = [_mca_node(f"mca1:{q}_det{n}", *(("<u4", (16,)) if q == "spectrum" else ("<f8",)))
             for n in (10, 2, 0) for q in ("spectrum", "icr")]
    nodes.append(_mca_node("diode:diode1", "<f8"))
    stacks, notes = mca_stacks(nodes)
    assert notes == []
    assert list(stacks) == ["mca1"]
    assert list(stacks["mca1"]) == ["data", "icr"]
    assert [n.name for n in stacks["mca1"]["data"]] == [
        "mca1:spectrum_det0", "mca1:spectrum_det2", "mca1:spectrum_det10"]
    assert [n.name for n in stacks["mca1"]["icr"]] == [
        "mca1:icr_det0", "mca1:icr_det2", "mca1:icr_det10"]


@pytest.mark.parametrize("nodes, reason", [
    ([_mca_node("mca1:spectrum_det0", shape=(8,))], "a single detector"),
    ([_mca_node("mca1:spectrum_det0", shape=(8,)), _mca_node("mca1:spectrum_det1", shape=(9,))],
     "mca1:spectrum_det1 has points of shape (9,), mca1:spectrum_det0 of shape (8,)"),
    ([_mca_node("mca1:spectrum_det0", shape=(8,)),
      _mca_node("mca1:spectrum_det1", "<u2", shape=(8,))],
     "mca1:spectrum_det1 is uint16, mca1:spectrum_det0 is uint32"),
    ([_mca_node("mca1:spectrum_det0", shape=(8,)), _mca_node("mca1:icr_det0", "<f8"),
      _mca_node("mca1:spectrum_det1", shape=(8,))],
     "detector 1 does not publish the same quantities as detector 0"),
    ([_mca_node("mca1:spectrum_det0", shape=(-1,)), _mca_node("mca1:spectrum_det1", shape=(-1,))],
     "mca1:spectrum_det0 has variable-length points"),
], ids=["single", "lengths", "dtypes", "quantities", "variable-length"])
def test_mca_stacks_leaves_out_controllers_that_cannot_be_stacked(nodes, reason):
    from nexus_writer_service.io.layout import mca_stacks

    stacks, notes = mca_stacks(nodes)
    assert stacks == {}
    assert notes == [f"MCA mca1: detectors not stacked ({reason}); one NXdetector per detector"]


def test_stack_mcas_plans_one_nxdetector_per_controller():
    import dataclasses

    from nexus_writer_service.io.layout import StackPlan

    plan = build_scan("mca", dataclasses.replace(PARAMS, mca_detectors=3))
    layout = plan_scan(describe(plan), SaveOptions(stack_mcas=True))
    entry = f"/{NUMBER}.1"
    instrument = children(layout, f"{entry}/instrument")
    assert not [name for name in instrument if name.startswith("mca1_det")]
    assert instrument["mca1"] == GroupPlan(f"{entry}/instrument/mca1", "NXdetector")
    stacks = {item.path: item for item in all_items(layout) if isinstance(item, StackPlan)}
    assert sorted(stacks) == sorted(f"{entry}/instrument/mca1/{leaf}" for leaf in (
        "data", "icr", "ocr", "livetime", "real_time", "deadtime"))
    data = stacks[f"{entry}/instrument/mca1/data"]
    assert data.channels == tuple(f"mca1:spectrum_det{n}" for n in range(3))
    assert data.point_shape == (signals.MCA_CHANNELS,) and data.dtype == "<u4"
    assert stacks[f"{entry}/instrument/mca1/icr"].point_shape == ()
    mca_channels = {c.name for c in plan.channels if c.name.startswith("mca1:")}
    assert set(layout.stacks) == mca_channels
    assert not mca_channels & set(layout.streams)
    links = measurement(layout, f"{NUMBER}.1")
    assert links["spectrum"].target == data.path
    assert links["icr"].target == f"{entry}/instrument/mca1/icr"
    plot = by_path(layout)[f"{entry}/plot1D"]
    assert isinstance(plot, GroupPlan)
    assert plot.attrs["signal"] == "spectrum" and plot.attrs["axes"] == [".", ".", "."]
    signal = children(layout, f"{entry}/plot1D")["spectrum"]
    assert isinstance(signal, LinkPlan) and signal.target == data.path
    assert layout.notes == []


def test_stack_mcas_with_one_detector_keeps_the_usual_layout_and_says_why():
    layout = plan_scan(describe(scan_plan("mca")), SaveOptions(stack_mcas=True))
    default = layout_of("mca")
    assert [i for i in all_items(layout) if i.path != f"/{NUMBER}.1/notes/mca_stacking"
            and not i.path.endswith("/writer/options")] == [
        i for i in all_items(default) if not i.path.endswith("/writer/options")]
    note = by_path(layout)[f"/{NUMBER}.1/notes/mca_stacking"]
    assert isinstance(note, FieldPlan) and "MCA mca1: detectors not stacked" in note.value
    assert layout.notes == [f"{NUMBER}.1: {note.value}"]


# -- standard names and units ---------------------------------------------------------


def test_counter_declared_without_unit_gets_the_unit_scan_info_publishes():
    plan = scan_plan("ascan")
    info = dict(plan.scan_info, channels=dict(plan.scan_info["channels"]))
    info["channels"]["diode:diode1"] = dict(info["channels"]["diode:diode1"], unit="cps")
    description = ScanDescription("k", plan.name, NUMBER, info, tuple(node_specs(plan)))
    streams = plan_scan(description, SaveOptions()).streams
    assert streams["diode:diode1"].attrs["units"] == "cps"
    assert "units" not in streams["diode:diode2"].attrs
    assert streams["timer:elapsed_time"].attrs["units"] == "s"
