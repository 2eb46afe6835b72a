"""File-system checks done before writing a scan file: roots, permissions, space, holders."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nexus_writer_service.errors import (
    ArgumentTypeError,
    ConfigurationError,
    DiskSpaceError,
    NexusWriterError,
    PathNotAllowedError,
)
from nexus_writer_service.io import checks


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "data"
    path.mkdir()
    return os.path.realpath(path)


def test_path_inside_root_is_resolved_and_allowed(root):
    path = os.path.join(root, "sample", "scan.h5")
    assert checks.check_path_allowed(path, [root]) == path


def test_root_itself_is_allowed(root):
    assert checks.check_path_allowed(root, [root], what="directory") == root


def test_sibling_with_root_as_prefix_is_refused(root):
    sibling = root + "2"
    with pytest.raises(PathNotAllowedError) as info:
        checks.check_path_allowed(os.path.join(sibling, "scan.h5"), [root])
    message = str(info.value)
    assert sibling in message
    assert repr(root) in message
    assert "add its directory to allowed_roots or change the scan's filename" in message


def test_dotdot_escape_is_refused_and_resolution_named(root):
    path = os.path.join(root, "..", "elsewhere", "scan.h5")
    with pytest.raises(PathNotAllowedError) as info:
        checks.check_path_allowed(path, [root])
    resolved = os.path.join(os.path.dirname(root), "elsewhere", "scan.h5")
    assert f"resolves to {resolved!r}" in str(info.value)


def test_symlink_inside_root_pointing_outside_is_refused(root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, os.path.join(root, "link"))
    with pytest.raises(PathNotAllowedError, match="outside the allowed roots"):
        checks.check_path_allowed(os.path.join(root, "link", "new", "scan.h5"), [root])


def test_relative_path_is_refused(root):
    with pytest.raises(PathNotAllowedError, match="must be an absolute path, got 'scan.h5'"):
        checks.check_path_allowed("scan.h5", [root])
    with pytest.raises(PathNotAllowedError, match="absolute path"):
        checks.check_path_allowed("scan.h5", [])


def test_no_roots_allow_any_absolute_path(tmp_path):
    path = str(tmp_path / "anywhere" / "scan.h5")
    assert checks.check_path_allowed(path, []) == os.path.realpath(path)
    assert checks.check_path_allowed("/", ()) == "/"


def test_errors_are_also_builtin_errors(root):
    with pytest.raises(PermissionError):
        checks.check_path_allowed("/somewhere/else.h5", [root])
    with pytest.raises(NexusWriterError):
        checks.check_path_allowed("relative.h5", [root])


def test_resolve_allowed_roots_resolves_and_deduplicates(tmp_path, root):
    alias = tmp_path / "alias"
    os.symlink(root, alias)
    assert checks.resolve_allowed_roots([root, alias, str(tmp_path)]) == (
        root,
        os.path.realpath(tmp_path),
    )
    assert checks.resolve_allowed_roots([]) == ()


def test_relative_root_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="'data/scans'") as info:
        checks.resolve_allowed_roots(["/ok", "data/scans"])
    assert isinstance(info.value, ValueError)


def test_single_path_as_roots_is_refused(root):
    with pytest.raises(ArgumentTypeError, match="wrap it in a list"):
        checks.check_path_allowed(os.path.join(root, "scan.h5"), root)


def test_makedirs_allowed_creates_inside_root(root):
    path = os.path.join(root, "a", "b")
    assert checks.makedirs_allowed(path, [root]) == path
    assert os.path.isdir(path)
    assert checks.makedirs_allowed(path, [root]) == path


def test_makedirs_allowed_refuses_outside_root_without_creating(root, tmp_path):
    path = tmp_path / "other" / "dir"
    with pytest.raises(PathNotAllowedError, match="directory"):
        checks.makedirs_allowed(str(path), [root])
    assert not path.parent.exists()


def test_check_writable_accepts_missing_file_in_writable_directory(root):
    checks.check_writable(os.path.join(root, "new", "deeper", "scan.h5"))
    existing = os.path.join(root, "scan.h5")
    open(existing, "w").close()
    checks.check_writable(existing)


def test_check_writable_refuses_a_file_as_parent_directory(root):
    blocker = os.path.join(root, "blocker")
    open(blocker, "w").close()
    path = os.path.join(blocker, "sub", "scan.h5")
    with pytest.raises(PathNotAllowedError) as info:
        checks.check_writable(path)
    assert str(info.value) == (
        f"cannot create {path}: {blocker} is not a directory; "
        "remove it or change the scan's filename"
    )
    assert isinstance(info.value, PermissionError)


def test_check_writable_on_read_only_directory(root):
    readonly = os.path.join(root, "readonly")
    os.mkdir(readonly, 0o500)
    path = os.path.join(readonly, "scan.h5")
    try:
        if os.geteuid() == 0:
            # The superuser bypasses permission bits, and os.access says so.
            checks.check_writable(path)
        else:
            with pytest.raises(PathNotAllowedError) as info:
                checks.check_writable(path)
            assert str(info.value) == f"no write permission in {readonly} (needed for {path})"
    finally:
        os.chmod(readonly, 0o700)


def test_free_disk_space_of_missing_path_uses_existing_ancestor(root):
    free = checks.free_disk_space(os.path.join(root, "missing", "scan.h5"))
    assert isinstance(free, int)
    assert free > 0


def test_required_disk_space_not_available_raises(root):
    path = os.path.join(root, "scan.h5")
    with pytest.raises(DiskSpaceError) as info:
        checks.check_disk_space(path, required=1e12, recommended=0)
    message = str(info.value)
    assert message.startswith("only ")
    assert path in message
    assert "1e+12 MiB required" in message
    assert "required_disk_space" in message
    assert isinstance(info.value, OSError)


def test_recommended_disk_space_not_available_warns(root):
    warning = checks.check_disk_space(os.path.join(root, "scan.h5"), required=0, recommended=1e12)
    assert warning is not None
    assert "recommended_disk_space" in warning


def test_disk_space_thresholds_zero_or_small_pass(root):
    path = os.path.join(root, "scan.h5")
    assert checks.check_disk_space(path, required=0, recommended=0) is None
    assert checks.check_disk_space(path, required=-1, recommended=-1) is None
    assert checks.check_disk_space(path, required=1e-6, recommended=1e-6) is None


HOLDER = (
    "import sys\n"
    "stream = open(sys.argv[1], 'rb')\n"
    "print('ready', flush=True)\n"
    "sys.stdin.read()\n"
)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
def test_lock_holders_lists_process_with_file_open(root):
    path = os.path.join(root, "scan.h5")
    open(path, "w").close()
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        holders = checks.lock_holders(path)
        assert process.pid in [pid for pid, _ in holders]
        command = dict(holders)[process.pid]
        assert command.startswith(f"{sys.executable} -c ")
        assert f"pid {process.pid} ({sys.executable} -c " in checks.describe_holders(path)
    finally:
        process.terminate()
        process.wait(timeout=10)
        for stream in (process.stdin, process.stdout):
            if stream is not None:
                stream.close()
    assert process.pid not in [pid for pid, _ in checks.lock_holders(path)]


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
def test_lock_holders_leaves_out_own_process_unless_asked(root):
    path = os.path.join(root, "scan.h5")
    with open(path, "w"):
        assert os.getpid() not in [pid for pid, _ in checks.lock_holders(path)]
        assert os.getpid() in [pid for pid, _ in checks.lock_holders(path, include_self=True)]


def test_nobody_holding_a_file_is_described(root):
    path = os.path.join(root, "scan.h5")
    open(path, "w").close()
    assert checks.lock_holders(path) == []
    assert checks.describe_holders(path) == "no process found holding it"


def test_opened_file_is_checked_where_it_really_is(root, tmp_path):
    """A link swapped after the path check: the file really opened is outside."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "scan.h5").write_bytes(b"x")
    (tmp_path / "data" / "sub").symlink_to(outside, target_is_directory=True)
    inside = os.path.join(root, "inside.h5")
    with open(inside, "wb") as ok, open(os.path.join(root, "sub", "scan.h5"), "rb") as bad:
        assert checks.check_opened_file_allowed(ok.fileno(), inside, [root]) == inside
        with pytest.raises(PathNotAllowedError) as info:
            checks.check_opened_file_allowed(bad.fileno(), "/claimed/scan.h5", [root],
                                             "scan file")
    message = str(info.value)
    assert "scan file '/claimed/scan.h5'" in message
    assert f"resolves to {str(outside / 'scan.h5')!r}" in message
    assert repr(root) in message and "symbolic link" in message


def test_opened_file_without_roots_is_allowed_and_named(root):
    path = os.path.join(root, "scan.h5")
    with open(path, "wb") as stream:
        assert checks.check_opened_file_allowed(stream.fileno(), path, []) == path
        assert checks.opened_file_path(stream.fileno()) == path
