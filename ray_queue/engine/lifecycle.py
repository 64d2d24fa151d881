"""The workload state machine, as a table with one comment per edge.

Every state change in the engine goes through ``check``, so an impossible transition
is a loud ``InvalidTransitionError`` rather than quietly corrupted quota accounting.
"""

from __future__ import annotations

from ray_queue.engine.errors import InvalidTransitionError
from ray_queue.engine.model import WorkloadState as S

TRANSITIONS: dict[tuple[S, S], str] = {
    # Fits its quota and some admission check applies to the flavor it got.
    (S.PENDING, S.QUOTA_RESERVED): "QuotaReserved",
    # Fits its quota and no admission check applies.
    (S.PENDING, S.ADMITTED): "Admitted",
    # Every admission check reported Ready.
    (S.QUOTA_RESERVED, S.ADMITTED): "AdmissionChecksReady",
    # A check asked for a retry, or it was preempted/stopped while waiting: quota freed.
    (S.QUOTA_RESERVED, S.EVICTED): "Evicted",
    # A check rejected it, or it reached the back-off limit.
    (S.QUOTA_RESERVED, S.REJECTED): "Rejected",
    # Preempted, placement timeout, capacity revoked or drained: quota freed.
    (S.ADMITTED, S.EVICTED): "Evicted",
    # The work ran to completion.
    (S.ADMITTED, S.FINISHED): "Finished",
    # The work ran and failed; there is no automatic retry of failed work.
    (S.ADMITTED, S.FAILED): "Failed",
    # Placement timed out past the back-off limit.
    (S.ADMITTED, S.REJECTED): "Rejected",
    # Back-off over (or none): back in line at its original position.
    (S.EVICTED, S.PENDING): "Requeued",
    # Cancelled by its owner, or its owner died.
    (S.PENDING, S.CANCELLED): "Cancelled",
    (S.QUOTA_RESERVED, S.CANCELLED): "Cancelled",
    (S.ADMITTED, S.CANCELLED): "Cancelled",
    (S.EVICTED, S.CANCELLED): "Cancelled",
    # The config changed so that it can never fit any more.
    (S.PENDING, S.REJECTED): "Rejected",
}


def check(from_state: S, to_state: S) -> str:
    """Return the default reason for the edge, or raise if there is no such edge."""
    reason = TRANSITIONS.get((from_state, to_state))
    if reason is None:
        raise InvalidTransitionError(
            f"a workload in state {from_state.value} cannot become {to_state.value}"
        )
    return reason
