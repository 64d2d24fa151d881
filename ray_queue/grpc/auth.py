"""Who may call what: bearer tokens, roles, and per-token flood limits.

Ray's own endpoints have no authentication, so the gRPC server is the only door to the
queue that checks who is knocking (docs/contract.md §5). Each request carries
``authorization: Bearer <token>``; the token maps to a ``Principal`` with a role:

- ``admin``: everything, including config;
- ``tenant``: submit to and read only its listed Queues (and their ClusterQueues);
- ``autoscaler``: the AutoscalerService (demand stream, admission check reports).

Tokens come from a YAML/JSON file or an environment variable and are kept only as
SHA-256 digests. The interceptor answers UNAUTHENTICATED, PERMISSION_DENIED (role) and
RESOURCE_EXHAUSTED (rate or concurrency over the token's limits) before the service runs;
queue-level checks need the request body, so the service asks ``Authenticator.principal``
and ``Principal.may_use_queue``. With no tokens configured every caller is an anonymous
admin, and the server only listens on loopback (see ``server.py``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import grpc
import yaml

logger = logging.getLogger(__name__)

#: Env var holding token definitions as YAML/JSON text (e.g. from a Kubernetes Secret).
TOKENS_ENV = "RAY_QUEUE_TOKENS"
#: Env var naming a token file.
TOKENS_FILE_ENV = "RAY_QUEUE_TOKENS_FILE"

_QUEUE_SERVICE = "/ray_queue.v1.QueueService/"
_AUTOSCALER_SERVICE = "/ray_queue.v1.AutoscalerService/"
#: Probes and schema discovery need no token: they reveal nothing about queues.
_PUBLIC_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")
_ADMIN_ONLY = frozenset({_QUEUE_SERVICE + "GetConfig", _QUEUE_SERVICE + "ApplyConfig"})


class Role(str, Enum):
    ADMIN = "admin"
    TENANT = "tenant"
    AUTOSCALER = "autoscaler"


class AuthConfigError(ValueError):
    """The token file or variable is malformed; the message says where."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-token flood protection. A client over either limit gets RESOURCE_EXHAUSTED."""

    #: Sustained requests per second (token bucket refill rate).
    rate_per_s: float = 500.0
    #: Requests allowed in a burst above the sustained rate.
    burst: int = 1000
    #: Unary calls being served at once for this token: a quarter of the server's 64
    #: threads, so one token's slow calls cannot take them all from the others.
    max_in_flight: int = 16
    #: Open streams (WatchWorkloads, WatchDemand) at once for this token.
    max_streams: int = 8


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    role: Role
    #: Queues a tenant may use (ignored for other roles).
    queues: frozenset[str] = frozenset()
    limits: Limits = field(default_factory=Limits)
    #: Its token's digest (set by ``Authenticator``): what its flood limits are counted
    #: by, since names (which default to the role) need not be unique.
    key: str = ""

    def may_use_queue(self, queue: str) -> bool:
        return self.role is Role.ADMIN or (self.role is Role.TENANT and queue in self.queues)

    @property
    def sees_all_queues(self) -> bool:
        return self.role is Role.ADMIN

    def may_call(self, method: str) -> bool:
        if self.role is Role.ADMIN:
            return True
        if self.role is Role.TENANT:
            return method.startswith(_QUEUE_SERVICE) and method not in _ADMIN_ONLY
        return method.startswith(_AUTOSCALER_SERVICE)


