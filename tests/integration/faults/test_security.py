"""Security of the writer and of ``channels`` against whoever can write to Redis or
choose a file name, and against leaking the Redis password.

* nothing read from Redis is unpickled: a pickle "bomb" (its unpickling would create
  a marker file) put where the writer or a channels reader reads is refused with a
  clear error, and the marker never appears;
* scan files and lima files resolve (symbolic links included) inside the allowed
  roots; files are created with the configured mode; files that are not ours keep
  their content;
* the password of the Redis URL appears in no log, message or device attribute.

Real Redis servers (the shared one, and one with an ACL user for the password
tests), real files, the real ``NexusSessionWriter`` command and the real Tango device
in a child process.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import os
import pickle
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import h5py
import numpy as np
import pytest
import redis
import tango
from tango import DevState

import channels
from channels.errors import DecodeError
from channels.sync import client as sync_client
from nexus_writer_service.data import EndReason, Publisher
from nexus_writer_service.data.events import (
    NodeType,
    encode_data,
    encode_end,
    encode_node,
    encode_session_new,
)
from nexus_writer_service.data.keys import SessionKeys
from nexus_writer_service.embedded import EmbeddedRedis
from nexus_writer_service.io import SaveOptions
from nexus_writer_service.subscribers import ScanRecord, SubscriberState
from tests.integration.faults.conftest import assert_fault, run_session_scans
from tests.integration.tango.device_support import dev_error, wait_for, writer_device
from tests.writer_support import wait_until

SESSION = "security"
TIME = "timer:elapsed_time"
DIODE = "diode:diode1"
OPTIONS = dict(flush_period=0.05, required_disk_space=0, recommended_disk_space=0)
PROJECT = Path(__file__).resolve().parents[3]
PASSWORD = "S3cret-pw-7f1c"
WRONG_PASSWORD = "Wr0ng-pw-9d2e"
USER = "nxwriter"


def options(**kwargs: Any) -> SaveOptions:
    return SaveOptions(**dict(OPTIONS, **kwargs))


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def make_info(filename: Any, npoints: int = 3) -> dict[str, Any]:
    return {"title": "security", "npoints": npoints, "filename": str(filename),
            "acquisition_chain": {"timer": {"master": {"scalars": [TIME]},
                                            "scalars": [DIODE]}}}


def publish(publisher: Publisher, filename: Any, number: int = 1,
            extra: Callable[[Any], None] | None = None) -> Any:
    scan = publisher.create_scan(make_info(filename), name="loopscan", number=number)
    scan.add_channel(TIME, "float64", subscan="timer")
    scan.add_channel(DIODE, "float64", subscan="timer")
    if extra is not None:
        extra(scan)
    scan.prepare()
    scan.send({TIME: [0.0, 0.1, 0.2], DIODE: [1.0, 2.0, 3.0]})
    scan.end()
    return scan


def run_scans(redis_url: str, save: Any, *publishers: Callable[[Publisher], Any]
              ) -> list[ScanRecord]:
    """A session writer writes what each of ``publishers`` publishes, in turn."""
    return run_session_scans(redis_url, SESSION, save, *publishers)


def assert_written(record: ScanRecord, filename: Path, entry: str = "1.1") -> None:
    assert record.state is SubscriberState.OFF, record.as_dict()
    with h5py.File(filename, "r", locking=False) as h5:
        assert text(h5[f"{entry}/writer/status"][()]) == "SUCCEEDED"
        np.testing.assert_array_equal(h5[f"{entry}/instrument/diode1/data"][()],
                                      [1.0, 2.0, 3.0])


# -- no code execution from Redis content ---------------------------------------------


class Bomb:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def bomb(tmp_path: Path) -> Iterator[tuple[bytes, Path]]:
    """A pickle payload that would create the returned marker file; at the end, proof
    that the payload is armed: the trusted codec does run it."""
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Bomb(marker))
    yield payload, marker
    assert not marker.exists(), "something unpickled data read from Redis"
    channels.Codec(allow_pickle=True).decode(b"p" + payload)
    assert marker.exists(), "the test's pickle bomb is not armed"


def test_pickle_bomb_in_scan_info_or_node_info_faults_and_never_runs(
        redis_url: str, redis_client: redis.Redis, tmp_path: Path,
        bomb: tuple[bytes, Path]) -> None:
    payload, marker = bomb
    session_keys = SessionKeys(SESSION)

    def bomb_in_node_info(publisher: Publisher) -> None:
        def extra(scan: Any) -> None:
            fields = encode_node("cam:x", NodeType.CHANNEL, 9, {})
            fields[b"i"] = payload
            redis_client.xadd(scan.keys.events, fields)
        publish(publisher, tmp_path / "node.h5", 1, extra)

    def bomb_as_scan_info(publisher: Publisher) -> None:
        keys = session_keys.scan(int(redis_client.incr(session_keys.counter)))
        redis_client.hset(keys.info, mapping={"name": "bomb", "number": 2, "session": SESSION,
                                              "scan_info": payload, "retention": 60})
        redis_client.xadd(keys.events, encode_node("timer", NodeType.SUBSCAN, 0, {}))
        redis_client.xadd(keys.events, encode_end(EndReason.SUCCESS))
        redis_client.xadd(session_keys.stream, encode_session_new(keys.base, "bomb", 2))

    first, second, third = run_scans(redis_url, options(), bomb_in_node_info,
                                     bomb_as_scan_info,
                                     lambda pub: publish(pub, tmp_path / "ok.h5", 3))
    assert_fault(first, first.key, "node info is not valid JSON")
    assert_fault(second, f"scan_info of {second.key} is not valid JSON")
    assert_written(third, tmp_path / "ok.h5", "3.1")
    assert not marker.exists()


@pytest.mark.parametrize("dtype", ["float64", "uint8"])
def test_pickle_bomb_sent_as_channel_data_is_refused_or_kept_as_inert_numbers(
        redis_url: str, redis_client: redis.Redis, tmp_path: Path, dtype: str,
        bomb: tuple[bytes, Path]) -> None:
    payload, marker = bomb
    payload = payload + b"\0" * (-len(payload) % 8 + (1 if dtype == "float64" else 0))
    filename = tmp_path / "data.h5"

    def publish_bomb(publisher: Publisher) -> None:
        scan = publisher.create_scan(make_info(filename), name="loopscan", number=1)
        scan.add_channel("cam:raw", dtype, subscan="timer")
        scan.prepare()
        index = 1
        redis_client.xadd(scan.keys.events, encode_data([(index, 0, payload, None)]))
        scan.end()

    record = run_scans(redis_url, options(), publish_bomb)[0]
    if dtype == "float64":
        assert_fault(record, "'cam:raw'", f"{len(payload)} bytes",
                     "not a whole number of 8-byte points")
    else:
        assert record.state is SubscriberState.OFF, record.as_dict()
        with h5py.File(filename, "r", locking=False) as h5:
            assert h5["1.1/instrument/raw/data"][()].tobytes() == payload
    assert not marker.exists()


def test_pickle_bomb_in_a_channel_value_or_event_is_refused_unless_pickle_is_allowed(
        redis_url: str, redis_client: redis.Redis, bomb: tuple[bytes, Path],
        caplog: pytest.LogCaptureFixture) -> None:
    payload, marker = bomb
    for name, data in (("tagged", b"p" + payload), ("bare", payload)):
        value = {"v": data, "n": 1, "w": "x", "t": 0}
        redis_client.hset(f"channels:value:{name}", mapping=value)
        with pytest.raises(DecodeError) as info:
            sync_client.read(name, redis_url=redis_url)
        assert f"channel {name!r}" in str(info.value)
        expected = "pickle codec, which is refused" if name == "tagged" else \
            "unknown payload format byte"
        assert expected in str(info.value), info.value
        channel = channels.Channel(name, redis_url=redis_url)
        try:
            with pytest.raises(DecodeError, match=expected):
                channel.value
        finally:
            channel.close()

    received: list[Any] = []

    def receive(block: list[Any]) -> None:  # held here: receivers are weak references
        received.extend(block)

    caplog.set_level(logging.ERROR, logger="channels")
    with channels.EventChannel("news", redis_url=redis_url) as events:
        events.register_callback(receive)
        redis_client.xadd("channels:events:news", {b"d": b"p" + payload})
        events.post({"safe": 1})
        wait_for(lambda: received, 10, "the safe event")
    assert received == [{"safe": 1}]
    assert any("dropping undecodable event" in r.getMessage() for r in caplog.records)
    assert not marker.exists()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found


def test_only_the_opt_in_channels_codec_can_unpickle() -> None:
    unsafe = {"pickle", "marshal", "shelve", "dill", "cloudpickle", "joblib"}
    users = {}
    for package in ("nexus_writer_service", "channels", "tango_devices"):
        for path in sorted((PROJECT / package).rglob("*.py")):
            used = _imports(path) & unsafe
            if used:
                users[str(path.relative_to(PROJECT))] = used
            source = path.read_text()
            assert "allow_pickle=True" not in source or path.name == "codec.py", path
    assert users == {"channels/codec.py": {"pickle"}}


# -- paths ----------------------------------------------------------------------------


def _dotdot(root: Path, outside: Path) -> Path:
    return root / "sample" / ".." / ".." / outside.name / "scan.h5"


def _symlinked_file(root: Path, outside: Path) -> Path:
    target = outside / "real.h5"
    target.write_bytes(b"precious data of someone else\n" * 10)
    (root / "scan.h5").symlink_to(target)
    return root / "scan.h5"


def _dangling_symlink(root: Path, outside: Path) -> Path:
    (root / "scan.h5").symlink_to(outside / "missing.h5")
    return root / "scan.h5"


@pytest.mark.parametrize("make_path", [_dotdot, _symlinked_file, _dangling_symlink],
                         ids=["dotdot", "symlinked-file", "dangling-symlink"])
def test_scan_file_escaping_the_allowed_roots_faults_and_nothing_outside_changes(
        redis_url: str, tmp_path: Path, make_path: Callable[[Path, Path], Path]) -> None:
    root, outside = tmp_path / "data", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    filename = make_path(root, outside)
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    inside = root / "ok" / "scan.h5"
    bad, good = run_scans(redis_url, options(allowed_roots=(str(root),)),
                          lambda pub: publish(pub, filename, 1),
                          lambda pub: publish(pub, inside, 2))
    assert_fault(bad, str(filename), "resolves to", str(outside), "outside the allowed roots",
                 "allowed_roots")
    assert bad.writer.urls == []
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before
    assert_written(good, inside, "2.1")


def test_dotdot_that_stays_inside_the_root_writes_the_resolved_file(
        redis_url: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    filename = root / "a" / ".." / "b" / "scan.h5"
    record = run_scans(redis_url, options(allowed_roots=(str(root),)),
                       lambda pub: publish(pub, filename))[0]
    assert record.writer.filename == str(root / "b" / "scan.h5")
    assert_written(record, root / "b" / "scan.h5")
    assert not (root / "a").exists()


def _lima_outside(root: Path, outside: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    return {"directory": str(outside), "prefix": "cam_"}, (
        "lima 'cam:image'", "saved file", str(outside), "outside the allowed roots")


def _lima_symlink(root: Path, outside: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    (root / "cam").symlink_to(outside, target_is_directory=True)
    return {"directory": str(root / "cam"), "prefix": "cam_"}, (
        "lima 'cam:image'", "resolves to", str(outside), "outside the allowed roots")


def _lima_dotdot(root: Path, outside: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    return {"directory": str(root / ".." / outside.name), "prefix": "cam_"}, (
        "lima 'cam:image'", "resolves to", "outside the allowed roots")


def _lima_prefix(root: Path, outside: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    return {"directory": str(root), "prefix": f"../{outside.name}/cam_"}, (
        "lima 'cam:image'", "prefix", "path separator")


def _lima_relative(root: Path, outside: Path) -> tuple[dict[str, Any], tuple[str, ...]]:
    return {"directory": "relative/cam", "prefix": "cam_"}, (
        "lima 'cam:image'", "must be an absolute path")


@pytest.mark.parametrize("make_lima", [_lima_outside, _lima_symlink, _lima_dotdot,
                                       _lima_prefix, _lima_relative],
                         ids=["outside", "symlinked-dir", "dotdot", "prefix", "relative"])
def test_lima_files_outside_the_allowed_roots_fault_the_scan(
        redis_url: str, tmp_path: Path, make_lima: Callable[..., Any]) -> None:
    root, outside = tmp_path / "data", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    lima, words = make_lima(root, outside)
    filename = root / "scan.h5"
    inside = root / "ok" / "scan.h5"

    def add_lima(scan: Any) -> None:
        scan.add_lima("cam:image", shape=(4, 4), subscan="timer", **lima)

    bad, good = run_scans(redis_url, options(allowed_roots=(str(root),)),
                          lambda pub: publish(pub, filename, 1, add_lima),
                          lambda pub: publish(pub, inside, 2, add_lima_inside(root)))
    assert_fault(bad, *words)
    if filename.exists():
        with h5py.File(filename, "r", locking=False) as h5:
            assert text(h5["1.1/writer/status"][()]) == "FAILED"
            assert "lima" not in h5["1.1/instrument"]
    assert os.listdir(outside) == []
    assert_written(good, inside, "2.1")


def add_lima_inside(root: Path) -> Callable[[Any], None]:
    def add(scan: Any) -> None:
        scan.add_lima("cam:image", directory=str(root / "cam_ok"), prefix="cam_",
                      shape=(4, 4), subscan="timer")
    return add


# -- file permissions and files that are not ours -------------------------------------


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


@pytest.mark.parametrize("file_mode, mask", [(0o640, 0o002), (0o664, 0o077), (0o600, 0)],
                         ids=["640-umask-002", "664-umask-077", "600-umask-000"])
def test_new_scan_files_get_exactly_the_configured_mode(
        redis_url: str, tmp_path: Path, file_mode: int, mask: int) -> None:
    new, existing = tmp_path / "new.h5", tmp_path / "existing.h5"
    with h5py.File(existing, "w"):
        pass
    os.chmod(existing, 0o606)
    with umask(mask):
        records = run_scans(redis_url, options(file_mode=file_mode),
                            lambda pub: publish(pub, new, 1),
                            lambda pub: publish(pub, existing, 2))
    assert_written(records[0], new)
    assert_written(records[1], existing, "2.1")
    assert stat.S_IMODE(new.stat().st_mode) == file_mode
    assert stat.S_IMODE(existing.stat().st_mode) == 0o606, "an existing file keeps its mode"


def test_existing_hdf5_file_keeps_everything_that_is_not_ours(
        redis_url: str, tmp_path: Path) -> None:
    filename = tmp_path / "shared.h5"
    foreign = np.arange(1000.0)
    with h5py.File(filename, "w") as h5:
        h5["other/program/data"] = foreign
        h5["other"].attrs["owner"] = "someone else"
        h5.attrs["default"] = "other"
    record = run_scans(redis_url, options(), lambda pub: publish(pub, filename))[0]
    assert_written(record, filename)
    with h5py.File(filename, "r") as h5:
        assert sorted(h5) == ["1.1", "other"]
        np.testing.assert_array_equal(h5["other/program/data"][()], foreign)
        assert text(h5["other"].attrs["owner"]) == "someone else"
        assert text(h5.attrs["default"]) == "other"


def test_entry_of_the_same_name_written_by_another_program_is_refused_untouched(
        redis_url: str, tmp_path: Path) -> None:
    filename = tmp_path / "scan.h5"
    with h5py.File(filename, "w") as h5:
        h5["1.1/measurement/diode"] = np.arange(5.0)  # no scan_key: not ours
    before = filename.read_bytes()
    record = run_scans(redis_url, options(), lambda pub: publish(pub, filename))[0]
    assert_fault(record, "'1.1'", "another program", record.key, "left untouched")
    assert filename.read_bytes() == before


def test_lock_holder_named_in_a_fault_without_its_password(
        redis_url: str, tmp_path: Path) -> None:
    filename = tmp_path / "locked.h5"
    with h5py.File(filename, "w"):
        pass
    code = ("import h5py, sys; f = h5py.File(sys.argv[1], 'r'); print('ok', flush=True); "
            "sys.stdin.read()")
    secret_url = f"redis://{USER}:{PASSWORD}@127.0.0.1:1/0"
    holder = subprocess.Popen([sys.executable, "-c", code, str(filename), secret_url],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"ok"
        record = run_scans(redis_url, options(lock_retry_time=0.3),
                           lambda pub: publish(pub, filename))[0]
    finally:
        holder.terminate()
        holder.communicate(timeout=10)
    reason = assert_fault(record, f"pid {holder.pid}", f"redis://{USER}:***@127.0.0.1:1/0")
    assert PASSWORD not in reason


# -- no secret in logs, messages or device attributes ---------------------------------


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis whose only user is ``USER`` with ``PASSWORD``; its base URL, no credentials."""
    server = EmbeddedRedis(workdir=tmp_path_factory.mktemp("acl-redis"))
    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        try:
            client.execute_command("ACL", "SETUSER", USER, "on", f">{PASSWORD}", "~*", "&*",
                                   "+@all")
            client.execute_command("ACL", "SETUSER", "default", "off")
        finally:
            client.close()
        yield server.url
    finally:
        server.cleanup()


