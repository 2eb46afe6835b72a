"""Publishing scans as BLISS 2.x does, with blissdata's own API (imported by tests).

A scan is created with its identity and scan_info (``DataStore.create_scan``), its
streams are declared with their encoding (``Stream.make_definition`` and
``scan.create_stream``), then ``prepare``, ``start``, ``stream.send`` per block,
``stop``, the end reason and comments put in the scan_info, ``close``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
from blissdata.redis_engine.store import DataStore
from blissdata.streams import StreamDefinition
from blissdata.streams.default import Stream
from blissdata.streams.lima import LimaStream

#: The scan_info of an ascan as BLISS 2.4 hands it to blissdata at the end of a scan
#: (a diode, an MCA and a Lima detector, ESRF data policy).
REFERENCE_SCAN_INFO = Path(__file__).parent / "data" / "bliss_scan_info.json"


def reference_scan_info(filename: str, session: str = "demo", npoints: int = 10
                        ) -> dict[str, Any]:
    """The scan_info of an ascan as BLISS 2.4 creates it (``end_*`` keys, which come at
    the end, removed), saving to ``filename``, without its lima detector."""
    info = json.loads(REFERENCE_SCAN_INFO.read_text())
    for key in ("end_time", "end_reason", "comments"):
        info.pop(key, None)
    positioners = info.get("positioners") or {}
    positioners.pop("positioners_end", None)
    positioners.pop("positioners_dial_end", None)
    chain = info["acquisition_chain"]["axis"]
    chain["images"] = []
    info.get("channels", {}).pop("pilatus:image", None)
    info["session_name"] = session
    info["filename"] = filename
    info["npoints"] = npoints
    info.pop("images_path", None)
    info.pop("nexuswriter", None)
    return info


#: The end time BLISS puts in the scan_info of the scans published here, at CLOSED.
END_TIME = "2026-12-07T09:07:41.252407+00:00"


#: The channels of the reference ascan (without its lima detector): dtype, point shape.
ASCAN_CHANNELS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "axis:samy": (np.float64, ()),
    "timer:elapsed_time": (np.float64, ()),
    "timer:epoch": (np.float64, ()),
    "simulation_diode_sampling_controller:diode": (np.int32, ()),
    "mca1:spectrum_det0": (np.int32, (128,)),
    "mca1:realtime_det0": (np.float64, ()),
    "mca1:trigger_livetime_det0": (np.float64, ()),
    "mca1:icr_det0": (np.float64, ()),
    "mca1:ocr_det0": (np.float64, ()),
    "mca1:deadtime_det0": (np.float64, ()),
}


def ascan_data(npoints: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Values of every :data:`ASCAN_CHANNELS` channel (random, so bit-exactness shows)."""
    rng = np.random.default_rng(seed)
    data: dict[str, np.ndarray] = {}
    for name, (dtype, shape) in ASCAN_CHANNELS.items():
        if np.dtype(dtype).kind == "f":
            data[name] = rng.standard_normal((npoints,) + shape).astype(dtype)
        else:
            data[name] = rng.integers(-2**31, 2**31 - 1, (npoints,) + shape, dtype=dtype)
    return data


def lima_definition(name: str, file_path: str, *, frames_per_file: int,
                    frames_per_acquisition: int, file_offset: int = 0,
                    data_path: str = "/entry_0000/measurement/data", file_format: str = "HDF5",
                    shape: tuple[int, ...] = (6, 5), dtype: Any = np.uint16
                    ) -> StreamDefinition:
    """A lima detector's stream as BLISS declares it (blissdata's lima plugin), saving
    to the printf template ``file_path``."""
    saving = {"file_path": file_path, "data_path": data_path, "file_format": file_format,
              "file_offset": file_offset, "frames_per_file": frames_per_file}
    return LimaStream.make_definition(name, dtype, list(shape), server_url="id00/limaccds/cam",
                                      buffer_max_number=100,
                                      frames_per_acquisition=frames_per_acquisition,
                                      acquisition_offset=0, saving=saving)


class BlissScan:
    """One scan published through blissdata, step by step."""

    def __init__(self, url: str, info: Mapping[str, Any], *, session: str = "demo",
                 name: str = "ascan", number: int = 3,
                 channels: Mapping[str, tuple[Any, tuple[int, ...]]] = ASCAN_CHANNELS,
                 limas: Sequence[StreamDefinition] = ()) -> None:
        self.store = DataStore(url)
        identity = {"name": name, "number": number, "data_policy": "no_policy",
                    "session": session, "path": info.get("filename")}
        self.scan = self.store.create_scan(identity, info=dict(info))
        self.key: str = self.scan.key
        self.streams = {}
        for channel, (dtype, shape) in channels.items():
            unit = (info.get("channels") or {}).get(channel, {}).get("unit")
            extra = {"unit": unit} if unit else {}
            definition = Stream.make_definition(channel, dtype, shape, info=extra)
            self.streams[channel] = self.scan.create_stream(definition)
        for definition in limas:
            self.streams[definition.name] = self.scan.create_stream(definition)

    def lima_status(self, name: str, last_index: int, last_index_saved: int) -> None:
        """What BLISS sends as a lima detector acquires and saves frames."""
        self.streams[name].send({"last_index": last_index,
                                 "last_index_saved": last_index_saved})

    def prepare_and_start(self) -> None:
        self.scan.prepare()
        self.scan.start()

    def send(self, blocks: Mapping[str, np.ndarray]) -> None:
        for channel, data in blocks.items():
            self.streams[channel].send(data)

    def end(self, reason: str = "SUCCESS", comment: str | None = None,
            info: Mapping[str, Any] | None = None) -> None:
        """Stop (seals the streams), then close with ``reason`` as BLISS does; ``info``:
        more scan_info keys BLISS sets at CLOSED (``h5maps``)."""
        self.scan.stop()
        self.scan.info.update(info or {})
        self.scan.info["end_reason"] = reason
        self.scan.info["end_time"] = END_TIME
        positioners = self.scan.info.get("positioners")
        if isinstance(positioners, dict):  # where the motors were at the end
            for kind in ("", "dial_"):
                start = positioners.get(f"positioners_{kind}start") or {}
                positioners[f"positioners_{kind}end"] = {
                    name: value + 0.5 for name, value in start.items()
                    if isinstance(value, (int, float))}
            self.scan.info["positioners"] = positioners
        if comment is not None:
            self.scan.info["comments"] = [{"date": "2026-12-07T09:07:41+00:00",
                                           "message": comment}]
        self.scan.close()


