"""The gRPC door: bearer tokens on every call, roles per method, per-token flood limits.

Each request carries ``authorization: Bearer <token>``; the token maps to a ``Principal``
(``ray_queue.access.principals``, the table the manager actor checks too). The
interceptor answers UNAUTHENTICATED, PERMISSION_DENIED (role) and RESOURCE_EXHAUSTED
(rate or concurrency over the token's limits) before the service runs; queue-level checks
need the request body, so the service asks ``Authenticator.principal`` and
``Principal.may_use_queue``. With no tokens configured every caller is an anonymous
admin, and the server only listens on loopback (see ``server.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import grpc

from ray_queue.access.principals import (
    ANONYMOUS_ADMIN,
    TOKENS_ENV,
    TOKENS_FILE_ENV,
    AuthConfigError,
    Limits,
    Principal,
    Role,
    TokenTable,
    describe,
    digest,
    load_tokens,
    parse_tokens,
)

__all__ = [
    "ANONYMOUS_ADMIN",
    "TOKENS_ENV",
    "TOKENS_FILE_ENV",
    "AuthConfigError",
    "AuthInterceptor",
    "Authenticator",
    "Limits",
    "Principal",
    "Role",
    "describe",
    "digest",
    "load_tokens",
    "may_call",
    "parse_tokens",
]

_QUEUE_SERVICE = "/ray_queue.v1.QueueService/"
_AUTOSCALER_SERVICE = "/ray_queue.v1.AutoscalerService/"
#: Probes and schema discovery need no token: they reveal nothing about queues.
_PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_ADMIN_ONLY = frozenset({_QUEUE_SERVICE + "GetConfig", _QUEUE_SERVICE + "ApplyConfig"})


def may_call(principal: Principal, method: str) -> bool:
    """Whether ``principal``'s role allows the gRPC ``method`` at all (queues come later)."""
    if principal.role is Role.ADMIN:
        return True
    if principal.role is Role.TENANT:
        return method.startswith(_QUEUE_SERVICE) and method not in _ADMIN_ONLY
    return method.startswith(_AUTOSCALER_SERVICE)


#: Calls whose cost grows with everything the queue holds: one token may run only a few
#: at once, so its lists cannot crowd others' calls out of the server's CPU.
_HEAVY = frozenset({_QUEUE_SERVICE + "ListWorkloads", _QUEUE_SERVICE + "ListPending"})


class CallKind(Enum):
    UNARY = "unary"
    HEAVY = "heavy"  # a unary call in ``_HEAVY``; counted as unary too
    STREAM = "stream"


def call_kind(method: str, *, stream: bool) -> CallKind:
    if stream:
        return CallKind.STREAM
    return CallKind.HEAVY if method in _HEAVY else CallKind.UNARY


class _Bucket:
    def __init__(self, limits: Limits) -> None:
        self.tokens = float(limits.burst)
        self.stamp = time.monotonic()
        self.in_flight = {kind: 0 for kind in CallKind}


class Authenticator:
    """Token lookup from gRPC metadata, and flood accounting. Thread-safe."""

    def __init__(self, principals: Mapping[str, Principal]) -> None:
        """``principals``: token digest → who holds that token."""
        self._table = TokenTable(principals)
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return self._table.enabled

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal:
        """The caller, or ``PermissionError`` with the reason (→ UNAUTHENTICATED)."""
        if not self._table.enabled:
            return ANONYMOUS_ADMIN
        header = next((v for k, v in metadata or () if k == "authorization"), None)
        if header is None:
            raise PermissionError("no authorization header; send 'authorization: Bearer <token>'")
        value = header.decode() if isinstance(header, bytes) else header
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise PermissionError("the authorization header must be 'Bearer <token>'")
        return self._table.lookup(token.strip())

    def principal(self, context: grpc.ServicerContext) -> Principal:
        """The authenticated caller of a running RPC (the interceptor already checked it)."""
        return self.authenticate(context.invocation_metadata())

    def admit(self, principal: Principal, kind: CallKind) -> str | None:
        """Count one call in; returns why it is refused (→ RESOURCE_EXHAUSTED) or None."""
        limits = principal.limits
        with self._lock:
            bucket = self._buckets.setdefault(principal.key, _Bucket(limits))
            now = time.monotonic()
            bucket.tokens = min(
                limits.burst, bucket.tokens + (now - bucket.stamp) * limits.rate_per_s
            )
            bucket.stamp = now
            busy = bucket.in_flight
            if bucket.tokens < 1:
                return f"rate limit of {limits.rate_per_s:g} requests/s exceeded; retry later"
            if kind is CallKind.STREAM and busy[kind] >= limits.max_streams:
                return f"at most {limits.max_streams} open streams per token"
            if kind is not CallKind.STREAM and (
                busy[CallKind.UNARY] + busy[CallKind.HEAVY] >= limits.max_in_flight
            ):
                return f"at most {limits.max_in_flight} concurrent requests per token"
            if kind is CallKind.HEAVY and busy[kind] >= limits.max_heavy_in_flight:
                return (
                    f"at most {limits.max_heavy_in_flight} list calls at once per token; "
                    "wait for one to finish, or narrow it (queue, states, page_size)"
                )
            bucket.tokens -= 1
            busy[kind] += 1
            return None

    def release(self, principal: Principal, kind: CallKind) -> None:
        with self._lock:
            self._buckets[principal.key].in_flight[kind] -= 1


