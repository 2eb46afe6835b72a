"""Per-scan chunk options: BLISS's writer_options, the session options and the
classic defaults, key by key; malformed keys named."""

from __future__ import annotations

from typing import Any

import pytest

from nexus_writer_service.errors import MalformedInfoError
from nexus_writer_service.io.chunking import CLASSIC, ChunkOptions, resolve
from nexus_writer_service.io.layout import chunk_rows
from nexus_writer_service.io.options import SaveOptions


def bliss(**chunk_options: Any) -> dict[str, Any]:
    return {"writer_options": {"chunk_options": chunk_options, "separate_scan_files": None}}


def test_a_scan_without_writer_options_gets_the_session_options_uncompressed_by_default():
    assert resolve({}, SaveOptions()) == ChunkOptions(1 << 20, 1, 0, "none")
    assert resolve({}, SaveOptions(compression="gzip", chunk_bytes=4096)) == ChunkOptions(
        4096, 1, 0, "gzip")


def test_a_bliss_scan_with_empty_chunk_options_gets_the_classic_defaults():
    assert resolve(bliss(), SaveOptions()) == CLASSIC
    assert CLASSIC == ChunkOptions(1 << 20, 4, 1 << 20, "gzip-byteshuffle")
    assert resolve({"writer_options": {"chunk_options": None}}, SaveOptions()) == CLASSIC
    assert resolve({"writer_options": {}}, SaveOptions()) == CLASSIC


def test_the_operators_session_option_beats_the_classic_default():
    options = SaveOptions(compression="lz4-bitshuffle", chunk_bytes=1 << 16)
    assert resolve(bliss(), options) == ChunkOptions(1 << 16, 4, 1 << 20, "lz4-bitshuffle")


def test_the_sessions_chunk_split_and_compression_limit_are_defaults_for_every_scan():
    options = SaveOptions(compression="gzip-byteshuffle", compression_limit_nbytes=0,
                          chunk_split=16, chunk_bytes=1 << 16)
    assert resolve({}, options) == ChunkOptions(1 << 16, 16, 0, "gzip-byteshuffle")
    assert resolve(bliss(), options) == ChunkOptions(1 << 16, 16, 0, "gzip-byteshuffle")
    given = bliss(chunk_split=2, compression_limit_nbytes=5000)
    assert resolve(given, options) == ChunkOptions(1 << 16, 2, 5000, "gzip-byteshuffle")
    # only the compression limit: a BLISS scan keeps the classic split
    assert resolve(bliss(), SaveOptions(compression_limit_nbytes=10)) == ChunkOptions(
        1 << 20, 4, 10, "gzip-byteshuffle")


def test_a_key_the_scan_gives_wins_and_null_keys_are_not_given():
    options = SaveOptions(compression="lz4-bitshuffle", chunk_bytes=1 << 16)
    given = bliss(chunk_nbytes=4096, chunk_split=None, compression_limit_nbytes=0,
                  compression_scheme="GZIP", unknown_key=3)
    assert resolve(given, options) == ChunkOptions(4096, 4, 0, "gzip")


def test_a_dataset_is_compressed_above_the_limit_only():
    chunking = ChunkOptions(1 << 20, 4, 1000, "gzip")
    assert chunking.scheme_for(1000) == "none"
    assert chunking.scheme_for(1001) == "gzip"


def test_chunk_split_bounds_the_rows_of_a_chunk():
    assert chunk_rows(8, 1 << 20, 100, split=4) == 25
    assert chunk_rows(8, 1 << 20, 2_000_000, split=4) == 1 << 16
    assert chunk_rows(8, 1 << 20, 10, split=4) == 3


@pytest.mark.parametrize("key, value", [
    ("compression_scheme", "zip"), ("compression_scheme", 3), ("chunk_nbytes", -1),
    ("chunk_nbytes", 0), ("chunk_nbytes", "1MB"), ("chunk_split", 0), ("chunk_split", 1.5),
    ("compression_limit_nbytes", -5), ("compression_limit_nbytes", True),
])
def test_a_malformed_key_is_refused_naming_it(key: str, value: Any) -> None:
    with pytest.raises(MalformedInfoError, match=f"writer_options/chunk_options/{key}"):
        resolve(bliss(**{key: value}), SaveOptions())


@pytest.mark.parametrize("info, key", [
    ({"writer_options": "gzip"}, "'writer_options'"),
    ({"writer_options": {"chunk_options": ["gzip"]}}, "'writer_options/chunk_options'"),
])
def test_malformed_writer_options_are_refused_naming_them(info: Any, key: str) -> None:
    with pytest.raises(MalformedInfoError, match=key):
        resolve(info, SaveOptions())
