"""ProvisioningRequests as the planner sees them: phase, owner, names. Pure.

The Kubernetes side (``provisioning.py``) turns a request's conditions into a ``Phase``
with ``phase_of``; the planner decides from phases alone. Names are derived from the
workload id and attempt, so a restarted autoscaler finds the request it made before
instead of making a second one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from ray_queue.engine.model import WorkloadId

#: Label on every object the autoscaler creates for a gang (request, template, group).
WORKLOAD_LABEL = "ray-queue.io/workload"
#: The workload id itself may not be a valid label value; this annotation keeps it whole.
WORKLOAD_ANNOTATION = "ray-queue.io/workload-id"
ATTEMPT_LABEL = "ray-queue.io/attempt"
GROUP_LABEL = "ray-queue.io/worker-group"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "ray-queue-autoscaler"


class Phase(str, Enum):
    """Where a ProvisioningRequest is, from its conditions (cluster-autoscaler's API)."""

    #: Created; no verdict yet (no condition, or Accepted only).
    PENDING = "Pending"
    #: Provisioned=True: capacity is there (or booked) for the pods that consume it.
    PROVISIONED = "Provisioned"
    #: Failed=True: cluster-autoscaler gave up.
    FAILED = "Failed"
    #: BookingExpired=True: capacity was booked but no pod consumed it in time.
    BOOKING_EXPIRED = "BookingExpired"
    #: CapacityRevoked=True: the nodes were taken back (e.g. a spot/queued VM reclaimed).
    CAPACITY_REVOKED = "CapacityRevoked"


# Checked in this order: a request may carry several True conditions (Provisioned then
# BookingExpired); the later, more final verdict wins.
_VERDICTS = (
    ("CapacityRevoked", Phase.CAPACITY_REVOKED),
    ("Failed", Phase.FAILED),
    ("BookingExpired", Phase.BOOKING_EXPIRED),
    ("Provisioned", Phase.PROVISIONED),
)


def phase_of(conditions: Mapping[str, str]) -> Phase:
    """Condition type → status ("True"/"False"/"Unknown") to a phase."""
    for kind, phase in _VERDICTS:
        if conditions.get(kind) == "True":
            return phase
    return Phase.PENDING


@dataclass(frozen=True, slots=True)
class RequestView:
    """One ProvisioningRequest the autoscaler made, as read back from the cluster."""

    name: str
    workload: WorkloadId
    attempt: int
    #: The worker group the gang's nodes come from.
    group: str
    #: Pods asked for.
    count: int
    phase: Phase
    message: str = ""


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """A ProvisioningRequest (and its PodTemplate) to create."""

    name: str
    workload: WorkloadId
    attempt: int
    group: str
    count: int
    provisioning_class: str


def request_name(workload: WorkloadId, attempt: int) -> str:
    """A DNS-1123 name unique per (workload, attempt), stable across restarts."""
    return _dns_name("rq", f"{workload}", f"{attempt}")


def gang_group_name(base_group: str, workload: WorkloadId, attempt: int) -> str:
    """The per-gang worker group's name. KubeRay puts group names into Pod names, so it
    stays short; the hash makes it unique per workload attempt."""
    digest = _digest(f"{workload}/{attempt}")[:8]
    return f"{_slug(base_group)[:24].strip('-') or 'group'}-g{digest}"


def label_value(value: str) -> str:
    """A valid label value (≤ 63 chars, alphanumerics and ``-_.``) that identifies
    ``value``: itself if already valid, else a slug plus a hash."""
    if _LABEL_VALUE.fullmatch(value):
        return value
    return f"{_slug(value)[:50].strip('-') or 'w'}-{_digest(value)[:10]}"


_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


def _dns_name(prefix: str, body: str, suffix: str) -> str:
    slug = _slug(body)
    digest = _digest(body)[:10]
    # 253 is the limit for most names, but 63 keeps it a valid label value too.
    room = 63 - len(prefix) - len(suffix) - len(digest) - 3
    return f"{prefix}-{slug[:room].strip('-') or 'w'}-{digest}-{suffix}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
