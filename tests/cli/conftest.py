"""The CLI runs as a real subprocess against a real gRPC server (over the real engine)."""

from tests.grpc.conftest import harness, make_harness, no_leaked_threads

__all__ = ["harness", "make_harness", "no_leaked_threads"]
