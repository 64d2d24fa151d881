"""Credentials for the Ray workers of a captured driver's job: derived from the driver's
token, scoped to one Queue, valid only while a live Ray job carries them.

A captured job's work is also created in its Ray workers (Train's controller, Tune's
trainables, tasks inside tasks), and each of them calls the manager. Ray gives a job no
channel to its workers that other jobs cannot read: environment variables come from the
job's ``runtime_env`` (shown by the dashboard and the job table), the GCS key-value store
and named actors are open to every job, and an actor call does not say which job made
it, so a worker cannot prove its job to the manager. The best available, then, is a
credential whose theft is worth little, carried in ``runtime_env``:

- *derived*: ``rqworker:<nonce>:<queue>:<kid>:<mac>``, the MAC an HMAC-SHA256 under the
  digest of the driver's token (what the manager's token table is keyed by), so the
  driver mints it itself, without a round trip, and the token never leaves the driver;
- *narrow*: it stands for the driver's tenant in that one Queue only, never for an admin
  or the autoscaler (``narrowed``);
- *job-scoped*: the manager accepts it only while a live Ray job has it in its
  ``runtime_env`` (checked by the manager against Ray's job table); when the job ends, so
  does the credential, and revoking the driver's token revokes it too (``kid`` no longer
  names a token).

This module is pure: minting, parsing and checking the MAC. Whether a live job carries a
credential is the manager's to ask Ray.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from ray_queue.access import namespaces
from ray_queue.access.principals import Principal, Role, digest

PREFIX = "rqworker"


@dataclass(frozen=True, slots=True)
class WorkerClaim:
    """A parsed worker credential: what it claims, not yet checked."""

    nonce: str
    queue: str
    kid: str
    mac: str


def key_id(token_digest: str) -> str:
    """Names the token a credential was derived from without revealing its digest."""
    return hashlib.sha256(f"{PREFIX}-kid:{token_digest}".encode()).hexdigest()[:16]


def _mac(token_digest: str, nonce: str, queue: str) -> str:
    message = f"{PREFIX}:{nonce}:{queue}".encode()
    return hmac.new(token_digest.encode(), message, hashlib.sha256).hexdigest()


def mint(token: str, queue: str, nonce: str | None = None) -> str:
    """A worker credential for ``queue``, derived from the driver's ``token``."""
    if ":" in queue:
        raise ValueError(f"queue name {queue!r} cannot hold ':'")
    nonce = nonce or secrets.token_hex(16)
    token_digest = digest(token)
    return f"{PREFIX}:{nonce}:{queue}:{key_id(token_digest)}:{_mac(token_digest, nonce, queue)}"


def is_worker_credential(credential: str) -> bool:
    return credential.startswith(PREFIX + ":")


def parse(credential: str) -> WorkerClaim | None:
    parts = credential.split(":")
    if len(parts) != 5 or parts[0] != PREFIX or not all(parts[1:]):
        return None
    return WorkerClaim(*parts[1:])


def verify(claim: WorkerClaim, principals: Iterable[Principal]) -> Principal | None:
    """The principal whose token the claim was derived from, if its MAC is right.

    ``principals``: the token table's, each with its token digest as ``key``."""
    for principal in principals:
        if not principal.key or key_id(principal.key) != claim.kid:
            continue
        expected = _mac(principal.key, claim.nonce, claim.queue)
        if hmac.compare_digest(expected, claim.mac):
            return principal
    return None


def narrowed(principal: Principal, claim: WorkerClaim, credential: str) -> Principal | None:
    """What a worker holding the credential may do: the driver's tenant in the claimed
    Queue only (``None`` if the driver could not use that Queue itself)."""
    if not principal.may_use_queue(claim.queue):
        return None
    return dataclasses.replace(
        principal,
        name=f"{principal.name} (captured job's workers)",
        role=Role.TENANT,
        queues=frozenset({claim.queue}),
        # Flood limits are counted per credential, apart from the driver's own.
        key=digest(credential),
        # A tenant driver's workers use its namespace; an admin's (which has none) get one
        # of their own, so a tenant credential never names ids in another's namespace.
        namespace=principal.namespace or f"{namespaces.JOB_PREFIX}{digest(credential)[:12]}",
    )