def secret_url(base: str, password: str = PASSWORD, db: int = 0) -> str:
    return base.replace("redis://", f"redis://{USER}:{password}@") + f"/{db}"


def writer_command(url: str, root: Path, log: Path, session: str = SESSION) -> list[str]:
    return [str(Path(sys.executable).with_name("NexusSessionWriter")), session,
            "--redis-url", url, "--log=debug", f"--logfile={log}",
            f"--allowed-roots={root}", "--required-disk-space=0",
            "--recommended-disk-space=0", "--flush-period=0.05"]


def run_output(process: subprocess.Popen[bytes], out: Path, err: Path) -> str:
    return out.read_text(errors="replace") + err.read_text(errors="replace")


@pytest.mark.slow
def test_session_writer_command_logs_no_password_and_writes_scans(
        acl_redis: str, tmp_path: Path) -> None:
    url = secret_url(acl_redis, db=1)
    root = tmp_path / "data"
    log, out, err = tmp_path / "writer.log", tmp_path / "out.txt", tmp_path / "err.txt"
    filename = root / "scan.h5"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(writer_command(url, root, log), stdout=stdout,
                                   stderr=stderr)
    try:
        wait_until(lambda: log.exists() and "writing session" in log.read_text()
                   or process.poll() is not None, 60, "the writer listening")
        assert process.poll() is None, run_output(process, out, err)
        with Publisher(SESSION, url, lease=2.0, retention=60) as publisher:
            publish(publisher, filename)
        wait_until(lambda: filename.exists() and "SUCCEEDED" in _status(filename), 60,
                   "the scan written")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, run_output(process, out, err)
    logged = log.read_text() + run_output(process, out, err)
    assert "writing scan 1_loopscan" in logged and "ended (SUCCESS)" in logged, logged
    assert "the password given with --redis-url can be read by every user" in logged, logged
    assert "--redis-url-file" in logged
    assert PASSWORD not in logged
    with h5py.File(filename, "r") as h5:
        np.testing.assert_array_equal(h5["1.1/instrument/diode1/data"][()], [1.0, 2.0, 3.0])
        dump: list[str] = []
        h5.visititems(lambda name, obj: dump.append(
            f"{name} {dict(obj.attrs)} {obj[()] if isinstance(obj, h5py.Dataset) else ''}"))
        dump.append(str(dict(h5.attrs)))
    assert PASSWORD not in "\n".join(dump)


