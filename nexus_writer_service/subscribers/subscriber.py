"""Process the events of one node of a scan source: the base class of the writers.

Ownership: the thread that calls :meth:`Subscriber.start` (the *start thread*)
owns the subscriber's greenlets; the subscriber owns one native *reader* thread
per run, which iterates the blocking walk of the node and hands every event to
the start thread's hub through a cross-thread :class:`~..concurrency.Queue`. In
parallel mode the consumer runs as a greenlet in a worker
:class:`~..concurrency.Thread` that the caller owns (several subscribers may share
it) or, when none is given, that the subscriber creates and stops itself.

Everything ends through end markers travelling down the pipeline (reader ->
listener -> consumer), so no greenlet is ever killed from another thread: ``stop``
asks the reader to end (what was received is still processed), ``kill`` also marks
the run as killed, so pending events are skipped. The listener greenlet, last to
finish, joins the reader thread, stops an owned worker, sets the final state and
wakes :meth:`Subscriber.join`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, ContextManager, Dict, Iterator, Optional, Tuple, Union

import gevent
import gevent.queue
from gevent import GreenletExit

from ..concurrency import AsyncResult, Event, Queue, Thread
from ..concurrency._timeouts import check_timeout
from ..data.events import EventData, EventType
from ..data.source import StopHandle
from ..errors import ConfigurationError, SubscriberStateError, ThreadStoppedError, WaitTimeout
from ..tuning.priority import lower_this_thread
from ._reader_pause import ReadGate, reader_paused
from .states import SubscriberMode, SubscriberState, check_transition

__all__ = ["Subscriber", "SubscriberEvent"]

logger = logging.getLogger(__name__)

#: One event as the walks yield it: ``(event_type, node, event_data)``.
SubscriberEvent = Tuple[EventType, Any, EventData]

#: Seconds the finishing listener waits for the reader thread and an owned worker.
_JOIN_TIMEOUT = 10.0
#: Bytes of events read but not processed yet above which the reader waits (the rest
#: stays in the source), so a consumer slower than its publisher holds bounded memory.
MAX_BACKLOG_BYTES = 64 << 20
#: Seconds a consumer processes events back to back before it lets the other
#: greenlets of its hub in (see _consume_events).
CONSUMER_SLICE = 0.1
#: A wait for the next event longer than this let the hub run others.
_WAITED = 0.001
_EVENT_OVERHEAD = 256


def _cost(item: Any) -> int:
    """Approximate memory held by one event while it waits to be processed."""
    data = getattr(item[2], "data", None)
    return _EVENT_OVERHEAD + int(getattr(data, "nbytes", 0) or 0)


def _join_cooperatively(thread: threading.Thread, timeout: float) -> None:
    """Wait for ``thread`` to end, at most ``timeout`` seconds, letting the other
    greenlets of the calling hub run meanwhile. A reader thread has put its end marker
    and has only to return, but it may wait for a CPU first (a Tango server runs its
    reader threads at a lower priority): a plain ``join`` would hold the whole hub,
    and the Tango requests it answers, that long."""
    deadline = time.monotonic() + timeout
    while thread.is_alive() and time.monotonic() < deadline:
        gevent.sleep(_WAITED)


class _End:
    """End marker: the reader has nothing more to give (``error`` when it failed)."""

    __slots__ = ("error",)

    def __init__(self, error: Optional[BaseException] = None) -> None:
        self.error = error


_Item = Union[SubscriberEvent, _End]


class _Run:
    """What one start of a subscriber owns; a restart gets a fresh one."""

    def __init__(self) -> None:
        self.stop_reading = Event()
        self.listening = Event()
        self.consumer_done = Event()
        self.finished = Event()
        self.inbox: Queue[_Item] = Queue()
        # cleared while the consumer pauses the reader (see ._reader_pause)
        self.reading_allowed = threading.Event()
        self.reading_allowed.set()
        self.killed = False
        self.stop_requested = False
        # Each counter has one writer: the reader thread, the consumer greenlet.
        self.read_bytes = 0
        self.done_bytes = 0
        self.read_events = 0
        self.done_events = 0
        self.reader: Optional[threading.Thread] = None
        self.listener: Optional[gevent.Greenlet] = None
        self.owned_worker: Optional[Thread] = None
        self.consumer_result: Optional[AsyncResult[Any]] = None


class Subscriber:
    """Listen to the events of ``node`` and process them, in one of three modes.

    ``Subscriber(node, mode="sequential", worker=None, name=None, poll_interval=0.25)``

    * ``node``: a node with a ``walk_events(stop=..., poll_interval=...)`` blocking
      generator: a scan or a session of a scan source (:mod:`..data.source`).
    * ``mode``: a :class:`SubscriberMode` or its value (see there).
    * ``worker``: parallel mode only; a started :class:`~..concurrency.Thread` the
      consumer runs in. It stays the caller's: the subscriber never stops it.
    * ``poll_interval``: how fast the reader notices a stop (seconds).

    Public methods are thread-safe and greenlet-safe. ``start`` must be called from a
    thread whose hub keeps running (any greenlet that waits lets it run). Every wait
    takes a ``timeout`` and raises :class:`~nexus_writer_service.errors.WaitTimeout`
    naming the subscriber when it expires.

    Subclasses override the hooks: :meth:`_walk_events` (reader thread, may block),
    :meth:`_on_start` (start thread, in ``start``), :meth:`_process_event` and
    :meth:`_on_stop` (consumer greenlet). An exception in any hook puts the
    subscriber in FAULT with ``"<ExceptionType>: <message>"`` as ``state_reason``,
    logs the traceback once and ends the run; nothing else is affected.
    """

    def __init__(
        self,
        node: Any,
        mode: Union[SubscriberMode, str] = SubscriberMode.SEQUENTIAL,
        worker: Optional[Thread] = None,
        name: Optional[str] = None,
        poll_interval: float = 0.25,
    ) -> None:
        self._node = node
        self._mode = SubscriberMode(mode)
        if worker is not None and self._mode is not SubscriberMode.PARALLEL:
            raise ConfigurationError(
                f"a worker thread is only used in parallel mode, not in {self._mode.value} mode"
            )
        self._worker = worker
        self._poll_interval = float(check_timeout(poll_interval, "poll_interval") or 0.25)
        self.name = name or f"{type(self).__name__}({getattr(node, 'name', node)!s})"
        self._mutex = threading.Lock()
        self._state = SubscriberState.INIT
        self._state_reason = "created, not started"
        self._fault_reason: Optional[str] = None
        #: the exception of that first fault (its type tells a transient one)
        self._fault_error: Optional[BaseException] = None
        self._started_at: Optional[float] = None
        self._ended_at: Optional[float] = None
        self._run: Optional[_Run] = None

    # -- public API ----------------------------------------------------------

    @property
    def node(self) -> Any:
        """The node listened to (immutable; safe from any thread or greenlet)."""
        return self._node

    @property
    def info(self) -> Dict[str, Any]:
        """A copy of the node's ``info`` dict (empty when the node has none)."""
        return dict(getattr(self._node, "info", None) or {})

    @property
    def mode(self) -> SubscriberMode:
        return self._mode

    @property
    def state(self) -> SubscriberState:
        """Current state (a snapshot). Never blocks."""
        return self._state

    @property
    def state_reason(self) -> str:
        """Why the subscriber is in its state, in words a person can act on."""
        return self._state_reason

    def start(self, wait: bool = False, timeout: Optional[float] = None) -> None:
        """INIT (or a finished OFF/FAULT) -> ON: start listening and processing.

        The greenlets run in the calling thread. With ``wait``, block the calling
        greenlet until the reader is listening, at most ``timeout`` seconds.

        :raises SubscriberStateError: already ON (or still finishing a previous run)
        :raises WaitTimeout: ``wait`` and not listening within ``timeout``
        """
        seconds = check_timeout(timeout)
        with self._mutex:
            check_transition(self._state, SubscriberState.ON, self.name)
            if self._run is not None and not self._run.finished.is_set():
                raise SubscriberStateError(f"{self.name}: the previous run is still finishing")
            run = self._run = _Run()
            self._set_state(SubscriberState.ON, "listening to the node's events")
            self._fault_reason = None
            self._fault_error = None
            self._started_at = time.monotonic()
            self._ended_at = None
        try:
            self._on_start()
            self._launch(run)
        except Exception as exc:
            self._record_fault(exc, "starting")
            self._abort(run)
            if run.listener is None:
                self._finish(run)
            run.listening.send()  # nothing will listen: a waiting caller sees FAULT now
        if wait and not run.listening.wait(seconds):
            raise WaitTimeout(f"{self.name} was not listening within {seconds} s")

    def stop(self, wait: bool = False, timeout: Optional[float] = None) -> None:
        """ON -> OFF, gracefully: stop listening, process what was received, finish.

        Does nothing on a subscriber that already finished. With ``wait``, block
        like :meth:`join`.

        :raises SubscriberStateError: never started (INIT -> OFF)
        """
        self._request(SubscriberState.OFF, kill=False)
        if wait:
            self.join(timeout)

    def kill(self, wait: bool = False, timeout: Optional[float] = None) -> None:
        """ON -> FAULT at once: stop listening and skip the events not yet processed.

        An event being processed is completed (greenlets are never killed from
        another thread); the ``_on_stop`` hook still runs. Does nothing on a
        subscriber that already finished. With ``wait``, block like :meth:`join`.

        :raises SubscriberStateError: never started (INIT -> FAULT)
        """
        self._request(SubscriberState.FAULT, kill=True)
        if wait:
            self.join(timeout)

    def join(self, timeout: Optional[float] = None) -> None:
        """Block the calling greenlet until the subscriber is OFF or FAULT.

        :raises SubscriberStateError: never started
        :raises WaitTimeout: still running after ``timeout`` seconds
        """
        seconds = check_timeout(timeout)
        run = self._run
        if run is None:
            raise SubscriberStateError(f"cannot join {self.name}: it was never started")
        if not run.finished.wait(seconds):
            raise WaitTimeout(
                f"{self.name} is still {self._state.value} after {seconds} s "
                f"({self._state_reason}); stop() or kill() it"
            )

    @property
    def backlog(self) -> tuple[int, int]:
        """``(events, bytes)`` read from the source and not processed yet (a snapshot)."""
        run = self._run
        if run is None:
            return 0, 0
        return run.read_events - run.done_events, max(0, run.read_bytes - run.done_bytes)

    def done(self) -> bool:
        """Whether the last run has finished (state OFF or FAULT). Never blocks."""
        run = self._run
        return run is not None and run.finished.is_set()

    @property
    def ended_at(self) -> Optional[float]:
        """When the last run finished (``time.monotonic()``), None before or while it runs."""
        return self._ended_at

    def duration(self) -> float:
        """Seconds spent listening in the last run (up to now while it runs)."""
        started = self._started_at
        if started is None:
            return 0.0
        ended = self._ended_at
        return (ended if ended is not None else time.monotonic()) - started

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self._mode.value} {self._state.value}>"

    # -- hooks for subclasses ------------------------------------------------

    def _walk_events(self, stop: StopHandle) -> Iterator[SubscriberEvent]:
        """The events to process; runs in the reader thread, may block.

        Must honour ``stop`` (anything with ``is_set()``) within a short time.
        Default: ``self.node.walk_events(stop=stop, poll_interval=...)``.
        """
        events: Iterator[SubscriberEvent] = self._node.walk_events(
            stop=stop, poll_interval=self._poll_interval
        )
        return events

    def _on_start(self) -> None:
        """Called in ``start`` (start thread) before listening begins. Default: nothing."""

    def _process_event(self, event_type: EventType, node: Any, event_data: EventData) -> None:
        """Process one event, in the consumer greenlet. Default: nothing."""

    def _on_stop(self) -> None:
        """Called once per run in the consumer greenlet after the last event, whatever
        ended the run (end of stream, stop, kill, fault). Default: nothing."""

    def _finished_reason(self) -> str:
        """The ``state_reason`` of OFF when the node's event stream ended (called
        once the consumer is done)."""
        return "finished: the node's event stream ended"

    # -- internals -----------------------------------------------------------

    def _set_state(self, state: SubscriberState, reason: str) -> None:
        # Caller holds the mutex.
        check_transition(self._state, state, self.name)
        self._state = state
        self._state_reason = reason

    def _request(self, target: SubscriberState, kill: bool) -> None:
        with self._mutex:
            run = self._run
            if self._state is not SubscriberState.ON or run is None:
                if self._state is SubscriberState.INIT:
                    check_transition(self._state, target, self.name)
                return
            if kill:
                run.killed = True
            else:
                run.stop_requested = True
        if kill:
            self._abort(run)
        else:
            run.stop_reading.send()

    def _record_fault(self, exc: BaseException, where: str) -> None:
        """Keep the first fault of the run as its reason; log its traceback once."""
        reason = f"{type(exc).__name__}: {exc}"
        with self._mutex:
            if self._fault_reason is not None:
                return
            self._fault_reason = f"{reason} (while {where})"
            self._fault_error = exc
        logger.error("%s failed while %s: %s", self.name, where, reason, exc_info=exc)

    def _abort(self, run: _Run) -> None:
        """End the run without processing what is pending. Any thread."""
        run.killed = True
        run.stop_reading.send()
        run.inbox.put(_End())

    def _launch(self, run: _Run) -> None:
        run.reader = threading.Thread(
            target=self._read, args=(run,), name=f"{self.name}-reader", daemon=True
        )
        run.reader.start()
        if self._mode is SubscriberMode.SEQUENTIAL:
            run.listener = gevent.spawn(self._listen_sequential, run)
            return
        if self._mode is SubscriberMode.CONCURRENT:
            local: gevent.queue.Queue[_Item] = gevent.queue.Queue()
            gevent.spawn(self._consume, run, local.get)
            run.listener = gevent.spawn(self._forward, run, local.put)
            return
        worker = self._worker
        if worker is None:
            worker = run.owned_worker = Thread(name=f"{self.name}-consumer")
            worker.start(timeout=_JOIN_TIMEOUT)
        crossing: Queue[_Item] = Queue()
        run.consumer_result = worker.spawn(self._consume, run, crossing.get)
        if run.consumer_result.ready() and not run.consumer_result.successful():
            raise ThreadStoppedError(f"{worker.name} does not accept work: it is stopped")
        run.listener = gevent.spawn(self._forward, run, crossing.put)

    def _read(self, run: _Run) -> None:
        """Reader thread: iterate the blocking walk into the inbox, then an end marker."""
        lower_this_thread()
        end = _End()
        events: Optional[Iterator[SubscriberEvent]] = None
        try:
            events = self._walk_events(ReadGate(run))
            run.listening.send()
            for event in events:
                run.read_bytes += _cost(event)
                run.read_events += 1
                run.inbox.put(event)
                if run.killed:
                    break
                self._hold_back(run)
        except Exception as exc:
            end = _End(exc)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
            run.listening.send()
            run.inbox.put(end)

    def _hold_back(self, run: _Run) -> None:
        """Reader thread: wait while the backlog exceeds :data:`MAX_BACKLOG_BYTES`."""
        while (run.read_bytes - run.done_bytes > MAX_BACKLOG_BYTES and not run.killed
               and not run.stop_reading.is_set() and not run.consumer_done.is_set()):
            time.sleep(0.002)

    def _reader_paused(self) -> ContextManager[None]:
        """Consumer: inside, the reader thread reads nothing more from the source (see
        :mod:`._reader_pause` for why). A stop or kill is still seen at once. Not
        nested: an inner use does nothing."""
        return reader_paused(self._run)

    def _listen_sequential(self, run: _Run) -> None:
        """Sequential mode: one greenlet listens and consumes."""
        try:
            self._consume(run, run.inbox.get)
        finally:
            self._finish(run)

    def _forward(self, run: _Run, put: Any) -> None:
        """Listener greenlet of the concurrent and parallel modes."""
        try:
            while True:
                item = run.inbox.get()
                put(item)
                if isinstance(item, _End):
                    break
        finally:
            self._finish(run)

    def _consume(self, run: _Run, get: Any) -> None:
        """Consumer greenlet: process events until an end marker, then ``_on_stop``."""
        try:
            self._consume_events(run, get)
            try:
                self._on_stop()
            except Exception as exc:
                self._record_fault(exc, "finishing")
        except GreenletExit:
            interrupted = ThreadStoppedError(
                f"the consumer of {self.name} was interrupted: its thread stopped"
            )
            self._record_fault(interrupted, "processing events")
            run.killed = True
            raise
        finally:
            run.consumer_done.send()

    def _consume_events(self, run: _Run, get: Any) -> None:
        """Process events as they come. A consumer with events waiting one after the
        other lets the other greenlets of its hub in after :data:`CONSUMER_SLICE`
        seconds (the scans of a session share one worker thread)."""
        turn = time.monotonic()
        while True:
            asked = time.monotonic()
            if asked - turn > CONSUMER_SLICE:
                gevent.idle()
                turn = asked = time.monotonic()
            item = get()
            got = time.monotonic()
            if got - asked > _WAITED:  # the hub ran others while this one waited
                turn = got
            if isinstance(item, _End):
                if item.error is not None:
                    self._record_fault(item.error, "reading events")
                return
            run.done_bytes += _cost(item)
            run.done_events += 1
            if run.killed:
                continue
            try:
                self._process_event(*item)
            except Exception as exc:
                self._record_fault(exc, f"processing {item[0].value} of {item[1]!r}")
                self._abort(run)
                return

    def _finish(self, run: _Run) -> None:
        """In the start thread, once the listener is done: clean up, final state."""
        while run.listener is not None and not run.consumer_done.wait(0.5):
            result = run.consumer_result
            if result is not None and result.ready() and not run.consumer_done.is_set():
                self._record_fault(
                    ThreadStoppedError(f"the worker thread of {self.name} stopped its consumer"),
                    "processing events",
                )
                break
        if run.reader is not None:
            run.stop_reading.send()
            _join_cooperatively(run.reader, _JOIN_TIMEOUT)
        if run.owned_worker is not None:
            try:
                run.owned_worker.stop(timeout=_JOIN_TIMEOUT)
            except WaitTimeout:
                logger.error("%s: its consumer thread did not stop", self.name)
        with self._mutex:
            if self._fault_reason is not None:
                self._set_state(SubscriberState.FAULT, self._fault_reason)
            elif run.killed:
                self._set_state(SubscriberState.FAULT, "killed on request")
            elif run.stop_requested:
                self._set_state(SubscriberState.OFF, "stopped on request")
            else:
                self._set_state(SubscriberState.OFF, self._finished_reason())
            self._ended_at = time.monotonic()
        run.finished.send()
