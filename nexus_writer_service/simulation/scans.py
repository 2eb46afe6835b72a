"""The simulated scan types: what each one declares, its scan_info and its data.

Every builder takes :class:`~.plan.ScanParameters` and returns a
:class:`~.plan.ScanPlan` (pure: nothing is published or written here). Data come
from ``numpy.random.default_rng([seed, crc32(scan type), repeat])``, so two runs
with the same seed and options publish the same numbers.
"""

from __future__ import annotations

import math
import os
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..data.events import EndReason
from ..errors import ConfigurationError
from . import info as sinfo
from . import signals
from .plan import Block, ChannelSpec, LimaSpec, ScanParameters, ScanPlan

__all__ = ["ScanType", "SCAN_TYPES", "SEQUENCE_TYPES", "SequenceType", "scan_names",
           "build_scan", "build_sequence", "resolve_scan_names", "mesh_shape"]

Array = np.ndarray[Any, Any]
F8 = np.dtype("float64")
U4 = np.dtype("uint32")

_MANY_CHANNEL_DTYPES = tuple(np.dtype(t) for t in
                             ("float64", "float32", "int32", "uint32", "int64", "uint16"))


@dataclass(frozen=True)
class ScanType:
    """A scan type: its builder, its size when ``npoints`` is not given, a description."""

    build: Callable[[ScanParameters, np.random.Generator], ScanPlan]
    default_npoints: int
    description: str


def _rng(params: ScanParameters, kind: str) -> np.random.Generator:
    return np.random.default_rng([params.seed, zlib.crc32(kind.encode()), params.repeat])


def _session_positions(seed: int) -> dict[str, float]:
    """Where the session's motors are before a scan (depends on the seed only)."""
    rng = np.random.default_rng([seed, 0])
    return {m.name: round(float(rng.uniform(-2.0, 2.0)), 4) for m in sinfo.SESSION_MOTORS
            if m.name != "energy"} | {"energy": 17.0}


def _elapsed(subscan: str, master: str = "timer") -> ChannelSpec:
    return ChannelSpec(f"{master}:elapsed_time", F8, unit="s", subscan=subscan)


def _counters(subscan: str) -> list[ChannelSpec]:
    return [ChannelSpec(f"diode:diode{i}", F8, subscan=subscan) for i in (1, 2, 3)] + [
        ChannelSpec("mon:mon", U4, subscan=subscan)]


def _count(rng: np.random.Generator, profile: Array, exposure: float) -> dict[str, Array]:
    """diode1 sees the peak, diode2 a narrower copy of it, diode3 only background."""
    scale = exposure / 0.1
    profile = np.asarray(profile, dtype=np.float64)
    return {
        "diode:diode1": signals.peak_counts(rng, profile, height=5000 * scale,
                                            background=40 * scale),
        "diode:diode2": signals.peak_counts(rng, profile ** 4, height=1200 * scale,
                                            background=10 * scale),
        "diode:diode3": signals.peak_counts(rng, np.zeros_like(profile), height=0.0,
                                            background=25 * scale),
        "mon:mon": signals.monitor_counts(rng, len(profile), 1e5, exposure),
    }


def _npoints(params: ScanParameters, kind: str) -> int:
    npoints = SCAN_TYPES[kind].default_npoints if params.npoints is None else params.npoints
    if npoints < 1:
        raise ConfigurationError(f"npoints must be >= 1, got {npoints}")
    return int(npoints)


