"""Suite-wide settings.

Managers started by tests serve gRPC and /metrics on free ports rather than the fixed
defaults (50051, 9090), so test clusters started one after another never trip over a
port still held by the previous one. Tests that need a known port pass it explicitly.
"""

from __future__ import annotations

import os

os.environ.setdefault("RAY_QUEUE_GRPC_PORT", "0")
os.environ.setdefault("RAY_QUEUE_METRICS_PORT", "0")
