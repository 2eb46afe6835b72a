"""The one table that classifies file and HDF5 errors: by errno and exception type,
never by message text (the same errno with any message gives the same failure)."""

from __future__ import annotations

import errno

import pytest

from nexus_writer_service.errors import DiskSpaceError, FileLockedError
from nexus_writer_service.io.failures import ERRNO_TABLE, Failure, Operation, classify

OP = Operation
MESSAGES = ["", "unable to lock file", "errno = 28, No space left on device", "whatever"]


@pytest.mark.parametrize("operation", list(OP))
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_full_disk_or_quota_is_disk_full_in_every_operation(operation: OP, code: int) -> None:
    for message in MESSAGES:
        assert classify(OSError(code, message), operation) is Failure.DISK_FULL


@pytest.mark.parametrize("code", [errno.EAGAIN, errno.EWOULDBLOCK, errno.ENOLCK])
def test_a_lock_met_when_opening_is_locked(code: int) -> None:
    assert classify(OSError(code, "x"), OP.OPEN) is Failure.LOCKED
    assert classify(BlockingIOError(code, "x"), OP.OPEN) is Failure.LOCKED
    assert classify(OSError(code, "x"), OP.CREATE) is Failure.OTHER


@pytest.mark.parametrize("code", [errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV])
def test_a_file_system_without_hard_links_is_told_by_link_only(code: int) -> None:
    assert classify(OSError(code, "x"), OP.LINK) is Failure.NO_HARD_LINKS
    assert classify(OSError(code, "x"), OP.OPEN) is Failure.OTHER


def test_the_message_never_decides() -> None:
    for message in MESSAGES:
        assert classify(OSError(message), OP.OPEN) is Failure.OTHER
        assert classify(OSError(errno.EACCES, message), OP.OPEN) is Failure.OTHER
        assert classify(ValueError(message), OP.WRITE) is Failure.OTHER


def test_a_failed_write_whose_exception_does_not_say_why_is_unwritten() -> None:
    assert classify(RuntimeError("Can't flush cache"), OP.WRITE) is Failure.UNWRITTEN
    assert classify(RuntimeError("Can't flush cache"), OP.OPEN) is Failure.OTHER
    assert classify(NotImplementedError("x"), OP.WRITE) is Failure.OTHER


def test_our_own_errors_keep_their_meaning() -> None:
    assert classify(DiskSpaceError("only 3 MiB free"), OP.WRITE) is Failure.DISK_FULL
    assert classify(FileLockedError("held by pid 1"), OP.OPEN) is Failure.OTHER


def test_table_rows_name_real_operations_and_failures() -> None:
    for (operation, code), failure in ERRNO_TABLE.items():
        assert operation is None or isinstance(operation, Operation)
        assert code in errno.errorcode
        assert isinstance(failure, Failure)
