"""Save options as the command line and Tango give them: parsing, checks, round trip."""

from __future__ import annotations

import dataclasses

import pytest

from nexus_writer_service.errors import ConfigurationError
from nexus_writer_service.io.options import COMPRESSIONS, SaveOptions, option_help


def test_defaults_are_valid_and_safe():
    options = SaveOptions()
    # not set: each scan's writer_options, BLISS's defaults or none (see io.chunking)
    assert options.compression == "" and options.chunk_bytes == 0
    assert options.short_names and not options.strict_names
    assert not options.keepshape and not options.disable_external_hdf5
    assert options.allowed_roots == ()
    assert options.file_mode == 0o664
    assert SaveOptions.from_mapping({}) == options


@pytest.mark.parametrize("given, scheme", [
    ("gzip", "gzip"), ("GZIP-Byteshuffle", "gzip-byteshuffle"),
    ("bitshuffle-lz4", "lz4-bitshuffle"), ("zstd", "zstd-bitshuffle"), ("none", "none"),
])
def test_compression_takes_bliss_scheme_names_and_earlier_names(given, scheme):
    assert given.lower() in COMPRESSIONS
    assert SaveOptions.from_mapping({"compression": given}).compression == scheme


@pytest.mark.parametrize("value", ["zip", "lz4"])
def test_unknown_compression_is_refused_naming_the_schemes(value):
    with pytest.raises(ConfigurationError, match="compression.*gzip-byteshuffle"):
        SaveOptions.from_mapping({"compression": value})


def test_every_option_has_help():
    names = {f.name for f in dataclasses.fields(SaveOptions)}
    assert set(option_help()) == names
    assert all(text for text in option_help().values())


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("True", True), ("yes", True), ("1", True), ("on", True),
    ("false", False), ("0", False), ("no", False), ("off", False), ("", False),
    (True, True), (False, False),
])
def test_bool_options_parse_command_line_words(text, expected):
    assert SaveOptions.from_mapping({"keepshape": text}).keepshape is expected
    assert SaveOptions.from_mapping({"short_names": text}).short_names is expected


def test_numbers_parse_from_strings():
    options = SaveOptions.from_mapping({
        "flush_period": "1.5", "chunk_bytes": "4096", "required_disk_space": "0",
        "recommended_disk_space": " 20.5 ", "purge_delay": "10"})
    assert options.flush_period == 1.5
    assert options.chunk_bytes == 4096
    assert options.required_disk_space == 0.0
    assert options.recommended_disk_space == 20.5
    assert options.purge_delay == 10.0


@pytest.mark.parametrize("text", ["0o640", "640"])
def test_file_mode_string_is_octal(text):
    assert SaveOptions.from_mapping({"file_mode": text}).file_mode == 0o640


def test_file_mode_int_is_taken_as_is():
    assert SaveOptions.from_mapping({"file_mode": 0o600}).file_mode == 0o600


@pytest.mark.parametrize("value, expected", [
    ("/data/a,/data/b", ("/data/a", "/data/b")),
    (" /data/a , ,/data/b\n/tmp ", ("/data/a", "/data/b", "/tmp")),
    ("", ()),
    (["/data/a", " "], ("/data/a",)),
])
def test_allowed_roots_become_a_tuple(value, expected):
    assert SaveOptions.from_mapping({"allowed_roots": value}).allowed_roots == expected


def test_allowed_roots_given_directly_are_normalised():
    assert SaveOptions(allowed_roots="a,b").allowed_roots == ("a", "b")  # type: ignore[arg-type]


def test_option_names_accept_dashes_and_case():
    options = SaveOptions.from_mapping({"Multivalue-Positioners": "yes", "COMPRESSION": "GZIP"})
    assert options.multivalue_positioners is True
    assert options.compression == "gzip"


def test_unknown_option_is_named_with_the_known_ones():
    with pytest.raises(ConfigurationError) as info:
        SaveOptions.from_mapping({"keep_shape": "1"})
    message = str(info.value)
    assert "'keep_shape'" in message
    for name in ("keepshape", "chunk_bytes", "file_mode", "allowed_roots"):
        assert name in message


@pytest.mark.parametrize("name, value", [
    ("compression", "zip"),
    ("chunk_bytes", "1"),
    ("chunk_bytes", "1.5"),
    ("chunk_bytes", str(1 << 31)),
    ("chunk_split", "-1"),
    ("chunk_split", str((1 << 20) + 1)),
    ("chunk_split", "four"),
    ("compression_limit_nbytes", "-2"),
    ("compression_limit_nbytes", "1e6"),
    ("compression_limit_nbytes", str((1 << 62) + 1)),
    ("flush_period", "0"),
    ("flush_period", "nan"),
    ("lima_refresh_period", "-1"),
    ("disk_check_period", "3600"),
    ("required_disk_space", "-1"),
    ("recommended_disk_space", "nan"),
    ("purge_delay", "-0.5"),
    ("lock_retry_time", "soon"),
    ("keepshape", "maybe"),
    ("strict_names", "2"),
    ("file_mode", "999"),
    ("file_mode", "0o1000"),
])
def test_bad_value_is_refused_naming_the_option(name, value):
    with pytest.raises(ConfigurationError, match=name):
        SaveOptions.from_mapping({name: value})


