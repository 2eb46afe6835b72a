"""EDF files of the simulated Lima detector: headers as Lima writes them, parsed back
by the writer's reader bit-exact, and damaged files reported with what is wrong."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from nexus_writer_service.cli.simulate import build_parser
from nexus_writer_service.io.edf import (
    EDF_BLOCK,
    EdfFileIndex,
    EdfFormatError,
    edf_header,
    parse_edf_header,
    read_edf_data,
)
from nexus_writer_service.simulation import LimaFileWriter, LimaSpec
from nexus_writer_service.simulation.lima import write_edf_frames

DATA_TYPES = [("uint8", "UnsignedByte"), ("int8", "SignedByte"),
              ("uint16", "UnsignedShort"), ("int16", "SignedShort"),
              ("uint32", "UnsignedInteger"), ("int32", "SignedInteger"),
              ("uint64", "Unsigned64"), ("int64", "Signed64"),
              ("float32", "FloatValue"), ("float64", "DoubleValue")]


def _frames(dtype: Any, n: int = 3, shape: tuple[int, int] = (5, 7)) -> np.ndarray:
    rng = np.random.default_rng(1)
    return (rng.uniform(-100, 100, size=(n,) + shape) * 3).astype(dtype)


def _header_values(header: bytes) -> dict[str, str]:
    lines = header.decode("ascii").splitlines()
    return {k.strip(): v.strip().rstrip(";").strip()
            for k, _, v in (line.partition("=") for line in lines) if _}


@pytest.mark.parametrize("dtype, data_type", DATA_TYPES)
def test_header_says_what_lima_says_and_is_padded_to_512_bytes(dtype: str,
                                                               data_type: str) -> None:
    frame = _frames(dtype, 1, (64, 80))[0]
    header = edf_header(4, frame)
    assert header.startswith(b"{\n") and header.endswith(b"}\n")
    assert len(header) % EDF_BLOCK == 0
    assert _header_values(header) == {
        "HeaderID": "EH:000004:000000:000000", "Image": "4", "ByteOrder": "LowByteFirst",
        "DataType": data_type, "Dim_1": "80", "Dim_2": "64", "Size": str(frame.nbytes)}


def test_header_of_a_type_edf_cannot_hold_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be saved in EDF"):
        edf_header(1, np.zeros((2, 2), dtype=np.complex64))


@pytest.mark.parametrize("dtype", [d for d, _ in DATA_TYPES])
def test_frames_appended_in_pieces_read_back_bit_exact(tmp_path: Any, dtype: str) -> None:
    path = str(tmp_path / "frames.edf")
    frames = _frames(dtype, 5)
    write_edf_frames(path, 0, frames[:2])
    write_edf_frames(path, 2, frames[2:])
    parsed = EdfFileIndex(path).update()
    assert [f.image for f in parsed] == [1, 2, 3, 4, 5]
    start = 0
    for frame, expected in zip(parsed, frames):
        assert (frame.offset - start) % EDF_BLOCK == 0 and frame.compression is None
        start = frame.end
        assert frame.shape == (5, 7) and frame.dtype == np.dtype(dtype).newbyteorder("<")
        data = read_edf_data(path, frame)
        assert data.tobytes() == np.ascontiguousarray(expected).astype(data.dtype).tobytes()
    assert parsed[-1].end == os.path.getsize(path)


def test_index_follows_a_growing_file_and_waits_for_a_truncated_frame(tmp_path: Any) -> None:
    path = str(tmp_path / "growing.edf")
    frames = _frames("uint16", 3)
    write_edf_frames(path, 0, frames[:1])
    index = EdfFileIndex(path)
    assert len(index.update()) == 1 and index.problem is None
    partial = edf_header(2, frames[1]) + frames[1].tobytes()[:10]
    with open(path, "ab") as file:
        file.write(partial)
    assert len(index.update()) == 1
    assert index.problem is not None and "truncated" in index.problem and path in index.problem
    with open(path, "ab") as file:
        file.write(frames[1].tobytes()[10:])
    assert len(index.update()) == 2 and index.problem is None
    np.testing.assert_array_equal(read_edf_data(path, index.frames[1]), frames[1])


def test_big_endian_frames_are_parsed_as_big_endian() -> None:
    frame = np.arange(6, dtype=">u2").reshape(2, 3)
    header = edf_header(1, frame).replace(b"LowByteFirst ", b"HighByteFirst")
    parsed = parse_edf_header(header + frame.tobytes())
    assert parsed.dtype == np.dtype(">u2") and parsed.offset == len(header)


@pytest.mark.parametrize("raw, problem", [
    (b"HeaderID = x ;\n}\n", "must begin with '{'"),
    (b"{\nImage = 1 ;\nDataType = UnsignedShort ;\n", "incomplete"),
    (b"{\nDataType = ComplexValue ;\nDim_1 = 2 ;\nDim_2 = 2 ;\n}\n", "unknown DataType"),
    (b"{\nDataType = UnsignedShort ;\nDim_1 = 2 ;\n}\n", "no Dim_2"),
    (b"{\nDataType = UnsignedShort ;\nDim_1 = 2 ;\nDim_2 = two ;\n}\n", "not an integer"),
    (b"{\nDataType = UnsignedShort ;\nDim_1 = 2 ;\nDim_2 = 2 ;\nSize = 9 ;\n}\n",
     "does not match"),
    (b"{\nDataType = UnsignedShort ;\nByteOrder = Middle ;\nDim_1 = 2 ;\nDim_2 = 2 ;\n}\n",
     "unknown ByteOrder"),
])
def test_bad_headers_are_refused_with_what_is_wrong(raw: bytes, problem: str) -> None:
    with pytest.raises(EdfFormatError, match=problem):
        parse_edf_header(raw, where="test header")


def test_compressed_frames_are_parsed_but_not_read(tmp_path: Any) -> None:
    frame = np.zeros((2, 2), dtype=np.uint16)
    header = edf_header(1, frame, {"Compression": "gzip"})
    path = str(tmp_path / "packed.edf")
    with open(path, "wb") as file:
        file.write(header + b"\0" * frame.nbytes)
    (parsed,) = EdfFileIndex(path).update()
    assert parsed.compression == "gzip"
    with pytest.raises(EdfFormatError, match="compressed"):
        read_edf_data(path, parsed)


def test_lima_writer_saves_each_frame_at_its_image_reference(tmp_path: Any) -> None:
    spec = LimaSpec("cam:image", directory=str(tmp_path / "cam"), prefix="cam_",
                    shape=(6, 4), suffix=".edf", frames_per_file=4, first_file_number=2,
                    file_format="edf")
    frames = np.arange(11 * 6 * 4, dtype=np.uint16).reshape(11, 6, 4)
    writer = LimaFileWriter(spec)
    writer.save(0, frames[:3])
    writer.save(3, frames[3:])
    assert writer.last_image_saved == 10
    assert sorted(os.listdir(spec.directory)) == ["cam_0002.edf", "cam_0003.edf",
                                                  "cam_0004.edf"]
    for number, frame in enumerate(frames):
        filename, path, index = spec.image_reference(number)
        assert path is None
        parsed = EdfFileIndex(filename).update()
        assert parsed[index].image == index + 1
        np.testing.assert_array_equal(read_edf_data(filename, parsed[index]), frame)


def test_unknown_lima_file_format_is_refused() -> None:
    with pytest.raises(ValueError, match="file_format 'tiff'"):
        LimaSpec("cam:image", directory="/tmp", prefix="cam_", shape=(2, 2),
                 file_format="tiff")


def test_simulator_command_line_picks_the_lima_file_format(capsys: Any) -> None:
    parser = build_parser()
    assert parser.parse_args([]).lima_format == "hdf5"
    assert parser.parse_args(["--lima-format", "edf"]).lima_format == "edf"
    with pytest.raises(SystemExit):
        parser.parse_args(["--lima-format", "tiff"])
    assert "--lima-format" in capsys.readouterr().err
