"""Realistic, deterministic simulated scans published into a session.

Used by the ``nexus-writer-simulate`` command, the demo, the tests and the
benchmarks. :func:`simulate` publishes the scan types of :data:`SCAN_TYPES`
(``ct``, ``ascan``, ``a2scan``, ``amesh``, ``timescan``, ``loopscan``,
``two_top_masters``, ``mca``, ``lima``, ``many_channels``, ``long``, ``failed``)
and can record everything it published in a ground-truth HDF5 file
(:class:`TruthWriter`, read back with :func:`read_truth`).
"""

from .lima import LimaFileWriter
from .plan import (
    LIMA_FILE_FORMATS,
    Block,
    ChannelSpec,
    LimaSpec,
    PointSource,
    ScanParameters,
    ScanPlan,
)
from .runner import (
    DATA_SOURCES,
    PublishedScan,
    SimulationOptions,
    default_root,
    points_per_block,
    publish_plan,
    publish_sequence,
    simulate,
)
from .scans import (
    SCAN_TYPES,
    SEQUENCE_TYPES,
    ScanType,
    SequenceType,
    build_scan,
    mesh_shape,
    resolve_scan_names,
    scan_names,
)
from .truth import ScanTruthWriter, TruthLima, TruthScan, TruthWriter, read_truth

__all__ = [
    "LIMA_FILE_FORMATS",
    "LimaFileWriter",
    "Block",
    "ChannelSpec",
    "LimaSpec",
    "PointSource",
    "ScanParameters",
    "ScanPlan",
    "DATA_SOURCES",
    "PublishedScan",
    "SimulationOptions",
    "default_root",
    "points_per_block",
    "publish_plan",
    "publish_sequence",
    "simulate",
    "SCAN_TYPES",
    "SEQUENCE_TYPES",
    "ScanType",
    "SequenceType",
    "build_scan",
    "mesh_shape",
    "resolve_scan_names",
    "scan_names",
    "ScanTruthWriter",
    "TruthLima",
    "TruthScan",
    "TruthWriter",
    "read_truth",
]
