"""Where the simulator saves lima frames: blissdata's rule for several acquisitions
per scan, printf templates and file offsets (pure)."""

from __future__ import annotations

import dataclasses

import pytest

from nexus_writer_service.simulation import LimaSpec

LIMA = "lima_simulator:image"


def test_acquisitions_each_start_a_new_file():
    """The simulator's rule, as blissdata's ``LimaClient`` documents it: 7 frames per
    acquisition, 3 per file: files of 3, 3 and 1 frames per acquisition."""
    spec = LimaSpec(LIMA, directory="/d", prefix="cam_", shape=(2, 2), frames_per_file=3,
                    frames_per_acquisition=7, first_file_number=5)
    numbers = [spec.file_number(i) for i in range(14)]
    assert numbers == [5, 5, 5, 6, 6, 6, 7, 8, 8, 8, 9, 9, 9, 10]
    assert [spec.index_in_file(i) for i in range(8)] == [0, 1, 2, 0, 1, 2, 0, 0]
    assert [spec.frames_left_in_file(i) for i in (0, 4, 6, 7)] == [3, 2, 1, 3]
    assert spec.filename(7) == "/d/cam_0007.h5"
    templated = dataclasses.replace(spec, file_template="/d/a%%b_%05d.edf",
                                    file_format="edf")
    assert templated.image_reference(7) == ("/d/a%b_00008.edf", None, 0)
    with pytest.raises(ValueError, match="file_template"):
        dataclasses.replace(spec, file_template="/d/cam.h5")
    with pytest.raises(ValueError, match="frames_per_acquisition"):
        dataclasses.replace(spec, frames_per_acquisition=-1)
