"""``RegisterNexusWriter``: devices and properties in the real (sqlite) Tango database.

``main([...])`` runs in-process with ``TANGO_HOST`` set by monkeypatch; one test
runs the module as a child process, as the console script does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import tango

from nexus_writer_service.embedded import free_port
from tango_devices import register


def _properties(db: tango.Database, device: str, *names: str) -> dict[str, list[str]]:
    found = db.get_device_property(device, list(names))
    return {name: list(found[name]) for name in names}


def test_main_creates_the_device_and_sets_the_given_properties(
        tango_db, redis_url, names, capsys):
    session, instance = names("reg"), names("inst")
    code = register.main([session, "--instance", instance, "--redis-url", redis_url,
                          "--strict-names", "--compression", "gzip", "--file-mode", "640",
                          "--allowed-roots", "/data/a,/data/b"])
    out = capsys.readouterr().out
    device = f"id00/bliss_nxwriter/{session}"
    assert code == 0
    assert f"registered {device} (class NexusWriter, server NexusWriterService/{instance})" in out
    assert f"start it with: NexusWriterService {instance}" in out
    info = tango_db.get_device_info(device)
    assert (info.class_name, info.ds_full_name) == ("NexusWriter",
                                                    f"NexusWriterService/{instance}")
    assert _properties(tango_db, device, "session", "redis_url", "strict_names",
                       "compression", "file_mode", "allowed_roots", "keepshape") == {
        "session": [session], "redis_url": [redis_url], "strict_names": ["true"],
        "compression": ["gzip"], "file_mode": ["640"], "allowed_roots": ["/data/a", "/data/b"],
        "keepshape": []}


def test_the_chunk_options_of_the_session_are_set_under_their_option_names(
        tango_db, redis_url, names, capsys):
    """BLISS's chunk_options keys as session defaults; ``--chunk-nbytes`` (BLISS's
    name) sets the chunk_bytes property."""
    session = names("chunks")
    device = f"id00/bliss_nxwriter/{session}"
    assert register.main([session, "--redis-url", redis_url, "--compression",
                          "gzip-byteshuffle", "--compression-limit-nbytes", "0",
                          "--chunk-split", "8", "--chunk-nbytes", "65536"]) == 0
    assert _properties(tango_db, device, "compression", "compression_limit_nbytes",
                       "chunk_split", "chunk_bytes", "chunk_nbytes") == {
        "compression": ["gzip-byteshuffle"], "compression_limit_nbytes": ["0"],
        "chunk_split": ["8"], "chunk_bytes": ["65536"], "chunk_nbytes": []}


def test_update_keeps_properties_not_given_and_overwrites_the_given_ones(
        tango_db, redis_url, names, capsys):
    session = names("upd")
    device = f"id00/bliss_nxwriter/{session}"
    assert register.main([session, "--redis-url", redis_url, "--keepshape",
                          "--compression", "gzip", "--chunk-bytes", "4096"]) == 0
    assert register.main([session, "--compression", "none", "--purge-delay", "10"]) == 0
    assert f"updated {device}" in capsys.readouterr().out
    assert _properties(tango_db, device, "session", "redis_url", "keepshape", "compression",
                       "chunk_bytes", "purge_delay") == {
        "session": [session], "redis_url": [redis_url], "keepshape": ["true"],
        "compression": ["none"], "chunk_bytes": ["4096"], "purge_delay": ["10.0"]}
    assert tango_db.get_device_info(device).ds_full_name == f"NexusWriterService/{session}"


def test_data_source_and_blissdata_idle_timeout_are_set_as_properties(
        tango_db, redis_url, names, capsys):
    session = names("bd")
    device = f"id00/bliss_nxwriter/{session}"
    assert register.main([session, "--data-source", "blissdata",
                          "--blissdata-idle-timeout", "90"]) == 0
    assert _properties(tango_db, device, "data_source", "blissdata_idle_timeout") == {
        "data_source": ["blissdata"], "blissdata_idle_timeout": ["90.0"]}
    assert register.main([session, "--compression", "gzip"]) == 0  # left as they are
    assert _properties(tango_db, device, "data_source", "blissdata_idle_timeout") == {
        "data_source": ["blissdata"], "blissdata_idle_timeout": ["90.0"]}
    capsys.readouterr()
    for wrong in ("0", "-5", "inf", "soon"):
        with pytest.raises(SystemExit) as exited:
            register.main([session, "--blissdata-idle-timeout", wrong])
        assert exited.value.code == 2
        err = capsys.readouterr().err
        assert "RegisterNexusWriter: error:" in err and "idle" in err, err
    assert _properties(tango_db, device, "blissdata_idle_timeout") == {
        "blissdata_idle_timeout": ["90.0"]}


def test_device_of_another_session_is_moved_only_with_force(tango_db, names, capsys):
    first, second, member = names("first"), names("second"), names("member")
    device = f"id00/bliss_nxwriter/{member}"
    assert register.main([first, "--member", member]) == 0
    capsys.readouterr()

    assert register.main([second, "--member", member]) == 1
    err = capsys.readouterr().err
    assert f"{device} already writes session {first!r}" in err and "--force" in err
    assert _properties(tango_db, device, "session") == {"session": [first]}

    assert register.main([second, "--member", member, "--force"]) == 0
    assert f"(was {first!r})" in capsys.readouterr().out
    assert _properties(tango_db, device, "session") == {"session": [second]}


def test_unreachable_database_exits_1_with_a_message(monkeypatch, names, capsys):
    monkeypatch.setenv("TANGO_HOST", f"127.0.0.1:{free_port()}")
    started = time.monotonic()
    assert register.main([names("nodb")]) == 1
    assert time.monotonic() - started < 20
    err = capsys.readouterr().err
    assert "cannot reach the Tango database" in err and "TANGO_HOST" in err


@pytest.mark.parametrize("option, words", [
    (["--compression", "zip"], ["compression"]),
    (["--chunk-bytes", "1"], ["chunk_bytes", "between 64"]),
    (["--chunk-split", "-1"], ["chunk_split", "between 1 and", "got -1"]),
    (["--compression-limit-nbytes", "-3"],
     ["compression_limit_nbytes", "-1 (as each scan", "got -3"]),
    (["--file-mode", "999"], ["file_mode"]),
    (["--purge-delay", "soon"], ["purge"]),
], ids=["compression", "chunk-bytes", "chunk-split", "compression-limit", "file-mode",
        "purge-delay"])
def test_invalid_save_option_exits_2_and_registers_nothing(tango_db, names, capsys, option,
                                                           words):
    session = names("bad")
    with pytest.raises(SystemExit) as exited:
        register.main([session, *option])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "RegisterNexusWriter: error:" in err
    assert all(word in err for word in words), err
    with pytest.raises(tango.DevFailed):
        tango_db.get_device_info(f"id00/bliss_nxwriter/{session}")


@pytest.mark.parametrize("session", ["two words", "a/b", ""])
def test_invalid_session_name_exits_2_and_registers_nothing(tango_host, capsys, session):
    with pytest.raises(SystemExit) as exited:
        register.main([session])
    assert exited.value.code == 2
    assert "invalid session name" in capsys.readouterr().err


def test_console_entry_point_registers_in_a_child_process(tango_db, tango_host, names):
    session, instance = names("cli"), names("inst")
    result = subprocess.run(
        [sys.executable, "-m", "tango_devices.register", session, "--instance", instance,
         "--domain", "id99", "--family", "writers", "--member", "w" + session,
         "--required-disk-space", "50"],
        env=dict(os.environ, TANGO_HOST=tango_host), stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result
    device = f"id99/writers/w{session}"
    assert f"registered {device}" in result.stdout
    assert tango_db.get_device_info(device).ds_full_name == f"NexusWriterService/{instance}"
    assert _properties(tango_db, device, "session", "required_disk_space") == {
        "session": [session], "required_disk_space": ["50.0"]}


def test_registering_again_while_the_server_runs_keeps_the_device_exported(
        writer, proxy, tango_db, capsys):
    """Only the properties change: clients still reach the running device, and the new
    properties apply at its Init."""
    assert proxy.state() == tango.DevState.ON
    assert register.main([writer.session, "--instance", writer.instance,
                          "--member", writer.session, "--purge-delay", "42"]) == 0
    out = capsys.readouterr().out
    assert f"updated {writer.device}" in out and "run its Init command" in out, out
    info = tango_db.get_device_info(writer.device)
    assert info.exported == 1, "the running device was unexported"
    fresh = tango.DeviceProxy(writer.device)
    assert fresh.state() == tango.DevState.ON
    assert _properties(tango_db, writer.device, "purge_delay") == {"purge_delay": ["42.0"]}
    fresh.Init()
    assert fresh.state() == tango.DevState.ON
    assert '"purge_delay": 42.0' in fresh.save_options