@dataclass(frozen=True, slots=True)
class _Malformed:
    """A request body that did not parse; answered INVALID_ARGUMENT, not gRPC's INTERNAL."""

    error: str


def _lenient(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as e:
            return _Malformed(f"{type(e).__name__}: {e}"[:300])

    return parse


def _refuse_malformed(request: Any, context: grpc.ServicerContext) -> None:
    if isinstance(request, _Malformed):
        context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"request: not a valid message ({request.error})"
        )


if TYPE_CHECKING:
    # Generic only in the stubs: grpc's own class cannot be subscripted at run time.
    _Handler: TypeAlias = grpc.RpcMethodHandler[Any, Any]
_F = TypeVar("_F")


def _behaviour(fn: _F | None) -> _F:
    """The behaviour a handler's streaming flags name: gRPC always sets that one, and we
    pass client-streaming handlers through untouched, so it is there."""
    if fn is None:
        raise TypeError("a gRPC handler without the behaviour its streaming flags name")
    return fn


def _refusal(handler: _Handler, code: grpc.StatusCode, message: str) -> _Handler:
    """A handler of the same shape as ``handler`` that aborts with ``code``."""

    def abort(request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(code, message)

    deserializer = _lenient(handler.request_deserializer)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(
            abort, deserializer, handler.response_serializer
        )
    return grpc.unary_unary_rpc_method_handler(abort, deserializer, handler.response_serializer)


class AuthInterceptor(grpc.ServerInterceptor):
    """Authenticates every call, checks the role, and counts it against the token's limits."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._auth = authenticator

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], _Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> _Handler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(_PUBLIC_PREFIXES):
            return handler
        if handler.request_streaming:
            return handler  # we define no client-streaming methods
        try:
            principal = self._auth.authenticate(handler_call_details.invocation_metadata)
        except PermissionError as e:
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, str(e))
        if not may_call(principal, method):
            return _refusal(
                handler,
                grpc.StatusCode.PERMISSION_DENIED,
                f"role {principal.role.value} ({principal.name}) may not call {method}",
            )
        kind = call_kind(method, stream=bool(handler.response_streaming))
        refused = self._auth.admit(principal, kind)
        if refused is not None:
            return _refusal(handler, grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
        return self._counted(handler, principal, kind)

    def _counted(self, handler: _Handler, principal: Principal, kind: CallKind) -> _Handler:
        auth = self._auth

        def release_when_done(context: grpc.ServicerContext) -> None:
            # The callback runs however the RPC ends (done, failed, cancelled mid-stream).
            if not context.add_callback(lambda: auth.release(principal, kind)):
                auth.release(principal, kind)

        if kind is CallKind.STREAM:
            inner_stream = _behaviour(handler.unary_stream)

            def serve_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                release_when_done(context)
                _refuse_malformed(request, context)
                return inner_stream(request, context)

            return grpc.unary_stream_rpc_method_handler(
                serve_stream, _lenient(handler.request_deserializer), handler.response_serializer
            )
        inner = _behaviour(handler.unary_unary)

        def serve(request: Any, context: grpc.ServicerContext) -> Any:
            release_when_done(context)
            _refuse_malformed(request, context)
            return inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            serve, _lenient(handler.request_deserializer), handler.response_serializer
        )

