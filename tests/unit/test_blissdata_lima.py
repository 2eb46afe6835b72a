"""blissdata's lima stream info and statuses as our lima nodes and progress (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from nexus_writer_service.data.blissdata_lima import is_lima_info, lima_node_info, lima_progress
from nexus_writer_service.data.events import LimaProgress, NodeDeclaration, NodeType
from nexus_writer_service.data.nodes import LimaNode
from nexus_writer_service.errors import MalformedEventError


class _Scan:
    key = "esrf:scan:01"


def _info(**saving: Any) -> dict[str, Any]:
    lima_info = {"protocol_version": 1, "server_url": "id00/limaccds/cam",
                 "buffer_max_number": 100, "frame_per_acquisition": 7,
                 "acquisition_offset": 0, "file_path": "/data/cam/scan_%04d.h5",
                 "data_path": "/entry_0000/measurement/data", "file_format": "HDF5BS",
                 "file_offset": 10, "frame_per_file": 3}
    lima_info.update(saving)
    return {"plugin": "lima", "format": "lima_v1", "dtype": "uint16", "shape": [6, 5],
            "lima_info": lima_info}


def _node(info: dict[str, Any]) -> LimaNode:
    node_info = lima_node_info(info, "axis", "lima stream 'cam:image'")
    assert node_info is not None
    return LimaNode(_Scan(), NodeDeclaration("cam:image", NodeType.LIMA, 1, node_info))


def test_lima_streams_are_told_by_their_plugin():
    assert is_lima_info(_info())
    assert is_lima_info({"format": "lima_v1"})  # documents of older blissdata
    assert not is_lima_info({"plugin": "lima2"}) and not is_lima_info({"dtype": "float64"})


def test_frames_are_where_blissdata_says_across_acquisitions():
    node = _node(_info())
    assert (node.file_format, node.dtype.str, node.shape) == ("hdf5", "<u2", (6, 5))
    # blissdata's example: 3 frames per file, 7 per acquisition, so 3 files each
    expected = {0: (10, 0), 2: (10, 2), 3: (11, 0), 6: (12, 0), 7: (13, 0), 13: (15, 0),
                14: (16, 0)}
    for frame, (number, index) in expected.items():
        ref = node.image_reference(frame)
        assert ref.filename == f"/data/cam/scan_{number:04d}.h5", frame
        assert (ref.index_in_file, ref.path_in_file) == (index, "/entry_0000/measurement/data")


def test_edf_frames_have_no_path_in_file():
    node = _node(_info(file_format="EDF", file_path="/data/cam/scan_%d.edf", data_path=None))
    ref = node.image_reference(4)
    assert (ref.filename, ref.file_format, ref.path_in_file) == ("/data/cam/scan_11.edf",
                                                                 "edf", None)


def test_unsaved_lima_has_nothing_to_reference():
    info = _info()
    for key in ("file_path", "data_path", "file_format", "file_offset", "frame_per_file"):
        del info["lima_info"][key]
    assert lima_node_info(info, "axis", "cam") is None


@pytest.mark.parametrize("change, named", [
    ({"protocol_version": 2}, "protocol"),
    ({"file_offset": "1"}, "file_offset"),
    ({"frame_per_file": 0}, "frame_per_file"),
    ({"file_path": "/data/%s/scan_%04d.h5"}, "file template"),
    ({"file_path": "/data/scan_%04d_%04d.h5"}, "file template"),
    ({"file_format": None}, "file_format"),
])
def test_malformed_lima_info_is_refused_naming_the_stream(change, named):
    with pytest.raises(MalformedEventError, match=named) as caught:
        _node(_info(**change))
    assert "cam:image" in str(caught.value)


def test_last_status_is_the_progress():
    statuses = [{"last_index": 3, "last_index_saved": 1},
                {"last_index": 5, "last_index_saved": 2}]
    assert lima_progress(statuses, "cam") == LimaProgress(5, 2)
    assert lima_progress([{}], "cam") == LimaProgress(-1, -1)
    for wrong in ([1, 2], {"last_index": "5"}, {"last_index_saved": -2}):
        with pytest.raises(MalformedEventError, match="cam"):
            lima_progress([wrong], "cam")