def _plan(params: ScanParameters, kind: str, *, name: str, scan_type: str, title: str,
          chain: dict[str, Any], channels: list[ChannelSpec], limas: Sequence[LimaSpec] = (),
          npoints: int, published: int, source: Callable[[int, int], Block],
          moved: dict[str, float] | None = None, plots: Sequence[Any] = (),
          data_dim: int = 1, extra: dict[str, Any] | None = None,
          channel_extra: dict[str, dict[str, Any]] | None = None,
          end: tuple[EndReason, str] = (EndReason.SUCCESS, "")) -> ScanPlan:
    start_positions = _session_positions(params.seed)
    end_positions = dict(start_positions, **(moved or {}))
    channel_info = sinfo.channels_info(channels, limas)
    for key, value in (channel_extra or {}).items():
        channel_info[key].update(value)
    scan_info = sinfo.make_scan_info(
        name=name, scan_type=scan_type, title=title, number=params.number,
        session=params.session,
        filename=sinfo.scan_filename(params.root, params.session, params.number),
        npoints=npoints, count_time=params.exposure, chain=chain, channels=channel_info,
        positioners=sinfo.positioners_info(start_positions, end_positions), plots=plots,
        start_time=params.start_time, data_dim=data_dim,
        masterfiles=(sinfo.master_filenames(params.root, params.session)
                     if params.master_files else None),
        extra=dict(extra or {}, simulation={"kind": kind, "seed": params.seed,
                                            "repeat": params.repeat}),
    )
    return ScanPlan(kind=kind, name=name, number=params.number, scan_info=scan_info,
                    channels=channels, limas=list(limas), npoints=published, source=source,
                    end_reason=end[0], end_message=end[1])


def _timed_scan(params: ScanParameters, rng: np.random.Generator, kind: str, *, name: str,
                title: str, npoints: int, published: int,
                end: tuple[EndReason, str] = (EndReason.SUCCESS, "")) -> ScanPlan:
    """ct, timescan, loopscan and the long scan: a timer master and counters."""
    elapsed = _elapsed("timer")
    counters = _counters("timer")
    exposure = params.exposure
    drift = rng.uniform(0.2, 0.8)

    def source(start: int, stop: int) -> Block:
        data = {elapsed.name: signals.elapsed_times(rng, start, stop, exposure * 1.02)}
        profile = 0.5 + 0.5 * np.cos(np.arange(start, stop) / 50.0 + drift)
        data.update(_count(rng, profile, exposure))
        return Block(start, stop, data)

    return _plan(params, kind, name=name, scan_type=name, title=title,
                 chain=sinfo.acquisition_chain("timer", [elapsed], counters),
                 channels=[elapsed] + counters, npoints=npoints, published=published,
                 source=source, plots=[sinfo.curve_plot(elapsed.name, ["diode:diode1"])],
                 end=end)


def build_ct(params: ScanParameters, rng: np.random.Generator) -> ScanPlan:
    title = f"ct {sinfo.format_number(params.exposure)}"
    return _timed_scan(params, rng, "ct", name="ct", title=title, npoints=1, published=1)


def build_loopscan(params: ScanParameters, rng: np.random.Generator) -> ScanPlan:
    n = _npoints(params, "loopscan")
    title = f"loopscan {n} {sinfo.format_number(params.exposure)}"
    return _timed_scan(params, rng, "loopscan", name="loopscan", title=title, npoints=n,
                       published=n)


def build_long(params: ScanParameters, rng: np.random.Generator) -> ScanPlan:
    n = _npoints(params, "long")
    title = f"loopscan {n} {sinfo.format_number(params.exposure)}"
    return _timed_scan(params, rng, "long", name="loopscan", title=title, npoints=n,
                       published=n)


def build_timescan(params: ScanParameters, rng: np.random.Generator) -> ScanPlan:
    n = _npoints(params, "timescan")
    title = f"timescan {sinfo.format_number(params.exposure)}"
    end = (EndReason.ABORTED, f"scan stopped by the user (KeyboardInterrupt) after {n} points")
    return _timed_scan(params, rng, "timescan", name="timescan", title=title, npoints=0,
                       published=n, end=end)


