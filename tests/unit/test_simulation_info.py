"""Scan plans and scan_info of the simulator, without any server."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest

from nexus_writer_service.errors import ConfigurationError
from nexus_writer_service.simulation import (
    ScanParameters,
    SimulationOptions,
    build_scan,
    mesh_shape,
    points_per_block,
    resolve_scan_names,
    scan_names,
)
from nexus_writer_service.simulation.info import (
    acquisition_chain,
    ascan_title,
    mesh_title,
    positioners_info,
    scan_filename,
)
from nexus_writer_service.simulation.plan import ChannelSpec, LimaSpec


def params(**kwargs: Any) -> ScanParameters:
    base = ScanParameters(session="demo", number=4, root="/data/visitor", npoints=8,
                          nchannels=105)
    return dataclasses.replace(base, **kwargs)


def test_titles_use_intervals_like_bliss_commands():
    assert ascan_title("ascan", [("samy", 0.0, 1.0)], 10, 0.1) == "ascan samy 0 1 10 0.1"
    assert ascan_title("a2scan", [("samy", 0, 1), ("samz", -0.5, 0.5)], 5, 1.0) == (
        "a2scan samy 0 1 samz -0.5 0.5 5 1")
    assert mesh_title(("samy", 0, 1, 10), ("samz", 0, 0.5, 5), 0.1) == (
        "amesh samy 0 1 10 samz 0 0.5 5 0.1")


def test_scan_filename_is_absolute_under_root_and_session():
    assert scan_filename("/data/visitor", "id00", 12) == "/data/visitor/id00/id00_12.h5"
    assert scan_filename("relative", "s", 1).startswith("/")


def test_acquisition_chain_sorts_channels_by_dimension():
    chain = acquisition_chain(
        "axis", [ChannelSpec("axis:samy", np.dtype("f8"))],
        [ChannelSpec("diode:d1", np.dtype("f8")),
         ChannelSpec("mca:spectrum", np.dtype("u4"), (4096,))],
        [LimaSpec("cam:image", directory="/d", prefix="cam_", shape=(4, 5))],
    )
    assert chain == {"axis": {"master": {"scalars": ["axis:samy"], "spectra": [], "images": []},
                              "scalars": ["diode:d1"], "spectra": ["mca:spectrum"],
                              "images": ["cam:image"]}}


def test_positioners_give_dial_positions_from_offsets_and_units():
    info = positioners_info({"samx": 1.0, "srot": 100.0}, {"samx": 2.0, "srot": 100.0})
    assert info["positioners_dial_start"] == {"samx": 0.75, "srot": 10.0}
    assert info["positioners_units"] == {"samx": "mm", "srot": "deg"}


def test_lima_spec_names_files_like_the_reader_computes_them():
    spec = LimaSpec("cam:image", directory="/d", prefix="cam_", shape=(4, 5),
                    frames_per_file=10, first_file_number=3)
    assert spec.image_reference(0) == ("/d/cam_0003.h5", "/entry_0000/measurement/data", 0)
    assert spec.image_reference(25) == ("/d/cam_0005.h5", "/entry_0000/measurement/data", 5)


def test_mesh_shape_is_close_to_npoints():
    assert mesh_shape(None) == (11, 6)
    assert mesh_shape(20) == (4, 5)
    assert mesh_shape(1) == (1, 1)
    with pytest.raises(ConfigurationError, match="npoints must be >= 1"):
        mesh_shape(0)


def test_scan_names_resolve_all_and_refuse_unknown_ones():
    assert resolve_scan_names(["all"]) == list(scan_names()) == resolve_scan_names(())
    assert resolve_scan_names(["ct", "mca"]) == ["ct", "mca"]
    with pytest.raises(ConfigurationError, match="unknown scan 'nope'"):
        resolve_scan_names(["ct", "nope"])
    assert {"ct", "ascan", "a2scan", "amesh", "timescan", "loopscan", "two_top_masters", "mca",
            "lima", "many_channels", "long", "failed"} == set(scan_names())


def test_points_per_block_paces_scans_with_a_count_time():
    assert points_per_block(0.0, 1000) == 1000
    assert points_per_block(0.1, 1000) == 1
    assert points_per_block(0.001, 1000) == 100
    assert points_per_block(10.0, 1000) == 1


@pytest.mark.parametrize("kind", scan_names())
def test_every_channel_is_in_the_chain_and_blocks_match_declarations(kind):
    plan = build_scan(kind, params())
    chain = plan.scan_info["acquisition_chain"]
    listed = [name for top in chain.values() for part in (top["master"], top)
              for key in ("scalars", "spectra", "images") for name in part[key]]
    declared = [spec.name for spec in plan.channels] + [lima.name for lima in plan.limas]
    assert sorted(listed) == sorted(declared)
    assert {spec.subscan for spec in plan.channels} == set(chain)
    assert set(plan.scan_info["channels"]) == set(declared)
    block = next(plan.blocks(3))
    assert set(block.channels) == {spec.name for spec in plan.channels}
    for spec in plan.channels:
        data = block.channels[spec.name]
        assert data.dtype == spec.dtype, spec.name
        assert data.shape == (spec.points_per_point * (block.stop - block.start),) + spec.shape
    for lima in plan.limas:
        assert block.frames[lima.name].shape == (block.stop - block.start,) + lima.shape


@pytest.mark.parametrize("kind", scan_names())
def test_the_same_seed_builds_the_same_data(kind):
    first, second = (build_scan(kind, params(seed=5)) for _ in range(2))
    other = build_scan(kind, params(seed=5, repeat=1))
    blocks = [next(plan.blocks(4)) for plan in (first, second, other)]
    for name, data in blocks[0].channels.items():
        assert np.array_equal(data, blocks[1].channels[name]), name
    assert any(not np.array_equal(data, blocks[2].channels[name])
               for name, data in blocks[0].channels.items())


def test_scan_info_carries_what_a_writer_needs():
    info = build_scan("ascan", params(npoints=11)).scan_info
    assert info["title"] == "ascan samy 0 1 10 0.1"
    assert info["filename"] == "/data/visitor/demo/demo_4.h5"
    assert (info["scan_nb"], info["npoints"], info["count_time"]) == (4, 11, 0.1)
    assert info["channels"]["axis:samy"]["unit"] == "mm"
    assert info["positioners"]["positioners_end"]["samy"] == 1.0
    amesh = build_scan("amesh", params(npoints=None)).scan_info
    assert (amesh["npoints1"], amesh["npoints2"], amesh["npoints"]) == (11, 6, 66)
    assert build_scan("ct", params(npoints=50)).npoints == 1


def test_early_ends_publish_fewer_points_than_announced():
    timescan = build_scan("timescan", params(npoints=10))
    assert timescan.end_reason.value == "ABORTED" and timescan.npoints == 10
    assert timescan.scan_info["npoints"] == 0
    failed = build_scan("failed", params(npoints=10))
    assert failed.end_reason.value == "FAILED" and failed.npoints == 5
    assert "did not answer" in failed.end_message


def test_count_time_sets_the_integration_time_in_scan_info():
    assert build_scan("loopscan", params(count_time=0.5)).scan_info["title"] == (
        "loopscan 8 0.5")
    assert build_scan("loopscan", params(count_time=0.0)).scan_info["count_time"] == 0.1


@pytest.mark.parametrize("field, value, message", [
    ("npoints", 0, "npoints must be >= 1"),
    ("count_time", float("nan"), "count_time must be finite and >= 0"),
    ("seed", -1, "seed must be >= 0"),
    ("repeat", 0, "repeat must be >= 1"),
    ("block_size", 0, "block_size must be >= 1"),
    ("scans", ("ct", "nope"), "unknown scan 'nope'"),
    ("session", "a b", "invalid session name"),
])
def test_invalid_options_are_refused_before_anything_is_published(field, value, message):
    with pytest.raises(ConfigurationError, match=message):
        dataclasses.replace(SimulationOptions(), **{field: value}).validate()
