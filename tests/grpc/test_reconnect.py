"""A client that outlives a manager restart finds the new server promptly.

gRPC's channel backs off between reconnection attempts, by default from 1 s growing 1.6
times up to 120 s: after a manager was away for its ~5 s restart, a client (the CLI's
watch, the autoscaler) learnt it was back up to ~4 s later. ``QueueClient`` caps the
back-off at a second.
"""

from __future__ import annotations

import time

import pytest

from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config_loader import load_config
from ray_queue.engine.errors import RayQueueError
from ray_queue.grpc.client import QueueClient
from ray_queue.grpc.local_manager import LocalManager
from ray_queue.grpc.server import QueueServer, ServerOptions
from tests.grpc.conftest import CONFIG_YAML

pytestmark = pytest.mark.timeout(60)

#: How long the server is away: long enough that gRPC's default back-off would be
#: waiting 5-8 s between attempts when it returns.
AWAY_S = 10.0


def _server(port: int) -> QueueServer:
    backend = LocalManager(load_config(CONFIG_YAML), ManualClock(1_000.0))
    return QueueServer(backend, ServerOptions(port=port, host="127.0.0.1")).start()


def _serving(client: QueueClient) -> bool:
    try:
        return client.health() == "SERVING"
    except RayQueueError:
        return False


def test_a_client_finds_a_restarted_server_within_about_a_second() -> None:
    first = _server(0)
    port = first.port
    with QueueClient(f"127.0.0.1:{port}", timeout_s=2) as client:
        assert _serving(client)
        first.stop(grace_s=0)
        # The server is away for AWAY_S, and the client tries to reconnect all along, as a
        # watcher's would: every attempt is refused, and the back-off between them grows.
        assert not client.wait_until_connected(AWAY_S)
        assert not _serving(client)
        second = _server(port)
        try:
            back = time.monotonic()
            assert client.wait_until_connected(30), "the client never found the server"
            found_s = time.monotonic() - back
            assert _serving(client)
        finally:
            second.stop(grace_s=0)
    # Default back-off: the next attempt seconds after the server's return; capped: <= 1 s.
    assert found_s < 2.5, f"the client found the restarted server after {found_s:.1f} s"
