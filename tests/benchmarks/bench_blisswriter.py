"""Our writer next to ESRF's blisswriter 3.0, both writing the same blissdata 2.x scans.

    python -m tests.benchmarks.bench_blisswriter [--load {scalars,mca} ...]
        [--points N] [--block B ...] [--spectra N] [--repeat N] [--blisswriter PATH]
        [--redis-url URL] [--quick]

Also scenario 13 of ``python -m tests.benchmarks``. What is compared:

* the scans: published with blissdata's own publisher (:class:`tests.blissdata_support.BlissScan`),
  with the scan_info of a BLISS 2.4 ascan plus the ``scan_info["h5maps"]`` that
  blisswriter 3.0 writes from (:func:`h5maps`: the NeXus entry BLISS 2.4 maps, with
  the streams in ``instrument``, soft links in ``measurement``, and ``end_time``
  added at CLOSED, as BLISS 2.4 regenerates the mapping then). Two loads
  (``--load``, both by default):

  - ``scalars``: 10 float64 channels x 1e6 points (``--points``; ``--quick``: 1e5)
    in blocks of 100 and of 1000 (``--block``), sent as fast as blissdata sends;
  - ``mca``: the MCA scenario of ``python -m tests.benchmarks`` (3): 4 detectors x
    4096-channel uint32 spectra (Poisson counts of a few peaks) at 1 kHz in blocks
    of 50, 10,000 spectra each (``--spectra``; ``--quick``: 2000), 655 MB;
* ours: the ``NexusSessionWriter`` command with ``--data-source blissdata``
  (:mod:`tests.benchmarks.writer_proc`), in a process of its own; the file is complete
  when it reports the scan done, and it counts only with status ``SUCCEEDED``;
* theirs: ``blisswriter run URL`` (it writes every scan created while it runs) in a
  process of its own; the file is complete when it logs ``Saving complete.`` for the
  scan (its ``ScanWriter`` has then closed every stream writer and written the
  mapping of CLOSED: blisswriter 3.0 has no status in the file). It must be
  installed apart (its dependencies are not ours): ``python3 -m venv .venv-bw &&
  .venv-bw/bin/pip install blisswriter==3.0.0``, then ``--blisswriter
  .venv-bw/bin/blisswriter`` or the ``BLISSWRITER`` environment variable (default:
  ``blisswriter`` on the PATH). Without it the comparison is skipped, with that reason.

Each run publishes a fresh scan (same data, same scan_info but for the file name) for
one writer at a time, the order alternating, with no other writer running. A writer
is started first and has seen the scan at PREPARED (ours: listed in its status;
theirs: ``Start saving``) before any point is sent. Two measures per writer:

* end to end: writer running while the scan is published as fast as blissdata sends;
  time from the first point sent to the file complete, and the *tail*, from the
  scan closed (last point sent) to the file complete;
* drain: the writer process is stopped (SIGSTOP) once it has seen the scan, the whole
  scan is published, then the writer continued (SIGCONT): time from then to the file
  complete. The same for both writers, since blisswriter cannot write a scan created
  before it started.

Also the writer's CPU seconds (user + system, ``/proc/<pid>/stat``) over the measure.
A figure counts only once h5py read every point of every channel back from the file,
equal to what was published. ``--repeat`` runs of each (3 by default): the tables
show medians, the spread (min-max) and the ratio ours/theirs of each run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import h5py
import numpy as np

from .bench_writer import print_table, proc_times, spread

#: The 10 float64 channels: blissdata stream name -> name in the file (theirs)
CHANNELS = {
    "axis:samy": "samy",
    "timer:elapsed_time": "elapsed_time",
    "timer:epoch": "epoch",
    "simulation_diode_sampling_controller:diode": "diode",
    "simulation_diode_sampling_controller:diode2": "diode2",
    "mca1:realtime_det0": "realtime_det0",
    "mca1:trigger_livetime_det0": "trigger_livetime_det0",
    "mca1:icr_det0": "icr_det0",
    "mca1:ocr_det0": "ocr_det0",
    "mca1:deadtime_det0": "deadtime_det0",
}
#: The 4 MCA spectra of the ``mca`` load: blissdata stream name -> name in the file
SPECTRA = {f"mca1:spectrum_det{d}": f"spectrum_det{d}" for d in range(4)}
NUMBER = 3  # the scan number: entry "3.1"
MISSING = ("blisswriter 3.0 not found: install it in a virtual environment of its own "
           "(python3 -m venv .venv-bw && .venv-bw/bin/pip install blisswriter==3.0.0) and "
           "give its command with --blisswriter .venv-bw/bin/blisswriter or the BLISSWRITER "
           "environment variable")


def log(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


# -- the scans -------------------------------------------------------------------------


@dataclass(frozen=True)
class Load:
    """What a scan publishes: ``channels`` (stream name -> name in the file) of
    ``dtype`` and point ``shape``, at ``rate`` points per second (None: as fast as
    blissdata sends)."""

    name: str
    channels: dict[str, str]
    dtype: str
    shape: tuple[int, ...]
    rate: float | None = None

    @property
    def point_bytes(self) -> int:
        return int(np.dtype(self.dtype).itemsize * np.prod(self.shape, dtype=int))


SCALARS = Load("scalars", CHANNELS, "f8", ())
MCA = Load("mca", SPECTRA, "u4", (4096,), rate=1000.0)
LOADS = {load.name: load for load in (SCALARS, MCA)}


def bench_data(npoints: int, seed: int = 0, load: Load = SCALARS) -> dict[str, np.ndarray]:
    if load.name == "mca":
        from .bench_compression import spectra

        return {name: spectra(npoints, load.shape[0], seed + d)
                for d, name in enumerate(load.channels)}
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(npoints) for name in load.channels}


def bench_scan_info(filename: str, session: str, npoints: int, load: Load = SCALARS
                    ) -> dict[str, Any]:
    """The reference BLISS 2.4 ascan's scan_info with the channels of ``load``,
    saving to ``filename``, and its ``h5maps``: for ``scalars``, the 10 float64
    channels of :data:`CHANNELS` (its MCA spectrum left out, a second diode added);
    for ``mca``, only the 4 spectra of :data:`SPECTRA` (of its MCA ``mca1``)."""
    from tests.blissdata_support import reference_scan_info

    info = reference_scan_info(filename, session=session, npoints=npoints)
    if load.name == "mca":
        return _mca_scan_info(info, load)
    chain = info["acquisition_chain"]["axis"]
    chain["spectra"] = []
    chain["scalars"] = [name for name in CHANNELS if name != "axis:samy"]
    channels = info["channels"]
    channels.pop("mca1:spectrum_det0", None)
    channels["simulation_diode_sampling_controller:diode2"] = {"dim": 0,
                                                               "display_name": "diode2"}
    devices = info["devices"]
    devices.pop("140005:pilatus", None)
    devices["140004:mca1"]["channels"].remove("mca1:spectrum_det0")
    devices["140003:simulation_diode_sampling_controller"]["channels"].append(
        "simulation_diode_sampling_controller:diode2")
    devices["140002:timer"]["triggered_devices"].remove("140005:pilatus")
    info["h5maps"] = h5maps(info, load=load)
    return info


def _mca_scan_info(info: dict[str, Any], load: Load) -> dict[str, Any]:
    """``info`` publishing only the spectra of ``load``, all of device ``mca1``."""
    chain = info["acquisition_chain"]["axis"]
    chain["master"]["scalars"] = []
    chain["scalars"], chain["spectra"], chain["images"] = [], list(load.channels), []
    chain["devices"] = ["140001:axis", "140002:timer", "140004:mca1"]
    info["channels"] = {name: {"dim": 1, "display_name": short}
                        for name, short in load.channels.items()}
    devices = info["devices"]
    for name in ("140003:simulation_diode_sampling_controller", "140005:pilatus"):
        devices.pop(name, None)
    devices["140001:axis"]["channels"] = []
    devices["140002:timer"]["channels"] = []
    devices["140002:timer"]["triggered_devices"] = ["140004:mca1"]
    devices["140004:mca1"]["channels"] = list(load.channels)
    info["h5maps"] = h5maps(info, load=load)
    return info


def _text(value: str) -> dict[str, Any]:
    return {"type": "dataset", "value": value}


def h5maps(info: dict[str, Any], end_time: str | None = None, load: Load = SCALARS
           ) -> dict[str, Any]:
    """``scan_info["h5maps"]`` of the scan, as blissdata's h5map models in their JSON form
    (``blissdata.h5map``): one file, ``info["filename"]``, an NXentry ``<number>.1``
    with title and times, each channel's stream as ``instrument/<name>/data`` (with
    its unit) and linked from ``measurement/<name>``. ``end_time``: the mapping of
    CLOSED."""
    entry = f"{NUMBER}.1"
    instrument: dict[str, Any] = {}
    measurement: dict[str, Any] = {}
    for channel, name in load.channels.items():
        unit = (info["channels"].get(channel) or {}).get("unit")
        data: dict[str, Any] = {"type": "dataset",
                                "value": {"type": "stream", "stream": channel}}
        if unit:
            data["attributes"] = {"units": unit}
        instrument[name] = {"type": "group", "attributes": {"NX_class": "NXdetector"},
                            "children": {"data": data}}
        measurement[name] = {"type": "soft_link",
                             "target_path": f"/{entry}/instrument/{name}/data"}
    children: dict[str, Any] = {
        "title": _text(info["title"]),
        "start_time": _text(info["start_time"]),
        "instrument": {"type": "group", "attributes": {"NX_class": "NXinstrument"},
                       "children": instrument},
        "measurement": {"type": "group", "attributes": {"NX_class": "NXcollection"},
                        "children": measurement},
    }
    if end_time is not None:
        children["end_time"] = _text(end_time)
    root = {"type": "group", "attributes": {"NX_class": "NXroot", "creator": "bliss"},
            "children": {entry: {"type": "group",
                                 "attributes": {"NX_class": "NXentry",
                                                "default": "measurement"},
                                 "children": children}}}
    return {info["filename"]: root}


def check_h5maps(maps: dict[str, Any]) -> None:
    """Refuse a mapping blissdata's own models refuse (what blisswriter validates)."""
    from blissdata.h5map import HDF5Item

    for raw in maps.values():
        HDF5Item.validate_python(raw)