def url_file_command(url_file: Path, root: Path, log: Path) -> list[str]:
    command = writer_command("unused", root, log)
    at = command.index("--redis-url")
    command[at:at + 2] = ["--redis-url-file", str(url_file)]
    return command


@pytest.mark.slow
def test_session_writer_command_with_a_url_file_keeps_the_password_out_of_sight(
        acl_redis: str, tmp_path: Path) -> None:
    """The URL comes from a private file: the password is neither in the process's
    command line (readable by every user) nor in the log, and scans are written."""
    url = secret_url(acl_redis, db=3)
    url_file = tmp_path / "redis-url"
    url_file.write_text(f"# the writer's Redis\n{url}\n")
    url_file.chmod(0o600)
    root = tmp_path / "data"
    log, out, err = tmp_path / "writer.log", tmp_path / "out.txt", tmp_path / "err.txt"
    filename = root / "scan.h5"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(url_file_command(url_file, root, log), stdout=stdout,
                                   stderr=stderr)
    try:
        wait_until(lambda: log.exists() and "writing session" in log.read_text()
                   or process.poll() is not None, 60, "the writer listening")
        assert process.poll() is None, run_output(process, out, err)
        command_line = Path(f"/proc/{process.pid}/cmdline").read_bytes()
        assert b"--redis-url-file" in command_line and str(url_file).encode() in command_line
        with Publisher(SESSION, url, lease=2.0, retention=60) as publisher:
            publish(publisher, filename)
        wait_until(lambda: filename.exists() and "SUCCEEDED" in _status(filename), 60,
                   "the scan written")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
    assert PASSWORD.encode() not in command_line
    assert process.returncode == 0, run_output(process, out, err)
    logged = log.read_text() + run_output(process, out, err)
    assert "writing scan 1_loopscan" in logged and "ended (SUCCESS)" in logged, logged
    assert PASSWORD not in logged
    assert "can be read by every user" not in logged, "warned without a reason"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620],
                         ids=["group-read", "world-read", "group-write"])
