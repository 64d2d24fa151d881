"""Workload ids per tenant, so that no tenant can take an id another one wants.

A tenant's workloads live in its namespace: ``<namespace>/<name>``, as Kubernetes objects
do. A tenant may give either the bare ``<name>`` (the manager puts it in its namespace) or
the whole id; answers always carry the whole id. Admins (and the open, token-less manager)
have no namespace: their ids are used as given, so local use and existing ids are
unchanged. Pure functions; both doors (gRPC and the manager actor) call them.
"""

from __future__ import annotations

import hashlib
import re

from ray_queue.engine.model import WorkloadId
from ray_queue.errors import PermissionDeniedError

SEPARATOR = "/"
#: Letters, digits, '.', '_' and '-' (what workload ids use), at most a DNS label long.
_NAMESPACE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


#: Reserved for the namespaces of jobs that admins submitted (``of_job``).
JOB_PREFIX = "job."


def valid_namespace(namespace: str) -> bool:
    return _NAMESPACE.fullmatch(namespace) is not None


def namespace_of(workload: str) -> str | None:
    """The namespace part of a whole id (``None`` for an id with none)."""
    namespace, separator, _ = workload.partition(SEPARATOR)
    return namespace if separator else None


def for_submission(namespace: str | None, workload: str, *, field: str) -> WorkloadId:
    """The id a caller whose namespace is ``namespace`` submits ``workload`` under.

    An id in another namespace is refused: taking it would be squatting, and the answer
    says nothing of whether it is in use.
    """
    if namespace is None:
        return WorkloadId(workload)
    own = namespace_of(workload)
    if own is None:
        return WorkloadId(f"{namespace}{SEPARATOR}{workload}")
    if own == namespace:
        return WorkloadId(workload)
    raise PermissionDeniedError(
        f"{field}: {workload!r} is not in this token's namespace; give '<name>' or "
        f"'{namespace}{SEPARATOR}<name>'"
    )


def candidates(namespace: str | None, workload: str) -> tuple[WorkloadId, ...]:
    """The whole ids a caller may mean by ``workload``, in the order to try them: a bare
    name in its own namespace first, then as given (an admin's id, or one from before
    namespaces). Whether the caller may see the workload found is the visibility
    check's business, not this one's."""
    if namespace is None or namespace_of(workload) is not None:
        return (WorkloadId(workload),)
    return WorkloadId(f"{namespace}{SEPARATOR}{workload}"), WorkloadId(workload)


def of_job(job_workload: str) -> str:
    """The namespace of a job's own work: its submitter's, or, for a job an admin
    submitted (whose id has none), one derived from the job's id under the ``job.``
    prefix, which tenant names may not use (``principals.parse_tokens``)."""
    own = namespace_of(job_workload)
    if own is not None:
        return own
    return f"{JOB_PREFIX}{hashlib.sha256(job_workload.encode()).hexdigest()[:12]}"
