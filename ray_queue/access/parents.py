"""Who may make a workload part of a job (``WorkloadSpec.parent``).

A child counts against its job's ``max_resources`` and is cancelled with the job, so
attaching work to someone else's job would spend their cap or tie your work to their
job's end. The job's own run (its job credential) may attach; so may the tenant the
job belongs to (its namespace: the job's workers without a derived credential use the
tenant's token), and admins. Another tenant may not. Pure; both doors (the manager actor
and gRPC) call it, beside the Queue check.
"""

from __future__ import annotations

from ray_queue.access import namespaces
from ray_queue.access.principals import Principal, Role
from ray_queue.engine.model import WorkloadId


def attach_refusal(principal: Principal, parent: WorkloadId) -> str | None:
    """Why ``principal`` may not submit work whose parent is the job ``parent``, or ``None``."""
    if principal.role is Role.ADMIN:
        return None
    if principal.job is not None:
        if principal.job == parent:
            return None
        return (
            f"{principal.name} may attach work only to its own job ({principal.job}), "
            f"not to {parent}"
        )
    if principal.role is Role.TENANT and principal.namespace == namespaces.of_job(parent):
        return None
    return (
        f"token {principal.name!r} may not attach work to job {parent}: only that job's own "
        "run, its tenant or an admin can; submit it without a parent"
    )
