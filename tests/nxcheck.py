"""``nxcheck`` for tests: see :mod:`nexus_writer_service.io.nxcheck`."""

from nexus_writer_service.io.nxcheck import (
    NxcheckError,
    nxcheck_errors,
    nxcheck_report,
    nxcheck_warnings,
)

__all__ = ["nxcheck_errors", "nxcheck_warnings", "nxcheck_report", "NxcheckError"]