# -- the writers -----------------------------------------------------------------------


class Ours:
    """``NexusSessionWriter --data-source blissdata`` (:mod:`.writer_proc`)."""

    name = "ours"

    def __init__(self, url: str, session: str, tmp: str) -> None:
        from .system import Context, Writer

        ctx = Context(url, None, tmp, False)  # type: ignore[arg-type]
        # this process's own looks at the writer cost CPU too: few of them (blisswriter
        # is only watched from its log); the time a scan ended is the writer's own
        self.writer = Writer(ctx, session, options=("--data-source", "blissdata",
                                                    "--poll", "0.1", "--sample", "0.1"))
        self.pid = self.writer.process.pid

    def wait_ready(self, timeout: float) -> None:
        self.writer.wait_event("started", timeout)

    def wait_seen(self, key: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.writer.lines():
                if line["event"] == "sample" and any(key in s["key"] for s in line["scans"]):
                    return
            self._alive()
            time.sleep(0.005)
        raise TimeoutError(f"our writer did not list scan {key} within {timeout} s")

    def wait_done(self, key: str, timeout: float) -> float:
        (done,) = self.writer.wait_event("done", timeout)
        if done["status"] != "SUCCEEDED":
            raise RuntimeError(f"our writer ended the scan {done['state']} "
                               f"{done['status']}: {done['reason']}")
        return float(done["t"])

    def _alive(self) -> None:
        if self.writer.process.poll() is not None:
            raise RuntimeError(f"our writer exited ({self.writer.process.returncode}): "
                               f"{self.writer.output()[-2000:]}")

    def stop(self) -> list[str]:
        code = self.writer.stop()
        errors = self.writer.errors()[:5]
        return ([f"exit status {code}"] if code else []) + errors


class Theirs:
    """``blisswriter run URL`` (blisswriter 3.0), its log lines timed as they come."""

    name = "blisswriter"

    def __init__(self, command: str, url: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen([command, "run", url, "--log-level", "INFO"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        env=env, text=True)
        self.pid = self.process.pid
        self.lines: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self.lines.append((time.time(), line.rstrip("\n")))

    def _wait_line(self, words: Sequence[str], timeout: float, fail: str = "") -> float:
        """When the first line holding every one of ``words`` came; a line holding
        ``fail`` and ``words[0]`` is an error."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                lines = list(self.lines)
            for t, line in lines:
                if all(word in line for word in words):
                    return t
                if fail and fail in line and words[0] in line:
                    raise RuntimeError(f"blisswriter: {line}")
            if self.process.poll() is not None:
                raise RuntimeError(f"blisswriter exited ({self.process.returncode}): "
                                   + "\n".join(line for _, line in lines[-20:]))
            time.sleep(0.005)
        raise TimeoutError(f"blisswriter did not log {' '.join(words)!r} within {timeout} s")

    def wait_ready(self, timeout: float) -> None:
        self._wait_line(["Listening to"], timeout)

    def wait_seen(self, key: str, timeout: float) -> None:
        self._wait_line([key, "Start saving"], timeout, fail=" ERROR ")

    def wait_done(self, key: str, timeout: float) -> float:
        return self._wait_line([key, "Saving complete."], timeout, fail=" ERROR ")

    def stop(self) -> list[str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # its own clean stop
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        with self._lock:
            bad = [line for _, line in self.lines
                   if " ERROR " in line or " CRITICAL " in line or "Traceback" in line]
        code = self.process.returncode
        return ([f"exit status {code}"] if code else []) + bad[:5]


def find_blisswriter(given: str | None) -> tuple[str | None, str]:
    """The ``blisswriter`` command and its version, or None and why not."""
    command = given or os.environ.get("BLISSWRITER") or shutil.which("blisswriter")
    if not command:
        return None, MISSING
    if not os.path.isfile(command) or not os.access(command, os.X_OK):
        return None, f"{MISSING} ({command!r} is not an executable file)"
    python = os.path.join(os.path.dirname(command), "python")
    version = "?"
    if os.path.exists(python):
        result = subprocess.run(
            [python, "-c", "import importlib.metadata as m; print(m.version('blisswriter'))"],
            capture_output=True, text=True, timeout=60)
        version = result.stdout.strip() or "?"
        if result.returncode != 0 or not version.startswith("3."):
            return None, (f"{MISSING} ({command}: blisswriter version {version!r}, "
                          f"{result.stderr.strip()[-300:]})")
    return command, version


# -- one run ---------------------------------------------------------------------------


@dataclass
class Run:
    writer: str
    mode: str  # "e2e" or "drain"
    block: int
    load: str = "scalars"
    wall: float = float("nan")  # publish start (e2e) or continued (drain) -> complete
    tail: float = float("nan")  # scan closed -> complete
    cpu: float = float("nan")
    outcome: str = ""


def publish_scan(url: str, info: dict[str, Any], session: str, load: Load = SCALARS
                 ) -> Any:
    from tests.blissdata_support import BlissScan

    channels = {name: (np.dtype(load.dtype), load.shape) for name in load.channels}
    return BlissScan(url, info, session=session, number=NUMBER, channels=channels)


def send_all(scan: Any, data: dict[str, np.ndarray], block: int, info: dict[str, Any],
             load: Load = SCALARS, paced: bool = True) -> None:
    """Every block of ``data``, at ``load.rate`` when ``paced``, then the end."""
    from tests.blissdata_support import END_TIME, blocks

    start = time.monotonic()
    sent = 0
    for part in blocks(data, block):
        if paced and load.rate:
            delay = start + sent / load.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        scan.send(part)
        sent += len(next(iter(part.values())))
    scan.end(info={"h5maps": h5maps(info, end_time=END_TIME, load=load)})


def check_file(path: str, data: dict[str, np.ndarray], ours: bool, load: Load = SCALARS
               ) -> str:
    """What is wrong with the file (empty: every point of every channel, equal to what
    was published)."""
    try:
        with h5py.File(path, "r", locking=False) as h5:
            entry = h5[f"{NUMBER}.1"]
            found: dict[str, Any] = {}
            if ours:
                status = entry["writer/status"][()]
                status = status.decode() if isinstance(status, bytes) else str(status)
                if status != "SUCCEEDED":
                    return f"writer/status {status}"

                def visit(_: str, obj: Any) -> None:
                    if isinstance(obj, h5py.Dataset) and "channel" in obj.attrs:
                        name = obj.attrs["channel"]
                        found.setdefault(name.decode() if isinstance(name, bytes)
                                         else str(name), obj)

                entry["instrument"].visititems(visit)
            else:
                found = {channel: entry[f"measurement/{name}"]
                         for channel, name in load.channels.items()
                         if f"measurement/{name}" in entry}
            for channel, values in data.items():
                if channel not in found:
                    return f"no dataset for channel {channel}"
                got = found[channel][()]
                if got.shape != values.shape or not np.array_equal(got, values):
                    return (f"channel {channel}: {got.shape[0] if got.ndim else 0} "
                            f"points, not the {len(values)} published")
    except (OSError, KeyError) as exc:
        return f"cannot read {path}: {exc}"
    return ""


def one_run(url: str, tmp: str, blisswriter: str | None, writer: str, mode: str,
            block: int, data: dict[str, np.ndarray], label: str, timeout: float,
            load: Load = SCALARS) -> tuple[Run, list[str]]:
    """One scan of ``load`` written by ``writer`` (``ours`` or ``blisswriter``) in
    ``mode`` (drain: published unpaced)."""
    from blissdata.redis_engine.store import DataStore

    run = Run(writer, mode, block, load.name)
    session = f"bw_{label}_{os.getpid()}"
    path = os.path.join(tmp, f"{label}.h5")
    npoints = len(next(iter(data.values())))
    info = bench_scan_info(path, session, npoints, load)
    check_h5maps(info["h5maps"])
    proc: Ours | Theirs = (Ours(url, session, tmp) if writer == "ours"
                           else Theirs(blisswriter or "blisswriter", url))
    key = ""
    problems: list[str] = []
    try:
        proc.wait_ready(60)
        scan = publish_scan(url, info, session, load)
        key = scan.key
        scan.prepare_and_start()
        proc.wait_seen(key, 60)
        before = sum(proc_times(proc.pid))
        if mode == "drain":
            os.kill(proc.pid, signal.SIGSTOP)
            try:
                send_all(scan, data, block, info, load, paced=False)
            finally:
                t0 = time.time()
                os.kill(proc.pid, signal.SIGCONT)
            closed = t0
        else:
            t0 = time.time()
            send_all(scan, data, block, info, load)
            closed = time.time()
        done = proc.wait_done(key, timeout)
        run.cpu = sum(proc_times(proc.pid)) - before
        run.wall, run.tail = done - t0, max(0.0, done - closed)
    except Exception as exc:
        run.outcome = f"{type(exc).__name__}: {exc}"
    finally:
        problems += [f"{writer} {label}: {text}" for text in proc.stop()]
        if key:
            try:
                DataStore(url).delete_scan(key, force=True)
            except Exception as exc:  # the run's figure stands; the Redis fills up
                problems.append(f"{label}: scan {key} not deleted: {exc}")
    if not run.outcome:
        run.outcome = check_file(path, data, writer == "ours", load)
    if run.outcome:
        problems.append(f"{writer} {load.name} {mode} block {block} ({label}): "
                        f"{run.outcome}")
    if os.path.exists(path):
        os.unlink(path)
    return run, problems


# -- tables ----------------------------------------------------------------------------


@dataclass
class Results:
    runs: list[Run] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def ratios(ours: list[Run], theirs: list[Run], attr: str) -> list[float]:
    """ours/theirs of each repetition where both writers' files were complete."""
    out = []
    for a, b in zip(ours, theirs):
        if a.outcome or b.outcome:
            continue
        x, y = getattr(a, attr), getattr(b, attr)
        if y > 0:
            out.append(x / y)
    return out


def table(results: Results, npoints: int, title: str, load: Load = SCALARS) -> None:
    """The table of ``load``'s runs (scalars: Mpts/s; spectra: MB/s of data)."""
    rows = []
    runs = [r for r in results.runs if r.load == load.name]
    for mode in ("e2e", "drain"):
        for block in sorted({r.block for r in runs}):
            per = {w: [r for r in runs if (r.mode, r.block, r.writer)
                       == (mode, block, w)] for w in ("ours", "blisswriter")}
            if not per["ours"] and not per["blisswriter"]:
                continue
            for writer in ("ours", "blisswriter"):
                good = [r for r in per[writer] if not r.outcome]
                rate = ([npoints * len(load.channels) / r.wall / 1e6 for r in good]
                        if not load.shape else
                        [npoints * len(load.channels) * load.point_bytes / r.wall / 1e6
                         for r in good])
                rows.append([
                    f"{'end to end' if mode == 'e2e' else 'drain'}, blocks of {block}: "
                    f"{writer}", f"{len(good)}/{len(per[writer])}",
                    spread([r.wall for r in good]),
                    spread([r.tail for r in good]) if mode == "e2e" else "-",
                    spread([r.cpu for r in good]),
                    spread(rate, ".1f" if not load.shape else ".0f"),
                ])
            for attr, what in (("wall", "time"), ("tail", "tail"), ("cpu", "CPU")):
                if attr == "tail" and mode != "e2e":
                    continue
                values = ratios(per["ours"], per["blisswriter"], attr)
                rows.append([f"  ours/blisswriter, {what}", f"{len(values)}",
                             ", ".join(f"{v:.2f}" for v in values) or "-", "", "", ""])
    sent = (f"sent at {load.rate:g} points/s end to end, as fast as possible for the drain"
            if load.rate else "sent as fast as blissdata sends")
    notes = [
        "time: first point sent (end to end) or writer continued (drain) -> file complete;",
        "tail: scan closed -> file complete; CPU: writer's user + system s; median (min-max)",
        "of the runs whose file held every point; ratio rows: each repetition's ours/theirs;",
        f"points {sent}.",
    ]
    print_table(title, ["measure", "runs ok", "time s", "tail s", "CPU s",
                        "MB/s" if load.shape else "Mpts/s"], rows, notes)


# -- the command -----------------------------------------------------------------------


def _describe(load: Load, npoints: int) -> str:
    if load.shape:
        size = "x".join(map(str, load.shape))
        return (f"{len(load.channels)} MCA detectors x {npoints:,} {size}-channel "
                f"{np.dtype(load.dtype).name} spectra at {load.rate:g} Hz")
    return f"{len(load.channels)} {np.dtype(load.dtype).name} channels x {npoints:,} points"


def run_all(url: str, tmp: str, blisswriter: str | None, npoints: int,
            block_sizes: Sequence[int], repeat: int, modes: Sequence[str],
            timeout: float, load: Load = SCALARS) -> Results:
    results = Results()
    data = bench_data(npoints, load=load)
    for block in block_sizes:
        for mode in modes:
            for i in range(repeat):
                order = ("ours", "blisswriter") if i % 2 == 0 else ("blisswriter", "ours")
                for writer in order:
                    if writer == "blisswriter" and blisswriter is None:
                        continue
                    label = f"{writer}_{load.name}_{mode}_{block}_{i}"
                    log(f"{label}: {_describe(load, npoints)}")
                    run, problems = one_run(url, tmp, blisswriter, writer, mode, block,
                                            data, label, timeout, load)
                    results.runs.append(run)
                    results.problems += problems
                    for text in problems:
                        log(f"PROBLEM: {text}")
    return results


def compare(url: str, tmp: str, *, blisswriter: str | None, npoints: int,
            block_sizes: Sequence[int] = (100, 1000), repeat: int = 3,
            modes: Sequence[str] = ("e2e", "drain"), timeout: float = 600.0,
            load: Load = SCALARS) -> Results:
    """Run and print the comparison of ``load`` (the scenario and the command)."""
    command, version = find_blisswriter(blisswriter)
    title = (f"Ours (NexusSessionWriter --data-source blissdata) vs blisswriter "
             f"{version if command else '(missing)'}: {_describe(load, npoints)}, "
             f"medians of {repeat} runs")
    if command is None:
        print(f"\nblisswriter comparison skipped: {version}")
        log(f"blisswriter comparison skipped: {version}")
    results = run_all(url, tmp, command, npoints, block_sizes, repeat, modes, timeout, load)
    table(results, npoints, title, load)
    if command is None:
        print(f"blisswriter rows not measured: {version}")
    return results


def blissdata_redis(stack: ExitStack, tmp: str, given: str | None) -> str:
    """``given`` if it has the modules blissdata needs, else an embedded server with them."""
    import redis

    from nexus_writer_service.embedded import EmbeddedRedis

    if given:
        client = redis.Redis.from_url(given)
        try:
            modules = {m[b"name"] if isinstance(m, dict) else m for m in client.module_list()}
        except redis.RedisError:
            modules = set()
        finally:
            client.close()
        names = {n.decode() if isinstance(n, bytes) else str(n) for n in modules}
        if {"ReJSON", "search"} <= names:
            return given
        log(f"{given} lacks the RedisJSON and RediSearch modules blissdata needs: "
            "starting an embedded server with them")
    server = stack.enter_context(EmbeddedRedis(workdir=os.path.join(tmp, "redis-bd"),
                                               blissdata=True))
    url = f"{server.url}/0"
    from blissdata.redis_engine.store import DataStore

    DataStore(url, init_db=True)
    return url


#: Blocks of the MCA load: the MCA scenario's (50 spectra every 50 ms)
MCA_BLOCK = 50


def scenario(ctx: Any) -> None:
    """Scenario 13 of ``python -m tests.benchmarks``: both loads."""
    results = Results()
    with ExitStack() as stack:
        url = blissdata_redis(stack, ctx.tmp, None)
        for load, npoints, block_sizes in (
                (SCALARS, 100_000 if ctx.quick else 1_000_000, (100, 1000)),
                (MCA, 2000 if ctx.quick else 10_000, (MCA_BLOCK,))):
            found = compare(url, ctx.tmp, blisswriter=ctx.blisswriter, npoints=npoints,
                            block_sizes=block_sizes, repeat=ctx.repeat, load=load)
            results.runs += found.runs
            results.problems += found.problems
    for text in results.problems:
        ctx.problem(text)
    for load, block in ((SCALARS, 100), (SCALARS, 1000), (MCA, MCA_BLOCK)):
        ours, theirs = ([r for r in results.runs if (r.writer, r.mode, r.block, r.load)
                         == (writer, "e2e", block, load.name)]
                        for writer in ("ours", "blisswriter"))
        cpu, tail = ratios(ours, theirs, "cpu"), ratios(ours, theirs, "tail")
        what = (f"13 blisswriter, blocks of {block}" if load is SCALARS
                else "13 blisswriter, MCA at 1 kHz")
        if not cpu:
            ctx.summary.append((what, "not measured", "CPU and tail <= 1/3 of theirs", "-"))
            continue
        figure = (f"ours/theirs CPU {statistics.median(cpu):.2f}, "
                  f"tail {statistics.median(tail):.2f}")
        ctx.verdict(what, figure, "CPU and tail <= 1/3 of theirs",
                    statistics.median(cpu) <= 1 / 3 and statistics.median(tail) <= 1 / 3)


SCENARIOS: dict[int, tuple[str, Callable[[Any], None]]] = {
    13: ("blissdata scans: ours vs ESRF's blisswriter 3.0, 10 channels x 1e6 float64, "
         "blocks of 100 and 1000, and MCA at 1 kHz", scenario),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.bench_blisswriter",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--load", choices=sorted(LOADS), action="append",
                        help="scalars (10 float64 channels) or mca (4 x 4096 uint32 "
                             "spectra at 1 kHz) (repeatable; default: both)")
    parser.add_argument("--points", type=int, default=None, metavar="N",
                        help="points per scalar channel (default 1e6; --quick: 1e5)")
    parser.add_argument("--spectra", type=int, default=None, metavar="N",
                        help="spectra per MCA detector (default 10,000; --quick: 2000)")
    parser.add_argument("--quick", action="store_true",
                        help="1e5 points per channel, 2000 spectra per detector")
    parser.add_argument("--block", type=int, action="append", metavar="B",
                        help="scalar points per block (repeatable; default: 100 and 1000; "
                             f"spectra: {MCA_BLOCK})")
    parser.add_argument("--repeat", type=int, default=3, metavar="N",
                        help="runs of each measure (default 3)")
    parser.add_argument("--mode", choices=("e2e", "drain"), action="append",
                        help="end to end or drain (repeatable; default: both)")
    parser.add_argument("--blisswriter", default=None, metavar="PATH",
                        help="the blisswriter 3.0 command (default: BLISSWRITER, else "
                             "blisswriter on the PATH)")
    parser.add_argument("--redis-url", default=None,
                        help="a Redis with RedisJSON and RediSearch (default: REDIS_URL if "
                             "it has them, else an embedded server)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="S",
                        help="seconds a writer may take to complete a file (default 600)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    npoints = args.points or (100_000 if args.quick else 1_000_000)
    nspectra = args.spectra or (2000 if args.quick else 10_000)
    if min(npoints, nspectra, args.repeat, *(args.block or [1])) < 1:
        build_parser().error("--points, --spectra, --block and --repeat must be positive")
    results = Results()
    with ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench_bw_"))
        url = blissdata_redis(stack, tmp, args.redis_url or os.environ.get("REDIS_URL"))
        for name in args.load or sorted(LOADS, reverse=True):
            load = LOADS[name]
            found = compare(
                url, tmp, blisswriter=args.blisswriter,
                npoints=nspectra if load.shape else npoints,
                block_sizes=(MCA_BLOCK,) if load.shape else (args.block or (100, 1000)),
                repeat=args.repeat, modes=args.mode or ("e2e", "drain"),
                timeout=args.timeout, load=load)
            results.runs += found.runs
            results.problems += found.problems
    if results.problems:
        print(f"{len(results.problems)} problem(s) seen:")
        for text in results.problems:
            print(f"  - {text}")
        return 1
    print("no writer problem seen")
    return 0


if __name__ == "__main__":
    sys.exit(main())
