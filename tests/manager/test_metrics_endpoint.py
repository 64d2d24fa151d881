"""Where the manager serves /metrics: loopback unless deployed with tokens, or as told,
or not at all."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from ray_queue.manager.actor import serve_metrics

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("everywhere", "host", "bound"),
    [(False, None, "127.0.0.1"), (True, None, "0.0.0.0"), (True, "127.0.0.1", "127.0.0.1")],
)
def test_metrics_bind_loopback_unless_deployed_or_told(
    everywhere: bool, host: str | None, bound: str
) -> None:
    environ = {"RAY_QUEUE_METRICS_PORT": "0", **({"RAY_QUEUE_METRICS_HOST": host} if host else {})}
    server = serve_metrics(CollectorRegistry(), everywhere=everywhere, environ=environ)
    try:
        address, port = server.server_address[:2]
        assert address == bound
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            assert response.status == 200
    finally:
        server.shutdown()
        server.server_close()


def test_metrics_can_be_turned_off() -> None:
    environ = {"RAY_QUEUE_METRICS_PORT": "off"}
    assert serve_metrics(CollectorRegistry(), everywhere=True, environ=environ) is None


def test_the_manager_process_takes_off_or_a_port() -> None:
    from ray_queue.manager.__main__ import _parse

    assert _parse(["--metrics-port", "off"]).metrics_port == "off"
    assert _parse(["--metrics-port", "9100", "--metrics-host", "10.0.0.5"]).metrics_host
    with pytest.raises(SystemExit):
        _parse(["--metrics-port", "nine"])
