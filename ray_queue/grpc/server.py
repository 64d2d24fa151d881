"""Start and stop the manager's gRPC server: services, auth, TLS, health, reflection.

``QueueServer(backend, ServerOptions(...)).start()`` serves QueueService and
AutoscalerService over any ``Backend``, plus the standard ``grpc.health.v1.Health``
service (status SERVING while up, NOT_SERVING while stopping) and server reflection (so
``grpcurl`` works without the .proto files). Without any token configured it binds
127.0.0.1 only and says so in the log: an unauthenticated queue must not be reachable
from other machines.
"""

from __future__ import annotations

import logging
import os
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ray_queue.grpc.auth import (
    Authenticator,
    AuthInterceptor,
    Limits,
    Principal,
    describe,
    load_tokens,
)
from ray_queue.grpc.backend import Backend
from ray_queue.grpc.gen import autoscaler_pb2, autoscaler_pb2_grpc, queue_pb2, queue_pb2_grpc
from ray_queue.grpc.service import AutoscalerServicer, QueueServicer, ServiceLimits

logger = logging.getLogger(__name__)

DEFAULT_PORT = 50051
#: Env vars the manager reads to configure its server (all optional).
PORT_ENV = "RAY_QUEUE_GRPC_PORT"
HOST_ENV = "RAY_QUEUE_GRPC_HOST"
TLS_CERT_ENV = "RAY_QUEUE_TLS_CERT"
TLS_KEY_ENV = "RAY_QUEUE_TLS_KEY"
SERVICE_NAMES = (
    queue_pb2.DESCRIPTOR.services_by_name["QueueService"].full_name,
    autoscaler_pb2.DESCRIPTOR.services_by_name["AutoscalerService"].full_name,
)


@dataclass(frozen=True, slots=True)
class ServerOptions:
    #: 0 picks a free port (tests); the chosen one is ``QueueServer.port``.
    port: int = DEFAULT_PORT
    #: Interface to bind when tokens are configured ("0.0.0.0" or "[::]" for all).
    host: str = "0.0.0.0"
    #: Token digest → principal; empty means no auth, loopback only.
    principals: dict[str, Principal] = field(default_factory=dict)
    #: PEM files; both or neither.
    tls_cert_path: str | None = None
    tls_key_path: str | None = None
    #: Threads serving RPCs; each open stream holds one.
    max_workers: int = 64
    #: Concurrent RPCs over all clients; beyond it gRPC answers RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int = 256
    #: Largest request accepted (bytes); bigger ones get RESOURCE_EXHAUSTED from gRPC.
    max_message_bytes: int = 16 * 1024 * 1024
    limits: ServiceLimits = field(default_factory=ServiceLimits)

    @classmethod
    def from_env(cls, *, port: int | None = None, tokens_path: str | None = None) -> ServerOptions:
        """Options from the environment: ``RAY_QUEUE_GRPC_PORT``/``_HOST``, tokens from
        ``RAY_QUEUE_TOKENS_FILE`` or ``RAY_QUEUE_TOKENS``, TLS from ``RAY_QUEUE_TLS_CERT``
        and ``RAY_QUEUE_TLS_KEY``."""
        env = os.environ
        return cls(
            port=port if port is not None else int(env.get(PORT_ENV, DEFAULT_PORT)),
            host=env.get(HOST_ENV, "0.0.0.0"),
            principals=load_tokens(tokens_path),
            tls_cert_path=env.get(TLS_CERT_ENV) or None,
            tls_key_path=env.get(TLS_KEY_ENV) or None,
        )


