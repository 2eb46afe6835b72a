"""A TLS terminating proxy for tests: clients speak TLS to it, it speaks plain TCP on.

The embedded Valkey server has no TLS support, so tests of ``rediss://`` URLs put this
proxy in front of it::

    with TLSProxy(("127.0.0.1", redis_port)) as proxy:
        url = f"rediss://127.0.0.1:{proxy.port}/0?ssl_ca_certs={proxy.ca_file}"

The certificates come from ``trustme`` (a throw-away CA, and a server certificate for
127.0.0.1 and localhost). One thread runs an asyncio loop that accepts TLS clients on
127.0.0.1 and pumps bytes both ways; :meth:`stop` closes every connection, stops the
loop and joins the thread. ``handshakes`` counts the completed TLS handshakes and
``versions`` lists their protocol versions: a test reads them to know its client
really went through TLS.

:func:`secured_redis` starts an embedded server that needs a password, with an ACL
user and a unix socket too, and :func:`endpoint` gives the URL of one way in
(``password``, ``acl``, ``unix`` or ``tls``, the last through a :class:`TLSProxy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import shutil
import ssl
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Iterator

import redis
import trustme

__all__ = ["TLSProxy", "SecuredRedis", "secured_redis", "endpoint", "URL_KINDS",
           "PASSWORD", "ACL_USER", "ACL_PASSWORD"]

PASSWORD = "s3cret-Default-pw"
ACL_USER = "alice"
ACL_PASSWORD = "Alice-acl-pw-42"
URL_KINDS = ("password", "acl", "unix", "tls")


@dataclasses.dataclass
class SecuredRedis:
    port: int
    socket_path: str


@contextlib.contextmanager
def secured_redis() -> Iterator[SecuredRedis]:
    """An embedded server with ``requirepass``, the ACL user alice, and a unix socket."""
    from nexus_writer_service.embedded import EmbeddedRedis

    # a short directory: unix socket paths are limited to about 100 characters
    sock_dir = tempfile.mkdtemp(prefix="chs-", dir="/tmp")
    socket_path = os.path.join(sock_dir, "redis.sock")
    server = EmbeddedRedis(config={"requirepass": PASSWORD, "unixsocket": socket_path,
                                   "unixsocketperm": "700"})
    try:
        server.start()
        assert server.port is not None
        admin = redis.Redis(host="127.0.0.1", port=server.port, password=PASSWORD)
        try:
            admin.execute_command("ACL", "SETUSER", ACL_USER, "on", f">{ACL_PASSWORD}",
                                  "~*", "&*", "+@all")
        finally:
            admin.close()
        yield SecuredRedis(server.port, socket_path)
    finally:
        server.cleanup()
        shutil.rmtree(sock_dir, ignore_errors=True)


@contextlib.contextmanager
def endpoint(kind: str, server: SecuredRedis, db: int,
             password: str | None = None) -> Iterator[tuple[str, "TLSProxy | None"]]:
    """``(url, proxy)`` for database ``db`` of ``server``, reached the ``kind`` way.

    ``password`` replaces the right one (to test refusals). For ``tls`` the proxy is
    running inside the block and stopped after it.
    """
    port = server.port
    if kind == "password":
        yield f"redis://:{password or PASSWORD}@127.0.0.1:{port}/{db}", None
    elif kind == "acl":
        yield f"redis://{ACL_USER}:{password or ACL_PASSWORD}@127.0.0.1:{port}/{db}", None
    elif kind == "unix":
        yield f"unix://{server.socket_path}?db={db}&password={password or PASSWORD}", None
    elif kind == "tls":
        with TLSProxy(("127.0.0.1", port)) as proxy:
            yield (f"rediss://{ACL_USER}:{password or ACL_PASSWORD}@127.0.0.1:{proxy.port}/{db}"
                   f"?ssl_ca_certs={proxy.ca_file}&ssl_cert_reqs=required"), proxy
    else:
        raise ValueError(f"unknown URL kind {kind!r}")


class TLSProxy:
    """TLS on ``127.0.0.1:<port>`` in front of the plain TCP server at ``backend``."""

    def __init__(self, backend: tuple[str, int]) -> None:
        self.backend = backend
        self.port = 0
        self.handshakes = 0
        self.versions: list[str] = []
        self._dir = Path(tempfile.mkdtemp(prefix="tls-proxy-"))
        ca = trustme.CA()
        self.ca_file = str(self._dir / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(self._context)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    def start(self) -> "TLSProxy":
        self._thread = threading.Thread(target=self._run, name="tls-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            self.stop()
            raise RuntimeError(f"TLS proxy did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        """Close every connection, stop the loop and join its thread (idempotent)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # loop already closed
                pass
        if self._thread is not None:
            self._thread.join(10)
            if self._thread.is_alive():
                raise RuntimeError("TLS proxy thread did not stop")
            self._thread = None
        for name in os.listdir(self._dir):
            os.unlink(self._dir / name)
        os.rmdir(self._dir)

    def __enter__(self) -> "TLSProxy":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- proxy thread -----------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.set_exception_handler(lambda _loop, _context: None)  # refused handshakes
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._context)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        ssl_object = writer.get_extra_info("ssl_object")
        self.handshakes += 1
        self.versions.append(ssl_object.version() if ssl_object is not None else "none")
        backend_writer: asyncio.StreamWriter | None = None
        try:
            backend_reader, backend_writer = await asyncio.open_connection(*self.backend)
            pumps = [asyncio.ensure_future(self._pump(reader, backend_writer)),
                     asyncio.ensure_future(self._pump(backend_reader, writer))]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for stream in (backend_writer, writer):
                if stream is not None:
                    stream.close()
                    try:
                        await stream.wait_closed()
                    except (OSError, asyncio.CancelledError):
                        pass
            self._tasks.discard(task)

    @staticmethod
    async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await source.read(65536)
                if not data:
                    return
                sink.write(data)
                await sink.drain()
        except OSError:
            return