def _motor_scan(params: ScanParameters, rng: np.random.Generator, kind: str,
                motors: Sequence[tuple[str, float, float]], *, npoints: int, published: int,
                name: str, extra_channels: Sequence[ChannelSpec] = (),
                extra_data: Callable[[Array, int, int], dict[str, Array]] | None = None,
                end: tuple[EndReason, str] = (EndReason.SUCCESS, "")) -> ScanPlan:
    """ascan/a2scan-like: motors in a line, counters with a Gaussian peak on the first."""
    axes = [ChannelSpec(f"axis:{m}", F8, unit=_unit(m), subscan="axis") for m, _, _ in motors]
    elapsed = _elapsed("axis")
    counters = _counters("axis") + list(extra_channels)
    exposure = params.exposure
    first_start, first_stop = motors[0][1], motors[0][2]
    span = first_stop - first_start
    center = first_start + span * rng.uniform(0.3, 0.7)
    fwhm = abs(span) * 0.15 or 0.1

    def source(start: int, stop: int) -> Block:
        data = {axis.name: signals.linear_positions(m[1], m[2], npoints, start, stop)
                for axis, m in zip(axes, motors)}
        data[elapsed.name] = signals.elapsed_times(rng, start, stop, exposure * 1.05)
        profile = signals.gaussian(data[axes[0].name], center, fwhm)
        data.update(_count(rng, profile, exposure))
        if extra_data is not None:
            data.update(extra_data(profile, start, stop))
        return Block(start, stop, data)

    scan_type = "ascan" if len(motors) == 1 else f"a{len(motors)}scan"
    moved = {m: float(signals.linear_positions(a, b, npoints, published - 1, published)[0])
             for m, a, b in motors} if published else {}
    return _plan(params, kind, name=name, scan_type=scan_type,
                 title=sinfo.ascan_title(scan_type, motors, npoints - 1, exposure),
                 chain=sinfo.acquisition_chain("axis", axes, [elapsed] + counters),
                 channels=axes + [elapsed] + counters, npoints=npoints, published=published,
                 source=source, moved=moved,
                 plots=[sinfo.curve_plot(axes[0].name, ["diode:diode1", "diode:diode2"])],
                 extra={"start": [m[1] for m in motors], "stop": [m[2] for m in motors]},
                 end=end)


def _unit(motor: str) -> str:
    return next(m.unit for m in sinfo.SESSION_MOTORS if m.name == motor)


def build_ascan(params: ScanParameters, rng: np.random.Generator) -> ScanPlan:
    n = _npoints(params, "ascan")
    return _motor_scan(params, rng, "ascan", [("samy", 0.0, 1.0)], npoints=n, published=n,
                       name="ascan")


def build_a2scan(params: ScanParameters, rng: np.random.Generator) -> ScanPlan:
    n = _npoints(params, "a2scan")
    return _motor_scan(params, rng, "a2scan", [("samy", 0.0, 1.0), ("samz", -0.5, 0.5)],
                       npoints=n, published=n, name="a2scan")


def build_failed(params: ScanParameters, rng: np.random.Generator) -> ScanPlan:
    n = _npoints(params, "failed")
    failed_at = n // 2
    message = (f"RuntimeError: controller of 'diode:diode3' did not answer within 3 s "
               f"at point {failed_at}")
    return _motor_scan(params, rng, "failed", [("samx", 0.0, 2.0)], npoints=n,
                       published=failed_at, name="ascan", end=(EndReason.FAILED, message))


def _mca_channels(det: int) -> list[ChannelSpec]:
    return [ChannelSpec(f"mca1:spectrum_det{det}", U4, (signals.MCA_CHANNELS,),
                        subscan="axis"),
            ChannelSpec(f"mca1:icr_det{det}", F8, unit="1/s", subscan="axis"),
            ChannelSpec(f"mca1:ocr_det{det}", F8, unit="1/s", subscan="axis"),
            ChannelSpec(f"mca1:livetime_det{det}", F8, unit="s", subscan="axis"),
            ChannelSpec(f"mca1:realtime_det{det}", F8, unit="s", subscan="axis"),
            ChannelSpec(f"mca1:deadtime_det{det}", F8, subscan="axis")]


def build_mca(params: ScanParameters, rng: np.random.Generator) -> ScanPlan:
    """``params.mca_detectors`` detectors on the controller ``mca1``; detector ``d``
    sees the sample from a bit further away than detector 0 (fewer counts)."""
    n = _npoints(params, "mca")
    if params.mca_detectors < 1:
        raise ConfigurationError(f"mca_detectors must be >= 1, got {params.mca_detectors}")
    detectors = range(params.mca_detectors)
    mca = [spec for det in detectors for spec in _mca_channels(det)]

    def mca_data(profile: Array, start: int, stop: int) -> dict[str, Array]:
        data = {}
        for det in detectors:
            points = signals.mca_points(rng, (0.3 + profile) / (1.0 + 0.25 * det),
                                        params.exposure)
            data.update({f"mca1:{key}_det{det}": value for key, value in points.items()})
        return data

    plan = _motor_scan(params, rng, "mca", [("samy", 0.0, 1.0)], npoints=n, published=n,
                       name="ascan", extra_channels=mca, extra_data=mca_data)
    # as BLISS describes its MCA counters to the writer
    plan.scan_info["nexuswriter"]["devices"] = {
        spec.name: {"device_type": "mca",
                    "device_info": {"type": "mca", "description": "simulated XIA/mercury"}}
        for spec in mca}
    plan.scan_info["plots"].append(
        {"kind": "mca-plot", "items": [{"kind": "mca", "mca": "mca1:spectrum_det0"}]})
    # the classic writer's XRF application, as a beamline configures its technique
    plan.scan_info["nexuswriter"]["technique"] = {
        "name": "XRF", "applications": {"xrf": XRF_APPLICATION}, "plots": {},
        "plotselect": ""}
    return plan