class QueueServer:
    """One gRPC server over one backend. ``start`` then ``stop``; not restartable."""

    def __init__(self, backend: Backend, options: ServerOptions | None = None) -> None:
        self._options = options or ServerOptions()
        self._backend = backend
        self._server: grpc.Server | None = None
        self._executor: futures.ThreadPoolExecutor | None = None
        self._health = health.HealthServicer()
        self.port = 0
        self.host = ""

    @property
    def address(self) -> str:
        """``host:port`` a client on this machine can dial."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "[::]", "") else self.host
        return f"{host}:{self.port}"

    @property
    def tls(self) -> bool:
        return self._options.tls_cert_path is not None

    def start(self) -> QueueServer:
        o = self._options
        auth = Authenticator(o.principals)
        self._executor = futures.ThreadPoolExecutor(
            max_workers=o.max_workers, thread_name_prefix="ray-queue-grpc"
        )
        server = grpc.server(
            self._executor,
            interceptors=[AuthInterceptor(auth)],
            options=[
                ("grpc.max_receive_message_length", o.max_message_bytes),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=o.max_concurrent_rpcs,
        )
        queue_pb2_grpc.add_QueueServiceServicer_to_server(
            QueueServicer(self._backend, auth, o.limits), server
        )
        autoscaler_pb2_grpc.add_AutoscalerServiceServicer_to_server(
            AutoscalerServicer(self._backend, auth, o.limits), server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        host = o.host if auth.enabled else "127.0.0.1"
        target = f"{host}:{o.port}"
        if (o.tls_cert_path is None) != (o.tls_key_path is None):
            raise ValueError("TLS needs both a certificate and a key (or neither)")
        if o.tls_cert_path is not None and o.tls_key_path is not None:
            credentials = grpc.ssl_server_credentials(
                [(Path(o.tls_key_path).read_bytes(), Path(o.tls_cert_path).read_bytes())]
            )
            self.port = server.add_secure_port(target, credentials)
        else:
            self.port = server.add_insecure_port(target)
        if self.port == 0:
            raise OSError(f"cannot bind the gRPC server to {target}")
        self.host = host
        server.start()
        self._server = server
        for name in ("", *SERVICE_NAMES):
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._log_serving(auth.enabled)
        return self

    def _log_serving(self, authenticated: bool) -> None:
        """One line on how the API is served; a warning when it is open or unencrypted."""
        scheme = "TLS" if self.tls else "plaintext"
        host, principals = self.host, self._options.principals
        if authenticated and not self.tls and host not in ("127.0.0.1", "localhost", "::1"):
            logger.warning(
                "gRPC API without TLS: bearer tokens cross the network in plaintext; "
                "set RAY_QUEUE_TLS_CERT and RAY_QUEUE_TLS_KEY",
                extra={"host": host, "port": self.port},
            )
        if authenticated:
            logger.info(
                "gRPC API serving, bearer tokens required",
                extra={
                    "host": host,
                    "port": self.port,
                    "transport": scheme,
                    "principals": describe(principals),
                },
            )
        else:
            logger.warning(
                "gRPC API WITHOUT authentication: no token configured, so it serves loopback "
                "only; set RAY_QUEUE_TOKENS_FILE or RAY_QUEUE_TOKENS to serve other hosts",
                extra={"host": host, "port": self.port, "transport": scheme},
            )

    def stop(self, grace_s: float = 1.0) -> None:
        """Stop accepting calls, end streams, and wait up to ``grace_s`` for calls in flight."""
        if self._server is None:
            return
        self._health.enter_graceful_shutdown()
        self._server.stop(grace_s).wait(grace_s + 5)
        self._server = None
        close = getattr(self._backend, "close", None)
        if callable(close):  # a backend with threads of its own (ManagerBackend)
            close()
        if self._executor is not None:
            # grpc does not own the pool it was given; its idle threads would linger.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        logger.info("gRPC API stopped", extra={"port": self.port})

    def __enter__(self) -> QueueServer:
        return self if self._server is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m ray_queue.grpc.server --config FILE``: the API over the manager in
    process without Ray (``local_manager``): for trying the CLI, demos and benchmarks. Jobs
    are refused."""
    import argparse
    import signal
    import threading

    from ray_queue.engine.clock import SystemClock
    from ray_queue.engine.config_loader import load_config
    from ray_queue.grpc.local_manager import LocalManager
    from ray_queue.logs import install

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--config", required=True, help="YAML config file")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--tokens", help="token file (default: $RAY_QUEUE_TOKENS_FILE)")
    args = parser.parse_args(argv)
    install(logging.INFO)
    backend = LocalManager(load_config(Path(args.config)), SystemClock())
    server = QueueServer(backend, ServerOptions.from_env(port=args.port, tokens_path=args.tokens))
    server.start()
    print(f"serving on {server.address}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.25):
        backend.tick()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

__all__ = ["DEFAULT_PORT", "Limits", "QueueServer", "ServerOptions"]
