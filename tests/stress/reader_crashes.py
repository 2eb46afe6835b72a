"""How often HDF5 crashes a process reading scan files without locking while they are
written: not a test (a rate, not a verdict), run by hand::

    python -m tests.stress.reader_crashes OUTDIR [--repeat 150] [--readers 2]

A real session writer (command line) writes the loopscans one simulator process
publishes (``--repeat`` scans of ``--npoints`` points, each in its own file and
linked in the dataset collection's master file, as BLISS asks). Meanwhile
``--readers`` processes open the newest scan file and the master file in turn with
``h5py.File(path, "r", locking=False)``, as the reader contract says, list every group
(following the master file's external links), read every attribute and every small
dataset, and close. A reader that dies is started again; its Python stack
(faulthandler) is kept in ``OUTDIR/crash_<n>.txt``. Prints one JSON line: the reads,
the errors met by type (the reader contract names them), and the crashes by signal.
For a native stack, run a reader under ``gdb -batch -ex run -ex bt --args``.

The writer and the simulator are those of the checkout run; to measure another
version, put its package first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from nexus_writer_service.embedded import EmbeddedRedis

SESSION = "stress"

#: argv: scan file pattern, master file, the file whose existence stops it. Prints
#: ``{"n": reads, "errors": {type: count}}`` every few reads and at its end.
READER = r"""
import faulthandler, glob, json, os, sys, time, h5py
faulthandler.enable()
pattern, master, flag = sys.argv[1], sys.argv[2], sys.argv[3]
n, errors = 0, {}
def visit(group, depth=0):
    for name in list(group):
        obj = group.get(name)
        if obj is None:
            continue  # gone since it was listed, or an external link not resolved
        dict(obj.attrs)
        if isinstance(obj, h5py.Group):
            if depth < 6:
                visit(obj, depth + 1)
        elif obj.size < 100000:
            obj[()]
while not os.path.exists(flag):
    files = sorted(glob.glob(pattern), key=os.path.getmtime)
    for path in files[-1:] + ([master] if os.path.exists(master) else []):
        n += 1
        try:
            with h5py.File(path, "r", locking=False) as h5:
                visit(h5)
        except Exception as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
    if not files:
        time.sleep(0.05)
    if n % 20 < 2:
        print(json.dumps({"n": n, "errors": errors}), flush=True)
print(json.dumps({"n": n, "errors": errors}), flush=True)
"""


class Readers:
    """The reader processes, each started again when it dies, until ``stop`` exists."""

    def __init__(self, pattern: str, master: str, stop: Path, count: int, out: Path) -> None:
        self._command = [sys.executable, "-c", READER, pattern, master, str(stop)]
        self._out = out
        self._stop = stop
        self.reads = 0
        self.errors: dict[str, int] = {}
        self.crashes: list[str] = []
        self._live = [self._start() for _ in range(count)]

    def _start(self) -> subprocess.Popen[str]:
        return subprocess.Popen(self._command, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def poll(self) -> bool:
        """Collect the readers that ended; True while some run."""
        for reader in [r for r in self._live if r.poll() is not None]:
            self._live.remove(reader)
            output, errors = reader.communicate()
            lines = output.splitlines()
            seen: dict[str, Any] = json.loads(lines[-1]) if lines else {"n": 0, "errors": {}}
            self.reads += seen["n"]
            for name, count in seen["errors"].items():
                self.errors[name] = self.errors.get(name, 0) + count
            if reader.returncode:
                code = reader.returncode
                self.crashes.append(signal.Signals(-code).name if code < 0 else f"exit {code}")
                (self._out / f"crash_{len(self.crashes)}.txt").write_text(errors)
                if not self._stop.exists():
                    self._live.append(self._start())
        return bool(self._live)


def _writer(redis_url: str, root: Path, log: Path) -> subprocess.Popen[bytes]:
    writer = subprocess.Popen(
        [sys.executable, "-m", "nexus_writer_service.cli.session_writer", SESSION,
         "--redis-url", redis_url, "--allowed-roots", str(root), "--flush-period", "0.05",
         "--required-disk-space", "0", "--recommended-disk-space", "0",
         "--log", "info", "--logfile", str(log), "--nologstdout"])
    while not (log.exists() and "writing session" in log.read_text()):
        if writer.poll() is not None:
            raise RuntimeError(f"the session writer ended: see {log}")
        time.sleep(0.1)
    return writer


def run(out: Path, repeat: int, npoints: int, readers: int) -> dict[str, Any]:
    root, stop = out / "data", out / "stop"
    with EmbeddedRedis(workdir=out / "redis") as redis:
        writer = _writer(redis.url, root, out / "writer.log")
        publisher = subprocess.Popen(
            [str(Path(sys.executable).with_name("nexus-writer-simulate")), "--redis-url",
             redis.url, "--session", SESSION, "--root", str(root), "--scan", "loopscan",
             "--npoints", str(npoints), "--count-time", "0.01", "--repeat", str(repeat),
             "--lease", "10", "--master-files"], stdout=subprocess.DEVNULL)
        pattern = str(root / SESSION / f"{SESSION}_*.h5")
        master = str(root / SESSION / f"ih0000_{SESSION}.h5")
        polling = Readers(pattern, master, stop, readers, out)
        while polling.poll():
            if publisher.poll() is not None or writer.poll() is not None:
                stop.touch()
            time.sleep(0.05)
        writer.send_signal(signal.SIGINT)
        try:
            writer.wait(30)
        except subprocess.TimeoutExpired:
            writer.kill()
            writer.wait()
    return {"scans": repeat, "publisher_exit": publisher.returncode, "reads": polling.reads,
            "crashes": len(polling.crashes), "signals": sorted(set(polling.crashes)),
            "errors": polling.errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path, help="a new directory for files and logs")
    parser.add_argument("--repeat", type=int, default=150, help="scans (default: 150)")
    parser.add_argument("--npoints", type=int, default=100, help="points per scan")
    parser.add_argument("--readers", type=int, default=2, help="reader processes")
    args = parser.parse_args()
    out = args.outdir.resolve()
    out.mkdir(parents=True)
    print(json.dumps(run(out, args.repeat, args.npoints, args.readers)))


if __name__ == "__main__":
    main()