def test_session_writer_command_refuses_a_url_file_open_to_others(
        tmp_path: Path, mode: int) -> None:
    url_file = tmp_path / "redis-url"
    url_file.write_text(secret_url("redis://127.0.0.1:1") + "\n")
    url_file.chmod(mode)
    before = url_file.read_bytes()
    log = tmp_path / "writer.log"
    result = subprocess.run(url_file_command(url_file, tmp_path, log), capture_output=True,
                            timeout=60)
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 2, output
    assert str(url_file) in output and f"chmod 600 {url_file}" in output, output
    assert f"{mode:03o}" in output and "other users" in output, output
    assert PASSWORD not in output and not log.exists()
    assert url_file.read_bytes() == before and stat.S_IMODE(url_file.stat().st_mode) == mode


def _status(filename: Path) -> str:
    try:
        with h5py.File(filename, "r", locking=False) as h5:
            return text(h5["1.1/writer/status"][()])
    except (OSError, KeyError, ValueError, TypeError, RuntimeError):  # reader contract
        return ""


@pytest.mark.slow
def test_session_writer_command_with_a_wrong_password_fails_without_showing_it(
        acl_redis: str, tmp_path: Path) -> None:
    url = secret_url(acl_redis, WRONG_PASSWORD)
    log = tmp_path / "writer.log"
    result = subprocess.run(writer_command(url, tmp_path, log), capture_output=True,
                            timeout=90)
    output = (result.stdout + result.stderr).decode(errors="replace")
    logged = output + (log.read_text() if log.exists() else "")
    assert result.returncode == 1, output
    assert "credentials" in output and "user and password" in output, output
    assert WRONG_PASSWORD not in logged and PASSWORD not in logged


