"""``python -m ray_queue.grpc.server``: starts with a token file, serves, stops on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ray_queue.engine.model import WorkloadState
from ray_queue.errors import UnauthenticatedError
from ray_queue.grpc.client import QueueClient
from ray_queue.logs import parse
from tests.grpc.conftest import ADMIN_TOKEN, CONFIG_YAML, request


@pytest.mark.timeout(120)
def test_dev_server_runs_and_stops(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(CONFIG_YAML)
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(f"tokens:\n  - {{token: {ADMIN_TOKEN}, role: admin}}\n")
    tokens.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_QUEUE_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ray_queue.grpc.server",
            "--config",
            str(tmp_path / "config.yaml"),
            "--port",
            "0",
            "--tokens",
            str(tokens),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("serving on "), line
        address = line.split()[-1]
        with QueueClient(address, token=ADMIN_TOKEN, timeout_s=10) as client:
            assert client.submit(request("w")).state is WorkloadState.ADMITTED
        with QueueClient(address, timeout_s=10) as anonymous, pytest.raises(UnauthenticatedError):
            anonymous.workloads()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert proc.stderr is not None
        log = proc.stderr.read()
        assert "readable by other users" not in log
        # Its log is logfmt (ray_queue.logs): the serving line, parsed back into fields.
        lines = [parse(line) for line in log.splitlines() if line.startswith("ts=")]
        (serving,) = [f for f in lines if f["msg"] == "gRPC API serving, bearer tokens required"]
        # Run with -m, the server's module is __main__, and so is its logger's name.
        assert (serving["level"], serving["logger"]) == ("info", "__main__")
        assert serving["port"] == address.rpartition(":")[2]
        assert json.loads(serving["principals"]) == {"admin": 1}  # counts, never tokens
        assert any(f["msg"] == "gRPC API stopped" for f in lines)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