def blocks(data: Mapping[str, np.ndarray], size: int) -> Iterator[dict[str, np.ndarray]]:
    """``data`` in blocks of ``size`` points."""
    npoints = len(next(iter(data.values())))
    for start in range(0, npoints, size):
        yield {name: values[start:start + size] for name, values in data.items()}


def publish(url: str, info: Mapping[str, Any], data: Mapping[str, np.ndarray], *,
            block: int = 7, reason: str = "SUCCESS", **kwargs: Any) -> BlissScan:
    """A whole scan: created, prepared, started, ``data`` sent in blocks, ended."""
    scan = BlissScan(url, info, **kwargs)
    scan.prepare_and_start()
    for part in blocks(data, block):
        scan.send(part)
    scan.end(reason)
    return scan


def sequence_info(filename: str, session: str = "demo") -> dict[str, Any]:
    """The scan_info of a sequence (``ScanSequence``) as BLISS 2.4 creates it: marked
    ``is_scan_sequence``, its ``SUBSCANS`` channel in the group ``subscans``."""
    return {"title": "sequence_of_scans", "type": "sequence", "name": "sequence",
            "session_name": session, "save": True, "data_writer": "nexus",
            "filename": filename, "npoints": 0, "is_scan_sequence": True,
            "acquisition_chain": {"GroupingMaster": {
                "devices": ["GroupingMaster", "channels"],
                "master": {"scalars": [], "spectra": [], "images": []},
                "scalars": [], "spectra": [], "images": []}},
            "channels": {"GroupingMaster:SUBSCANS": {"group": "subscans"}}}


class BlissSequence:
    """A sequence published through blissdata as BLISS's ``ScanSequence`` does: its
    ``GroupingMaster:SUBSCANS`` stream (blissdata's ``scan_sequence`` plugin) gets
    ``{"key", "scan_number"}`` for each scan it runs."""

    def __init__(self, url: str, filename: str, *, number: int, session: str = "demo"
                 ) -> None:
        from blissdata.streams.scan_sequence import ScanStream

        self.store = DataStore(url)
        identity = {"name": "sequence", "number": number, "data_policy": "no_policy",
                    "session": session, "path": filename}
        self.scan = self.store.create_scan(identity, info=sequence_info(filename, session))
        self.key: str = self.scan.key
        self.subscans = self.scan.create_stream(
            ScanStream.make_definition("GroupingMaster:SUBSCANS"))
        self.scan.prepare()
        self.scan.start()

    def add(self, key: Any, number: int) -> None:
        """What BLISS's GroupingMaster emits once a scan of the sequence is prepared."""
        self.subscans.send({"key": key, "scan_number": number})

    def end(self) -> None:
        self.scan.stop()
        self.scan.info["end_reason"] = "SUCCESS"
        self.scan.info["end_time"] = END_TIME
        self.scan.close()


def published(url: str, key: str) -> dict[str, np.ndarray]:
    """Every point blissdata holds for each numeric stream of the scan ``key``, read
    with blissdata's own reader."""
    scan = DataStore(url).load_scan(key)
    return {name: np.asarray(stream[:]) for name, stream in scan.streams.items()
            if getattr(stream, "kind", None) == "array"}


def main(argv: Sequence[str] | None = None) -> None:
    """A BLISS that dies mid-scan, as a process of its own: ``URL FILENAME SESSION
    NPOINTS BLOCK``: publishes an ascan of NPOINTS points (:func:`ascan_data`) in blocks
    of BLOCK points, one every 10 ms, printing ``sent <scan key>`` after the first; then
    waits to be killed (the scan is never closed)."""
    import sys
    import time

    url, filename, session, npoints, block = (argv or sys.argv[1:])[:5]
    scan = BlissScan(url, reference_scan_info(filename, session=session,
                                              npoints=int(npoints)), session=session)
    scan.prepare_and_start()
    for index, part in enumerate(blocks(ascan_data(int(npoints)), int(block))):
        scan.send(part)
        if index == 0:
            print("sent", scan.key, flush=True)
        time.sleep(0.01)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