# -- the Tango device -------------------------------------------------------------------


def test_device_makedirs_refuses_dotdot_and_symlink_escapes(
        redis_url: str, tmp_path: Path) -> None:
    root, outside = tmp_path / "data", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with writer_device(session="mkdirs", redis_url=redis_url,
                       allowed_roots=[str(root)]) as proxy:
        wait_for(lambda: proxy.State() == DevState.ON, 30, "device ON")
        for path in (root / ".." / "outside" / "new", root / "link" / "new",
                     root / "a" / ".." / ".." / "outside" / "new2"):
            error = dev_error(proxy.makedirs, str(path))
            assert str(path) in error.desc and "outside the allowed roots" in error.desc, \
                error.desc
        assert proxy.makedirs(str(root / "a" / ".." / "b")) is None
    assert os.listdir(outside) == []
    assert (root / "b").is_dir() and not (root / "a").exists()


def _everything(proxy: tango.DeviceProxy, scan: str) -> str:
    """Every attribute value and the answer of every query command, as text."""
    parts = [str(proxy.State()), proxy.Status()]
    for name in proxy.get_attribute_list():
        parts.append(f"{name}={proxy.read_attribute(name).value!r}")
    for command in ("scan_state", "scan_state_reason", "scan_url", "scan_exists",
                    "scan_disk_space_error", "scan_disk_space_warning"):
        try:
            parts.append(f"{command}={proxy.command_inout(command, scan)!r}")
        except tango.DevFailed as exc:
            parts.append(f"{command} failed: {exc.args[0].desc}")
    return "\n".join(parts)


