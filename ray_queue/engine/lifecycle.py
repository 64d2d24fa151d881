"""The workload state machine, as a table with one comment per edge.

Every state change in the engine goes through ``check``, so an impossible transition
is a loud ``InvalidTransitionError`` rather than quietly corrupted quota accounting.
"""

from __future__ import annotations

from ray_queue.engine.errors import InvalidTransitionError
from ray_queue.engine.model import WorkloadState as S

#: (from, to) → (default reason, default message for a person).
TRANSITIONS: dict[tuple[S, S], tuple[str, str]] = {
    # Fits its quota and some admission check applies to the flavor it got.
    (S.PENDING, S.QUOTA_RESERVED): (
        "QuotaReserved",
        "quota reserved; waiting for admission checks",
    ),
    # Fits its quota and no admission check applies.
    (S.PENDING, S.ADMITTED): ("Admitted", "admitted"),
    # Every admission check reported Ready.
    (S.QUOTA_RESERVED, S.ADMITTED): ("AdmissionChecksReady", "all admission checks are Ready"),
    # A check asked for a retry, or it was preempted/stopped while waiting: quota freed.
    (S.QUOTA_RESERVED, S.EVICTED): ("Evicted", "evicted; its quota was released"),
    # A check rejected it, or it reached the back-off limit.
    (S.QUOTA_RESERVED, S.REJECTED): ("Rejected", "rejected; it will not be retried"),
    # Preempted, placement timeout, capacity revoked or drained: quota freed.
    (S.ADMITTED, S.EVICTED): ("Evicted", "evicted; its quota was released"),
    # The work ran to completion.
    (S.ADMITTED, S.FINISHED): ("Finished", "finished; its quota was released"),
    # The work ran and failed; there is no automatic retry of failed work.
    (S.ADMITTED, S.FAILED): ("Failed", "failed; its quota was released"),
    # Placement timed out past the back-off limit.
    (S.ADMITTED, S.REJECTED): ("Rejected", "rejected; it will not be retried"),
    # Back-off over (or none): back in line at its original position.
    (S.EVICTED, S.PENDING): ("Requeued", "back in the queue"),
    # Cancelled by its owner, or its owner died.
    (S.PENDING, S.CANCELLED): ("Cancelled", "cancelled"),
    (S.QUOTA_RESERVED, S.CANCELLED): ("Cancelled", "cancelled; its quota was released"),
    (S.ADMITTED, S.CANCELLED): ("Cancelled", "cancelled; its quota was released"),
    (S.EVICTED, S.CANCELLED): ("Cancelled", "cancelled"),
    # The config changed so that it can never fit any more.
    (S.PENDING, S.REJECTED): ("Rejected", "rejected; it can never fit"),
}


def check(from_state: S, to_state: S) -> tuple[str, str]:
    """Return the edge's default reason and message, or raise if there is no such edge."""
    defaults = TRANSITIONS.get((from_state, to_state))
    if defaults is None:
        raise InvalidTransitionError(
            f"a workload in state {from_state.value} cannot become {to_state.value}"
        )
    return defaults
