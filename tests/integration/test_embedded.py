"""The embedded Redis and Tango database servers: start, readiness, clean stop."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from nexus_writer_service.embedded import EmbeddedRedis, EmbeddedTangoDatabase
from nexus_writer_service.errors import EmbeddedServerError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_embedded_redis_tcp_start_stop(tmp_path):
    server = EmbeddedRedis(workdir=tmp_path)
    with server:
        client = redis.Redis.from_url(server.url)
        assert client.ping()
        assert client.config_get("appendonly")["appendonly"] == "no"
        assert client.config_get("save")["save"] == ""
        pid = server.pid
        client.close()
    assert pid is not None and not _pid_alive(pid)
    assert server.log_path.exists()
    server.stop()  # idempotent


def test_embedded_redis_unix_socket(tmp_path):
    sock = tmp_path / "r.sock"
    with EmbeddedRedis(unix_socket=sock, workdir=tmp_path) as server:
        assert server.url == f"unix://{sock}"
        client = redis.Redis.from_url(server.url)
        assert client.set("k", b"v") and client.get("k") == b"v"
        client.close()


def test_embedded_redis_bad_config_names_log(tmp_path):
    server = EmbeddedRedis(workdir=tmp_path, config={"no-such-directive": "1"})
    with pytest.raises(EmbeddedServerError, match="redis.log"):
        server.start()
    assert not server.running


def test_embedded_redis_loads_the_modules_blissdata_needs(tmp_path):
    from blissdata.redis_engine.store import DataStore

    with EmbeddedRedis(workdir=tmp_path, blissdata=True) as server:
        client = redis.Redis.from_url(server.url)
        names = {module[b"name"] for module in client.module_list()}
        assert {b"ReJSON", b"search"} <= names
        DataStore(server.url, init_db=True)  # refuses a server without them
        client.close()


def test_embedded_redis_without_modules_is_refused_by_blissdata(tmp_path):
    from blissdata.redis_engine.store import DataStore

    with EmbeddedRedis(workdir=tmp_path) as server:
        # blissdata >= 2.4.5 names the missing module; older ones fail on its first command
        with pytest.raises((RuntimeError, redis.ResponseError)):
            DataStore(server.url, init_db=True)


def test_embedded_redis_url_before_start_is_clear(tmp_path):
    with pytest.raises(EmbeddedServerError, match="start"):
        EmbeddedRedis(workdir=tmp_path).url


@pytest.mark.slow
def test_tango_database_registers_device_with_properties(tango_database):
    tango = pytest.importorskip("tango")
    host, port = tango_database.tango_host.split(":")
    db = tango.Database(host, int(port))
    info = tango.DbDevInfo()
    info.name = "id00/nexuswriter/session1"
    info._class = "NexusWriter"
    info.server = "NexusWriterService/testing"
    db.add_device(info)
    db.put_device_property(
        info.name,
        {"session": ["session1"], "keepshape": ["true"], "allowed_roots": ["/data", "/tmp"]},
    )
    props = db.get_device_property(info.name, ["session", "keepshape", "allowed_roots"])
    assert list(props["session"]) == ["session1"]
    assert list(props["keepshape"]) == ["true"]
    assert list(props["allowed_roots"]) == ["/data", "/tmp"]
    assert "id00/nexuswriter/session1" in list(
        db.get_device_name("NexusWriterService/testing", "NexusWriter")
    )


def test_tango_database_stops_its_own_process(tmp_path):
    database = EmbeddedTangoDatabase(workdir=tmp_path)
    database.start()
    pid = database.pid
    assert pid is not None and _pid_alive(pid)
    database.cleanup()
    assert not _pid_alive(pid)


def test_shipped_redis_conf_starts_with_append_only_file(tmp_path):
    conf = Path(__file__).parents[2] / "conf" / "redis.conf"
    with EmbeddedRedis(workdir=tmp_path, config_file=str(conf)) as server:
        client = redis.Redis.from_url(server.url)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        client.close()
