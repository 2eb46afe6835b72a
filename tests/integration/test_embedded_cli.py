"""The ``nexus-writer-embedded`` command: prints where the server is, stops it on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys

import redis


def test_embedded_redis_command_serves_until_sigterm(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "nexus_writer_service.cli.embedded", "redis",
         "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("REDIS_URL=redis://127.0.0.1:")
        client = redis.Redis.from_url(line.split("=", 1)[1])
        assert client.ping()
        client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
    assert "ready to accept connections" in (tmp_path / "redis.log").read_text().lower()


def test_embedded_redis_command_loads_blissdata_modules(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "nexus_writer_service.cli.embedded", "redis", "--blissdata",
         "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline().strip()
        client = redis.Redis.from_url(line.split("=", 1)[1])
        assert {b"ReJSON", b"search"} <= {m[b"name"] for m in client.module_list()}
        client.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()
        process.wait()
        process.stdout.close()


def test_embedded_command_reports_a_failed_start(tmp_path):
    bad = tmp_path / "bad.conf"
    bad.write_text("no-such-directive yes\n")
    result = subprocess.run(
        [sys.executable, "-m", "nexus_writer_service.cli.embedded", "redis",
         "--workdir", str(tmp_path), "--config-file", str(bad)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert "exited during start-up" in result.stderr