#: Who every caller is when no tokens are configured (loopback only).
ANONYMOUS_ADMIN = Principal(
    "anonymous",
    Role.ADMIN,
    limits=Limits(rate_per_s=1e9, burst=10**9, max_in_flight=64),
    key="anonymous",
)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_tokens(text: str, *, origin: str, limits: Limits | None = None) -> dict[str, Principal]:
    """Token definitions (YAML or JSON) → digest → principal.

    Accepted shapes (``tokens:`` may be a list or a mapping keyed by token)::

        tokens:
          - token: "s3cret"          # or token_sha256: "<hex digest>"
            role: tenant
            name: team-a             # defaults to the role
            queues: [team-a]         # tenants only
            limits: {rate_per_s: 50, burst: 100, max_in_flight: 8}
          "0ther": {role: admin}
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise AuthConfigError(f"{origin}: not YAML/JSON: {e}") from e
    if isinstance(data, Mapping):
        data = data.get("tokens", data)
    entries: list[tuple[str, Any]] = []
    if isinstance(data, Mapping):
        entries = [(f"tokens[{k!r}]", {**(v or {}), "token": k}) for k, v in data.items()]
    elif isinstance(data, list):
        entries = [(f"tokens[{i}]", v) for i, v in enumerate(data)]
    else:
        raise AuthConfigError(f"{origin}: expected 'tokens:' with a list or mapping")
    if not entries:
        # No tokens means an open server (anonymous admin on loopback): that must be
        # chosen by leaving tokens unset, never by a list that came out empty.
        raise AuthConfigError(
            f"{origin}: no tokens defined; give at least one, or unset it to serve loopback "
            "without authentication"
        )
    out: dict[str, Principal] = {}
    for where, entry in entries:
        where = f"{origin}: {where}"
        if not isinstance(entry, Mapping):
            raise AuthConfigError(f"{where}: expected a mapping with token and role")
        token, hashed = entry.get("token"), entry.get("token_sha256")
        if bool(token) == bool(hashed):
            raise AuthConfigError(f"{where}: give exactly one of token, token_sha256")
        if token is not None and (not isinstance(token, str) or len(token) < 8):
            raise AuthConfigError(f"{where}.token: must be a string of at least 8 characters")
        try:
            role = Role(entry.get("role"))
        except ValueError:
            raise AuthConfigError(
                f"{where}.role: must be one of {', '.join(r.value for r in Role)}"
            ) from None
        queues = entry.get("queues") or []
        if not isinstance(queues, list) or not all(isinstance(q, str) for q in queues):
            raise AuthConfigError(f"{where}.queues: must be a list of Queue names")
        if role is Role.TENANT and not queues:
            raise AuthConfigError(f"{where}.queues: a tenant needs at least one Queue")
        try:
            token_limits = Limits(**{**_asdict(limits or Limits()), **(entry.get("limits") or {})})
        except TypeError as e:
            raise AuthConfigError(f"{where}.limits: {e}") from None
        key = digest(token) if token else str(hashed).lower()
        out[key] = Principal(
            str(entry.get("name") or role.value), role, frozenset(queues), token_limits
        )
    return out


def _asdict(limits: Limits) -> dict[str, Any]:
    return {
        "rate_per_s": limits.rate_per_s,
        "burst": limits.burst,
        "max_in_flight": limits.max_in_flight,
        "max_streams": limits.max_streams,
    }


def load_tokens(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    limits: Limits | None = None,
) -> dict[str, Principal]:
    """Tokens from ``path``, else ``$RAY_QUEUE_TOKENS_FILE``, else ``$RAY_QUEUE_TOKENS``."""
    env = os.environ if environ is None else environ
    file = path or env.get(TOKENS_FILE_ENV)
    if file:
        try:
            if Path(file).stat().st_mode & 0o077:
                logger.warning("token file %s is readable by other users; chmod 600 it", file)
            text = Path(file).read_text(encoding="utf-8")
        except OSError as e:
            raise AuthConfigError(f"cannot read token file {file}: {e.strerror or e}") from e
        return parse_tokens(text, origin=str(file), limits=limits)
    if env.get(TOKENS_ENV):
        return parse_tokens(env[TOKENS_ENV], origin=f"${TOKENS_ENV}", limits=limits)
    return {}


class _Bucket:
    def __init__(self, limits: Limits) -> None:
        self.tokens = float(limits.burst)
        self.stamp = time.monotonic()
        self.in_flight = 0
        self.streams = 0


class Authenticator:
    """Token lookup and flood accounting. Thread-safe."""

    def __init__(self, principals: Mapping[str, Principal]) -> None:
        """``principals``: token digest → who holds that token."""
        self._principals = {key: replace(p, key=key) for key, p in principals.items()}
        self._lock = threading.Lock()
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return bool(self._principals)

    def authenticate(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> Principal:
        """The caller, or ``PermissionError`` with the reason (→ UNAUTHENTICATED)."""
        if not self._principals:
            return ANONYMOUS_ADMIN
        header = next((v for k, v in metadata or () if k == "authorization"), None)
        if header is None:
            raise PermissionError("no authorization header; send 'authorization: Bearer <token>'")
        value = header.decode() if isinstance(header, bytes) else header
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise PermissionError("the authorization header must be 'Bearer <token>'")
        principal = self._principals.get(digest(token.strip()))
        if principal is None:
            raise PermissionError("unknown token")
        return principal

    def principal(self, context: grpc.ServicerContext) -> Principal:
        """The authenticated caller of a running RPC (the interceptor already checked it)."""
        return self.authenticate(context.invocation_metadata())

    def admit(self, principal: Principal, *, stream: bool) -> str | None:
        """Count one call in; returns why it is refused (→ RESOURCE_EXHAUSTED) or None."""
        limits = principal.limits
        with self._lock:
            bucket = self._buckets.setdefault(principal.key, _Bucket(limits))
            now = time.monotonic()
            bucket.tokens = min(
                limits.burst, bucket.tokens + (now - bucket.stamp) * limits.rate_per_s
            )
            bucket.stamp = now
            if bucket.tokens < 1:
                return f"rate limit of {limits.rate_per_s:g} requests/s exceeded; retry later"
            if stream and bucket.streams >= limits.max_streams:
                return f"at most {limits.max_streams} open streams per token"
            if not stream and bucket.in_flight >= limits.max_in_flight:
                return f"at most {limits.max_in_flight} concurrent requests per token"
            bucket.tokens -= 1
            if stream:
                bucket.streams += 1
            else:
                bucket.in_flight += 1
            return None

    def release(self, principal: Principal, *, stream: bool) -> None:
        with self._lock:
            bucket = self._buckets[principal.key]
            if stream:
                bucket.streams -= 1
            else:
                bucket.in_flight -= 1


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


def _refusal(handler: grpc.RpcMethodHandler, code: grpc.StatusCode, message: str) -> Any:
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
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = continuation(handler_call_details)
        method: str = handler_call_details.method  # type: ignore[attr-defined]
        if handler is None or method.startswith(_PUBLIC_PREFIXES):
            return handler
        if handler.request_streaming:
            return handler  # we define no client-streaming methods
        try:
            principal = self._auth.authenticate(
                handler_call_details.invocation_metadata  # type: ignore[attr-defined]
            )
        except PermissionError as e:
            return _refusal(handler, grpc.StatusCode.UNAUTHENTICATED, str(e))
        if not principal.may_call(method):
            return _refusal(
                handler,
                grpc.StatusCode.PERMISSION_DENIED,
                f"role {principal.role.value} ({principal.name}) may not call {method}",
            )
        stream = bool(handler.response_streaming)
        refused = self._auth.admit(principal, stream=stream)
        if refused is not None:
            return _refusal(handler, grpc.StatusCode.RESOURCE_EXHAUSTED, refused)
        return self._counted(handler, principal, stream)

    def _counted(self, handler: grpc.RpcMethodHandler, principal: Principal, stream: bool) -> Any:
        auth = self._auth

        def release_when_done(context: grpc.ServicerContext) -> None:
            # The callback runs however the RPC ends (done, failed, cancelled mid-stream).
            if not context.add_callback(lambda: auth.release(principal, stream=stream)):
                auth.release(principal, stream=stream)

        if stream:
            inner_stream = handler.unary_stream

            def serve_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                release_when_done(context)
                _refuse_malformed(request, context)
                return inner_stream(request, context)  # type: ignore[no-any-return]

            return grpc.unary_stream_rpc_method_handler(
                serve_stream, _lenient(handler.request_deserializer), handler.response_serializer
            )
        inner = handler.unary_unary

        def serve(request: Any, context: grpc.ServicerContext) -> Any:
            release_when_done(context)
            _refuse_malformed(request, context)
            return inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            serve, _lenient(handler.request_deserializer), handler.response_serializer
        )


def describe(principals: Mapping[str, Principal]) -> str:
    """For the log: how many tokens of each role (never the tokens)."""
    counts: dict[str, int] = {}
    for p in principals.values():
        counts[p.role.value] = counts.get(p.role.value, 0) + 1
    return json.dumps(counts, sort_keys=True)
