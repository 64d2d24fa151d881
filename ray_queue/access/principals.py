"""Who may use the queue: bearer tokens, the principals they stand for, and their limits.

Both doors to the manager check callers against the same table: the gRPC server
(``grpc/auth.py``) and the manager actor (``manager/access_guard.py``). Each token maps to
a ``Principal`` with a role:

- ``admin``: everything, including config;
- ``tenant``: submit to and read only its listed Queues (and their ClusterQueues);
- ``autoscaler``: demand and admission check reports.

Tokens come from a YAML/JSON file or an environment variable and are kept only as
SHA-256 digests. With no tokens configured every caller is an anonymous admin (the gRPC
server then listens on loopback only).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from ray_queue.access import namespaces

logger = logging.getLogger(__name__)

#: Env var holding token definitions as YAML/JSON text (e.g. from a Kubernetes Secret).
TOKENS_ENV = "RAY_QUEUE_TOKENS"
#: Env var naming a token file.
TOKENS_FILE_ENV = "RAY_QUEUE_TOKENS_FILE"


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
    #: Of those, list calls (ListWorkloads, ListPending), whose cost grows with the queue:
    #: 16 lists of 20,000 workloads at once made another tenant wait 2.6 s (median) for a
    #: 0.5 ms call (``benchmarks.grpc_fairness``).
    max_heavy_in_flight: int = 2
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
    #: Where a tenant's workload ids live (``access/namespaces.py``); ``None`` (admin,
    #: autoscaler): ids are used as given.
    namespace: str | None = None
    #: For a job's credential: the job's workload (the only job it may attach work to,
    #: ``access/parents.py``); ``None`` for every other caller.
    job: str | None = None

    def may_use_queue(self, queue: str) -> bool:
        return self.role is Role.ADMIN or (self.role is Role.TENANT and queue in self.queues)

    @property
    def sees_all_queues(self) -> bool:
        return self.role is Role.ADMIN


#: Who every caller is when no tokens are configured (loopback only).
ANONYMOUS_ADMIN = Principal(
    "anonymous",
    Role.ADMIN,
    limits=Limits(rate_per_s=1e9, burst=10**9, max_in_flight=64, max_heavy_in_flight=64),
    key="anonymous",
)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _entries(text: str, origin: str) -> list[tuple[str, Any]]:
    """The token entries of a definition, each with where it is (for messages)."""
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
    return entries


def admin_token(text: str, *, origin: str) -> str | None:
    """The first admin token given in clear in a definition (what the manager's own
    process uses to apply the config file), if any."""
    for _, entry in _entries(text, origin):
        if isinstance(entry, Mapping) and entry.get("role") == Role.ADMIN.value:
            token = entry.get("token")
            if isinstance(token, str) and token:
                return token
    return None


def parse_tokens(text: str, *, origin: str, limits: Limits | None = None) -> dict[str, Principal]:
    """Token definitions (YAML or JSON) → digest → principal.

    Accepted shapes (``tokens:`` may be a list or a mapping keyed by token)::

        tokens:
          - token: "s3cret"          # or token_sha256: "<hex digest>"
            role: tenant
            name: team-a             # defaults to the role; a tenant's ids are team-a/…
            queues: [team-a]         # tenants only
            limits: {rate_per_s: 50, burst: 100, max_in_flight: 8}
          "0ther": {role: admin}
    """
    out: dict[str, Principal] = {}
    for where, entry in _entries(text, origin):
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
        name = str(entry.get("name") or role.value)
        out[key] = Principal(
            name,
            role,
            frozenset(queues),
            token_limits,
            namespace=_namespace(where, role, entry.get("name"), key),
        )
    return out


def _namespace(where: str, role: Role, name: object, key: str) -> str | None:
    """A tenant's namespace: its name, or for an unnamed token one of its own (names
    default to the role, and two tenants must never share ids by accident)."""
    if role is not Role.TENANT:
        return None
    if not name:
        return f"tenant-{key[:8]}"
    if not namespaces.valid_namespace(str(name)) or str(name).startswith(namespaces.JOB_PREFIX):
        raise AuthConfigError(
            f"{where}.name: {str(name)[:80]!r} names the tenant's workload ids ('<name>/<id>'): "
            f"use 1-63 letters, digits, '.', '_' or '-', not starting with "
            f"{namespaces.JOB_PREFIX!r}"
        )
    return str(name)


def _asdict(limits: Limits) -> dict[str, Any]:
    return {
        "rate_per_s": limits.rate_per_s,
        "burst": limits.burst,
        "max_in_flight": limits.max_in_flight,
        "max_heavy_in_flight": limits.max_heavy_in_flight,
        "max_streams": limits.max_streams,
    }


def token_definitions(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> tuple[str, str] | None:
    """``(text, origin)`` of the token definitions: from ``path``, else
    ``$RAY_QUEUE_TOKENS_FILE``, else ``$RAY_QUEUE_TOKENS``; ``None`` when none are set."""
    env = os.environ if environ is None else environ
    file = path or env.get(TOKENS_FILE_ENV)
    if file:
        try:
            if Path(file).stat().st_mode & 0o077:
                logger.warning(
                    "token file readable by other users; chmod 600 it", extra={"file": str(file)}
                )
            return Path(file).read_text(encoding="utf-8"), str(file)
        except OSError as e:
            raise AuthConfigError(f"cannot read token file {file}: {e.strerror or e}") from e
    if env.get(TOKENS_ENV):
        return env[TOKENS_ENV], f"${TOKENS_ENV}"
    return None


def load_tokens(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    limits: Limits | None = None,
) -> dict[str, Principal]:
    """The principals of ``token_definitions``; empty when none are set."""
    found = token_definitions(path, environ=environ)
    if found is None:
        return {}
    text, origin = found
    return parse_tokens(text, origin=origin, limits=limits)


def describe(principals: Mapping[str, Principal]) -> str:
    """For the log: how many tokens of each role (never the tokens)."""
    counts: dict[str, int] = {}
    for p in principals.values():
        counts[p.role.value] = counts.get(p.role.value, 0) + 1
    return json.dumps(counts, sort_keys=True)


class TokenTable:
    """Token → principal, by digest. Empty means nobody needs a token (anonymous admin)."""

    def __init__(self, principals: Mapping[str, Principal]) -> None:
        """``principals``: token digest → who holds that token."""
        self._principals = {key: replace(p, key=key) for key, p in principals.items()}

    @property
    def enabled(self) -> bool:
        return bool(self._principals)

    def principals(self) -> list[Principal]:
        """Everyone with a token, each with its token's digest as ``key``."""
        return list(self._principals.values())

    def lookup(self, token: str | None) -> Principal:
        """Who holds ``token``, or ``PermissionError`` saying why not."""
        if not self._principals:
            return ANONYMOUS_ADMIN
        if not token:
            raise PermissionError("no token given")
        principal = self._principals.get(digest(token))
        if principal is None:
            raise PermissionError("unknown token")
        return principal
