"""The scan data layer over every kind of Redis URL: password, ACL user, unix socket, TLS.

One embedded server needs a password and has an ACL user and a unix socket; TLS goes
through a test proxy (``tests/tls_proxy.py``). The publisher gets the URL explicitly,
the reader through the ``REDIS_URL`` environment variable.
"""

from __future__ import annotations

import numpy as np
import pytest

from nexus_writer_service.data import EventType, Publisher, get_scan_node
from nexus_writer_service.data.connection import connect
from nexus_writer_service.errors import RedisUnavailableError
from tests.tls_proxy import URL_KINDS, endpoint, secured_redis

WRONG = "Wrong-pw-9876"


@pytest.fixture(scope="module")
def server():
    with secured_redis() as secured:
        yield secured


@pytest.mark.parametrize("kind", URL_KINDS)
def test_scan_published_and_read_back_over(kind, server, monkeypatch):
    with endpoint(kind, server, 2) as (url, proxy):
        with Publisher(f"conn-{kind}", url, lease=2.0, retention=60) as publisher:
            with publisher.create_scan({"title": f"over {kind}"}) as scan:
                scan.add_channel("x", "f8")
                scan.prepare()
                scan.send({"x": [1.0, 2.0]})
                scan.send({"x": [3.0]})
        monkeypatch.setenv("REDIS_URL", url)
        client = connect()
        try:
            node = get_scan_node(scan.key, client=client)
            assert node.info["title"] == f"over {kind}"
            blocks = [data.data for event, n, data in node.walk_events(timeout=10)
                      if event is EventType.NEW_DATA and n.name == "x"]
        finally:
            client.close()
        assert np.concatenate(blocks).tolist() == [1.0, 2.0, 3.0]
        if proxy is not None:
            assert proxy.handshakes >= 2
            assert all(version.startswith("TLSv1") for version in proxy.versions)


@pytest.mark.parametrize("kind", URL_KINDS)
def test_wrong_password_gives_a_clear_error_without_the_password(kind, server):
    with endpoint(kind, server, 2, password=WRONG) as (url, _):
        with Publisher("conn-bad", url) as publisher:
            with pytest.raises(RedisUnavailableError) as info:
                publisher.create_scan({})
    message = str(info.value)
    assert "credentials" in message and WRONG not in message