@pytest.mark.parametrize("name, value, words", [
    ("chunk_split", -1, ["0 (as each scan says)", "between 1 and 2**20", "got -1"]),
    ("compression_limit_nbytes", -2, ["-1 (as each scan says)", "between 0 and 2**62",
                                      "got -2"]),
])
def test_a_bad_chunk_option_is_refused_with_the_values_it_takes(name, value, words):
    with pytest.raises(ConfigurationError) as info:
        SaveOptions(**{name: value})
    assert f"save option {name} " in str(info.value)
    assert all(word in str(info.value) for word in words), str(info.value)


def test_chunk_nbytes_is_blisss_name_of_chunk_bytes():
    assert SaveOptions.from_mapping({"chunk_nbytes": "4096"}).chunk_bytes == 4096
    assert SaveOptions.from_mapping({"chunk-nbytes": 4096}) == SaveOptions(chunk_bytes=4096)
    with pytest.raises(ConfigurationError, match="chunk_bytes is given twice.*give it once"):
        SaveOptions.from_mapping({"chunk_bytes": "4096", "chunk_nbytes": "4096"})


def test_the_chunk_options_are_not_set_by_default():
    options = SaveOptions()
    assert (options.chunk_bytes, options.chunk_split, options.compression,
            options.compression_limit_nbytes) == (0, 0, "", -1)


def test_bad_value_is_a_value_error_too():
    with pytest.raises(ValueError):
        SaveOptions.from_mapping({"compression": "zip"})


def test_bad_value_given_directly_is_refused():
    with pytest.raises(ConfigurationError, match="chunk_bytes"):
        SaveOptions(chunk_bytes=1)


def test_options_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SaveOptions().keepshape = True  # type: ignore[misc]


@pytest.mark.parametrize("options", [
    SaveOptions(),
    SaveOptions(keepshape=True, multivalue_positioners=True, disable_external_hdf5=True,
                short_names=False, strict_names=True, allowed_roots=("/data", "/tmp"),
                required_disk_space=0.0, recommended_disk_space=5.5, chunk_bytes=64,
                compression="bitshuffle-lz4", flush_period=2.5, lima_refresh_period=0.5,
                purge_delay=0.0, disk_check_period=60.0, file_mode=0o640,
                lock_retry_time=0.0),
])
def test_as_dict_round_trips_through_from_mapping(options):
    values = options.as_dict()
    assert values["allowed_roots"] == list(options.allowed_roots)
    assert SaveOptions.from_mapping(values) == options


def test_as_dict_as_strings_round_trips_through_from_mapping():
    options = SaveOptions(keepshape=True, allowed_roots=("/data", "/tmp"), flush_period=0.25,
                          file_mode=0o600)
    values = {name: ",".join(value) if isinstance(value, list)
              else format(value, "o") if name == "file_mode" else str(value)
              for name, value in options.as_dict().items()}
    assert SaveOptions.from_mapping(values) == options


def test_every_option_is_on_the_command_line():
    from nexus_writer_service.cli.session_writer import build_parser, save_options_from_args

    fields = {f.name for f in dataclasses.fields(SaveOptions)}
    args = build_parser().parse_args(["demo"])
    names = set(SaveOptions().as_dict())
    assert fields == names
    given = save_options_from_args(args)
    assert given == SaveOptions()
    flags = {a.dest for a in build_parser()._actions}
    assert fields <= flags, f"options missing on the command line: {sorted(fields - flags)}"
    args = build_parser().parse_args(["demo", "--stack-mcas", "--copy-non-external",
                                      "--enable-external-nonhdf5"])
    chosen = save_options_from_args(args)
    assert chosen.stack_mcas and chosen.copy_non_external and chosen.enable_external_nonhdf5
    args = build_parser().parse_args(["demo", "--chunk-nbytes", "4096", "--chunk-split", "2",
                                      "--compression-limit-nbytes", "0"])
    chosen = save_options_from_args(args)
    assert (chosen.chunk_bytes, chosen.chunk_split, chosen.compression_limit_nbytes) == (
        4096, 2, 0)


@pytest.mark.parametrize("argv, words", [
    (["--chunk-split", "-2"], ["chunk_split", "between 1 and 2**20", "got -2"]),
    (["--compression-limit-nbytes", "-5"], ["compression_limit_nbytes", "got -5"]),
    (["--chunk-nbytes", "8"], ["chunk_bytes", "between 64 and"]),
])
def test_a_bad_chunk_option_on_the_command_line_exits_2_naming_it(capsys, argv, words):
    from nexus_writer_service.cli.session_writer import main

    with pytest.raises(SystemExit) as exited:
        main(["demo", "--redis-url", "redis://127.0.0.1:1/0", *argv])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("NexusSessionWriter: error: save option"), err
    assert all(word in err for word in words), err


def test_every_option_is_a_device_property():
    from tango_devices.nexus_writer import SAVE_OPTION_PROPERTIES, UNSUPPORTED_PROPERTIES

    fields = {f.name for f in dataclasses.fields(SaveOptions)}
    assert set(SAVE_OPTION_PROPERTIES) == fields
    assert not set(UNSUPPORTED_PROPERTIES) & fields