@pytest.mark.slow
def test_device_shows_no_password_in_any_attribute_or_answer(
        acl_redis: str, tmp_path: Path) -> None:
    root = tmp_path / "data"
    url = secret_url(acl_redis, db=2)
    with writer_device(session=SESSION, redis_url=url, allowed_roots=[str(root)],
                       required_disk_space=0, recommended_disk_space=0) as proxy:
        wait_for(lambda: proxy.State() == DevState.ON, 60, "device ON")
        with Publisher(SESSION, url, lease=2.0, retention=60) as publisher:
            publish(publisher, root / "scan.h5")
        wait_for(lambda: list(proxy.scan_states or []) == [DevState.OFF], 60, "scan written")
        shown = _everything(proxy, "1_loopscan")
    assert "1_loopscan" in shown and str(root / "scan.h5") in shown, shown
    assert PASSWORD not in shown

    wrong = secret_url(acl_redis, WRONG_PASSWORD, db=2)
    with writer_device(session=SESSION, redis_url=wrong) as proxy:
        wait_for(lambda: proxy.State() == DevState.FAULT, 60, "device FAULT")
        shown = _everything(proxy, "1_loopscan")
    assert "credentials" in shown, shown
    assert WRONG_PASSWORD not in shown and PASSWORD not in shown
