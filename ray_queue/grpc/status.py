"""The one table between ray_queue errors and gRPC status codes, both directions.

The server turns a raised ``RayQueueError`` into a status code plus trailing metadata
naming the error class (several classes share a code); the client turns the status back
into the same class, so code behind ``ray_queue.grpc.client`` handles errors exactly as
code calling the manager directly. Errors that exist only on the wire (auth, flooding, a
malformed request) have their own classes here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import grpc

from ray_queue.engine.errors import (
    ConfigError,
    ConfigProblem,
    DuplicateWorkloadError,
    InvalidTransitionError,
    InvalidWorkloadError,
    RayQueueError,
    UnknownPriorityClassError,
    UnknownQueueError,
    UnknownWorkloadError,
    WorkloadRejected,
)
from ray_queue.errors import PermissionDeniedError, UnauthenticatedError
from ray_queue.grpc.backend import JobsUnsupportedError

#: Trailing metadata naming the ray_queue error class.
ERROR_TYPE_KEY = "ray-queue-error"
#: Trailing metadata with a ConfigError's problems, a JSON list of [document, field, message].
CONFIG_PROBLEMS_KEY = "ray-queue-config-problems"


class InvalidRequestError(RayQueueError, ValueError):
    """The request message is malformed; the message names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class RateLimitedError(RayQueueError):
    """Too many requests (or too many at once) for this token; back off and retry."""


class ServerUnavailableError(RayQueueError):
    """The server cannot be reached (wrong address, not started, or restarting)."""


class RemoteError(RayQueueError):
    """The server failed in a way no other error describes (a bug: see its log)."""


#: Error class → status code. Order matters for ``to_status``: subclasses first.
ERROR_CODES: tuple[tuple[type[RayQueueError], grpc.StatusCode], ...] = (
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidWorkloadError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (UnknownQueueError, grpc.StatusCode.NOT_FOUND),
    (UnknownPriorityClassError, grpc.StatusCode.NOT_FOUND),
    (UnknownWorkloadError, grpc.StatusCode.NOT_FOUND),
    (DuplicateWorkloadError, grpc.StatusCode.ALREADY_EXISTS),
    (WorkloadRejected, grpc.StatusCode.FAILED_PRECONDITION),
    (InvalidTransitionError, grpc.StatusCode.FAILED_PRECONDITION),
    (JobsUnsupportedError, grpc.StatusCode.FAILED_PRECONDITION),
    (UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (RateLimitedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ServerUnavailableError, grpc.StatusCode.UNAVAILABLE),
    (RemoteError, grpc.StatusCode.INTERNAL),
)

_BY_NAME: dict[str, type[RayQueueError]] = {cls.__name__: cls for cls, _ in ERROR_CODES}
#: Status code → the class raised when the server did not name one (first listed wins).
_BY_CODE: dict[grpc.StatusCode, type[RayQueueError]] = {}
for _cls, _code in ERROR_CODES:
    _BY_CODE.setdefault(_code, _cls)
_BY_CODE[grpc.StatusCode.INVALID_ARGUMENT] = InvalidRequestError
_BY_CODE[grpc.StatusCode.DEADLINE_EXCEEDED] = ServerUnavailableError


def code_for(error: BaseException) -> grpc.StatusCode:
    for cls, code in ERROR_CODES:
        if isinstance(error, cls):
            return code
    return grpc.StatusCode.INTERNAL


def trailing_metadata(error: RayQueueError) -> tuple[tuple[str, str], ...]:
    """Metadata that lets the client rebuild ``error`` as the same class."""
    name = type(error).__name__ if type(error).__name__ in _BY_NAME else "RemoteError"
    out: list[tuple[str, str]] = [(ERROR_TYPE_KEY, name)]
    if isinstance(error, ConfigError):
        problems = [[p.document, p.field, p.message] for p in error.problems]
        out.append((CONFIG_PROBLEMS_KEY, json.dumps(problems)))
    return tuple(out)


def from_status(
    code: grpc.StatusCode, details: str, metadata: Sequence[tuple[str, str | bytes]] = ()
) -> RayQueueError:
    """The ray_queue error a failed call stands for."""
    meta = {k: v.decode() if isinstance(v, bytes) else v for k, v in metadata}
    cls = _BY_NAME.get(meta.get(ERROR_TYPE_KEY, ""))
    if cls is ConfigError or (cls is None and CONFIG_PROBLEMS_KEY in meta):
        problems = _problems(meta.get(CONFIG_PROBLEMS_KEY, "[]"), details)
        return ConfigError(problems)
    if cls is None:
        cls = _BY_CODE.get(code, RemoteError)
    if cls is InvalidRequestError:
        return InvalidRequestError("", details)
    if cls is RemoteError:
        return RemoteError(f"{code.name}: {details}")
    return cls(details)


def _problems(text: str, details: str) -> list[ConfigProblem]:
    try:
        raw = json.loads(text)
        problems = [ConfigProblem(str(d), str(f), str(m)) for d, f, m in raw]
    except (ValueError, TypeError):
        problems = []
    return problems or [ConfigProblem("config", "", details)]


def from_rpc_error(error: grpc.RpcError) -> RayQueueError:
    """Convert a client-side ``grpc.RpcError`` (which is also a ``grpc.Call``)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = (error.details() if hasattr(error, "details") else None) or str(error)
    metadata = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    return from_status(code, details, tuple((m.key, m.value) for m in metadata or ()))
