"""One resource per native thread, visible from every thread.

Ownership: each resource belongs to the thread that created it through
:meth:`ThreadResource.get`; the mapping holds only weak references to the
``threading.Thread`` objects, so a resource goes away with its thread. Any thread
may iterate over all live resources. The internal ``threading.Lock`` only guards
the mapping; ``init_resource`` runs outside it.
"""

from __future__ import annotations

import threading
import weakref
from typing import Callable, Generic, Iterator, List, Optional, TypeVar

from ..errors import ArgumentTypeError

T = TypeVar("T")


class ThreadResource(Generic[T]):
    """Create lazily, cache and enumerate one resource per thread.

    ``get`` and ``pop`` act on the calling thread's resource; iteration yields the
    resources of the threads that are still alive. Thread-safe; never blocks
    beyond the call of ``init_resource``.
    """

    def __init__(self, init_resource: Callable[[], T]) -> None:
        if not callable(init_resource):
            raise ArgumentTypeError(
                f"init_resource must be callable, not {type(init_resource).__name__}"
            )
        self._init_resource = init_resource
        self._mutex = threading.Lock()
        self._resources: "weakref.WeakKeyDictionary[threading.Thread, T]" = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> T:
        """The calling thread's resource, created by ``init_resource`` on first use."""
        thread = threading.current_thread()
        with self._mutex:
            try:
                return self._resources[thread]
            except KeyError:
                pass
        resource = self._init_resource()
        with self._mutex:
            return self._resources.setdefault(thread, resource)

    def pop(self, default: Optional[T] = None) -> Optional[T]:
        """Forget the calling thread's resource and return it (``default`` if none)."""
        with self._mutex:
            return self._resources.pop(threading.current_thread(), default)

    def __iter__(self) -> Iterator[T]:
        """Iterate over a snapshot of the resources of all live threads."""
        with self._mutex:
            items = list(self._resources.items())
        live: List[T] = [resource for thread, resource in items if thread.is_alive()]
        return iter(live)

    def __len__(self) -> int:
        with self._mutex:
            return sum(1 for thread in list(self._resources) if thread.is_alive())

    def __repr__(self) -> str:
        return f"<ThreadResource of {self._init_resource!r}: {len(self)} thread(s)>"