#: The APPxrf application the simulated MCA scans ask for: the monitor is I0, the
#: first diode It, and every MCA detector is in it.
XRF_APPLICATION = {"class": "APPxrf", "I0": "mon", "It": "diode1", "mca": []}


def mesh_shape(npoints: int | None) -> tuple[int, int]:
    """Points per line and number of lines of an amesh of about ``npoints`` points."""
    if npoints is None:
        return 11, 6
    if npoints < 1:
        raise ConfigurationError(f"npoints must be >= 1, got {npoints}")
    n1 = max(1, math.isqrt(npoints))
    return n1, max(1, npoints // n1)


def build_amesh(params: ScanParameters, rng: np.random.Generator) -> ScanPlan:
    n1, n2 = mesh_shape(params.npoints)
    fast, slow = ("samy", 0.0, 1.0), ("samz", 0.0, 0.5)
    axes = [ChannelSpec(f"axis:{m[0]}", F8, unit="mm", subscan="axis") for m in (fast, slow)]
    elapsed = _elapsed("axis")
    counters = _counters("axis")
    exposure = params.exposure
    peak = (rng.uniform(0.3, 0.7), rng.uniform(0.15, 0.35))

    def source(start: int, stop: int) -> Block:
        y, z = signals.mesh_positions((fast[1], fast[2], n1), (slow[1], slow[2], n2),
                                      start, stop)
        data = {axes[0].name: y, axes[1].name: z,
                elapsed.name: signals.elapsed_times(rng, start, stop, exposure * 1.05)}
        profile = signals.gaussian(y, peak[0], 0.25) * signals.gaussian(z, peak[1], 0.15)
        data.update(_count(rng, profile, exposure))
        return Block(start, stop, data)

    axis_extra = {
        axis.name: {"axis_id": i, "axis_kind": "forth", "axis_points": n, "start": m[1],
                    "stop": m[2], "min": min(m[1], m[2]), "max": max(m[1], m[2])}
        for i, (axis, m, n) in enumerate(zip(axes, (fast, slow), (n1, n2)))
    }
    return _plan(params, "amesh", name="amesh", scan_type="amesh",
                 title=sinfo.mesh_title((*fast, n1 - 1), (*slow, n2 - 1), exposure),
                 chain=sinfo.acquisition_chain("axis", axes, [elapsed] + counters),
                 channels=axes + [elapsed] + counters, npoints=n1 * n2, published=n1 * n2,
                 source=source, moved={"samy": fast[2], "samz": slow[2]}, data_dim=2,
                 plots=[sinfo.scatter_plot(axes[0].name, axes[1].name, "diode:diode1")],
                 extra={"npoints1": n1, "npoints2": n2, "start": [fast[1], slow[1]],
                        "stop": [fast[2], slow[2]], "fast_axis": axes[0].name},
                 channel_extra=axis_extra)


def build_two_top_masters(params: ScanParameters, rng: np.random.Generator) -> ScanPlan:
    """An ascan next to an independent monitor timer counting twice as fast."""
    n = _npoints(params, "two_top_masters")
    plan = _motor_scan(params, rng, "two_top_masters", [("samy", 0.0, 1.0)], npoints=n,
                       published=n, name="two_top_masters")
    timer2 = ChannelSpec("timer2:elapsed_time", F8, unit="s", subscan="timer2",
                         points_per_point=2)
    monitor = ChannelSpec("fast_monitor:mon", U4, subscan="timer2", points_per_point=2)
    axis_source = plan.source
    period = params.exposure * 1.05 / 2

    def source(start: int, stop: int) -> Block:
        block = axis_source(start, stop)
        block.channels[timer2.name] = signals.elapsed_times(rng, 2 * start, 2 * stop, period)
        block.channels[monitor.name] = signals.monitor_counts(rng, 2 * (stop - start), 1e5,
                                                              period)
        return block

    plan.source = source
    plan.channels += [timer2, monitor]
    plan.scan_info["acquisition_chain"].update(
        sinfo.acquisition_chain("timer2", [timer2], [monitor]))
    plan.scan_info["channels"].update(sinfo.channels_info([timer2, monitor]))
    plan.scan_info["title"] += " (+ timer2 monitor at twice the rate)"
    return plan


def build_lima(params: ScanParameters, rng: np.random.Generator) -> ScanPlan:
    n = _npoints(params, "lima")
    exposure = params.exposure
    elapsed = _elapsed("timer")
    diode = ChannelSpec("diode:diode1", F8, subscan="timer")
    roi = ChannelSpec("lima_simulator:roi_counters:roi1_sum", F8, subscan="timer")
    lima = LimaSpec(
        "lima_simulator:image",
        directory=os.path.join(os.path.abspath(params.root), params.session,
                               f"scan{params.number:04d}"),
        prefix="lima_simulator_", shape=(64, 80), frames_per_file=params.lima_frames_per_file,
        frames_per_acquisition=params.lima_frames_per_acquisition,
        first_file_number=params.lima_first_file_number,
        detector_path="/entry_0000/instrument/lima_simulator/data", subscan="timer",
        file_format=params.lima_format, suffix=".h5" if params.lima_format == "hdf5" else ".edf",
    )
    phase = rng.uniform(0, 2 * math.pi)

    def source(start: int, stop: int) -> Block:
        index = np.arange(start, stop, dtype=np.float64)
        centers = np.stack([32 + 6 * np.sin(index / 7.0 + phase), 40 + 0.2 * (index % 50)], 1)
        centers = centers + rng.normal(0.0, 0.3, size=centers.shape)
        frames = signals.detector_frames(rng, lima.shape, centers)
        data = {elapsed.name: signals.elapsed_times(rng, start, stop, exposure * 1.1),
                diode.name: signals.peak_counts(rng, np.ones(stop - start),
                                                height=4000 * exposure / 0.1, background=0.0),
                roi.name: frames[:, 24:40, 30:50].sum(axis=(1, 2), dtype=np.float64)}
        return Block(start, stop, data, {lima.name: frames})

    title = f"loopscan {n} {sinfo.format_number(exposure)}"
    return _plan(params, "lima", name="loopscan", scan_type="loopscan", title=title,
                 chain=sinfo.acquisition_chain("timer", [elapsed], [diode, roi], [lima]),
                 channels=[elapsed, diode, roi], limas=[lima], npoints=n, published=n,
                 source=source, plots=[sinfo.image_plot(lima.name)],
                 channel_extra={roi.name: {"roi": [24, 40, 30, 50]}})


def build_many_channels(params: ScanParameters, rng: np.random.Generator) -> ScanPlan:
    n = _npoints(params, "many_channels")
    if params.nchannels < 1:
        raise ConfigurationError(f"nchannels must be >= 1, got {params.nchannels}")
    exposure = params.exposure
    elapsed = _elapsed("timer")
    counters = [ChannelSpec(f"sim:c{i:03d}", _MANY_CHANNEL_DTYPES[i % len(_MANY_CHANNEL_DTYPES)],
                            subscan="timer") for i in range(params.nchannels)]
    rates = rng.uniform(100.0, 5000.0, size=len(counters))

    def source(start: int, stop: int) -> Block:
        size = stop - start
        data = {elapsed.name: signals.elapsed_times(rng, start, stop, exposure * 1.02)}
        for spec, rate in zip(counters, rates):
            values: Array
            if spec.dtype.kind == "f":
                values = rng.normal(rate, math.sqrt(rate), size=size)
            else:
                values = rng.poisson(rate * exposure, size=size)
            data[spec.name] = values.astype(spec.dtype)
        return Block(start, stop, data)

    title = f"loopscan {n} {sinfo.format_number(exposure)}"
    return _plan(params, "many_channels", name="loopscan", scan_type="loopscan", title=title,
                 chain=sinfo.acquisition_chain("timer", [elapsed], counters),
                 channels=[elapsed] + counters, npoints=n, published=n, source=source,
                 plots=[sinfo.curve_plot(elapsed.name, [counters[0].name])])


SCAN_TYPES: dict[str, ScanType] = {
    "ct": ScanType(build_ct, 1, "one point of every counter (npoints is ignored)"),
    "ascan": ScanType(build_ascan, 11, "samy 0 -> 1, counters with a Gaussian peak"),
    "a2scan": ScanType(build_a2scan, 11, "samy 0 -> 1 and samz -0.5 -> 0.5 together"),
    "amesh": ScanType(build_amesh, 66, "2D grid samy (fast) x samz (slow); default 11 x 6"),
    "timescan": ScanType(build_timescan, 20, "endless timescan stopped by the user: ABORTED"),
    "loopscan": ScanType(build_loopscan, 10, "counters at fixed time intervals"),
    "two_top_masters": ScanType(build_two_top_masters, 11,
                                "ascan plus an independent timer at twice the rate"),
    "mca": ScanType(build_mca, 11, "ascan with an MCA: 4096-channel spectra, ICR/OCR/times"),
    "lima": ScanType(build_lima, 25, "loopscan with a 2D detector writing HDF5 (or EDF) files"),
    "many_channels": ScanType(build_many_channels, 10, "loopscan with nchannels counters"),
    "long": ScanType(build_long, 1_000_000, "loopscan of a million points"),
    "failed": ScanType(build_failed, 11, "ascan whose detector fails halfway: FAILED"),
}


@dataclass(frozen=True)
class SequenceType:
    """A sequence (BLISS: a scan group) running the scan types ``scans`` one after
    the other, all saved in the sequence's file."""

    scans: tuple[str, ...]
    description: str


#: The sequences the simulator publishes when asked by name (``all`` is the scan types).
SEQUENCE_TYPES: dict[str, SequenceType] = {
    "sequence": SequenceType(("ascan", "loopscan"),
                             "a sequence running an ascan and a loopscan, in one file"),
}


def build_sequence(kind: str, params: ScanParameters) -> ScanPlan:
    """The plan of the sequence ``kind`` itself (see :data:`SEQUENCE_TYPES`): a scan
    with no channel of its own, marked ``is_scan_sequence`` as BLISS does; the runner
    publishes its scans."""
    sequence = SEQUENCE_TYPES[kind]

    def source(start: int, stop: int) -> Block:
        return Block(start, stop, {})

    chain = {"GroupingMaster": {"master": {"scalars": [], "spectra": [], "images": []},
                                "scalars": [], "spectra": [], "images": []}}
    return _plan(params, kind, name="sequence", scan_type="sequence",
                 title=f"sequence_of_scans ({', '.join(sequence.scans)})", chain=chain,
                 channels=[], npoints=0, published=0, source=source,
                 extra={"is_scan_sequence": True})


def scan_names() -> tuple[str, ...]:
    """Every scan type, in the order ``all`` publishes them."""
    return tuple(SCAN_TYPES)


def resolve_scan_names(names: Sequence[str] | None) -> list[str]:
    """Expand ``"all"`` (or nothing) and check names; unknown ones raise ConfigurationError."""
    if not names:
        return list(SCAN_TYPES)
    resolved: list[str] = []
    for name in names:
        if name == "all":
            resolved.extend(SCAN_TYPES)
        elif name in SCAN_TYPES or name in SEQUENCE_TYPES:
            resolved.append(name)
        else:
            raise ConfigurationError(
                f"unknown scan {name!r}: choose from "
                f"{', '.join(list(SCAN_TYPES) + list(SEQUENCE_TYPES))} or 'all'")
    return resolved


def build_scan(kind: str, params: ScanParameters) -> ScanPlan:
    """The plan of scan type ``kind`` (see :data:`SCAN_TYPES`) for ``params``."""
    try:
        scan_type = SCAN_TYPES[kind]
    except KeyError:
        raise ConfigurationError(
            f"unknown scan {kind!r}: choose from {', '.join(SCAN_TYPES)}") from None
    return scan_type.build(params, _rng(params, kind))
