"""Waiting after a failure: exponential back-off with jitter, bounded by attempts and a
deadline. The one way the autoscaler retries (Kubernetes calls, its passes, the demand
stream), so every wait is spread out and none retries for longer than it may.

Jitter matters because the callers are many of the same kind: after an API server
restart every sidecar's calls fail at the same moment, and plain doubling would have them
all retry at the same moments again. Each delay is drawn from
``[(1 - jitter) * d, d]`` where ``d = min(max_s, base_s * 2 ** (failures - 1))``: never
longer than the un-jittered delay, so the worst case stays what the numbers say. The
randomness comes from a ``random.Random`` the caller owns, so a seeded one makes every
delay (and a test of them) deterministic.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Backoff:
    """How long to wait after the ``failures``-th failure in a row."""

    #: The delay after the first failure (before jitter), in seconds.
    base_s: float
    #: No delay is longer than this.
    max_s: float
    #: The fraction of each delay that is random: 0 waits exactly, 1 anywhere from 0.
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (0 < self.base_s <= self.max_s):
            raise ValueError(f"need 0 < base_s <= max_s, got {self.base_s} and {self.max_s}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter is a fraction in [0, 1], got {self.jitter}")

    def delay(self, failures: int, rng: random.Random) -> float:
        """The wait after ``failures`` (>= 1) failures in a row."""
        if failures < 1:
            raise ValueError(f"failures counts from 1, got {failures}")
        # The exponent is capped so a long outage cannot overflow the float.
        full = min(self.max_s, self.base_s * 2.0 ** min(failures - 1, 62))
        return full * (1 - self.jitter * rng.random())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Which failures are retried, how often, and for how long."""

    backoff: Backoff
    #: Calls in all, the first included.
    attempts: int = 5
    #: No retry starts later than this after the first call (seconds); ``None``: no limit.
    deadline_s: float | None = None

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts counts the first call too: >= 1, got {self.attempts}")


def retry(
    fn: Callable[[], T],
    policy: RetryPolicy,
    *,
    retry_on: tuple[type[BaseException], ...],
    what: str,
    rng: random.Random,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Call ``fn`` until it returns, retrying the ``retry_on`` errors after a back-off.

    The last error is raised as it is once the attempts are spent, or when the next wait
    would end past the deadline; any other error is raised at once. Each retry is logged
    at INFO with what failed, the attempt and the wait.
    """
    started = clock()
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except retry_on as error:
            if attempt == policy.attempts:
                raise
            wait = policy.backoff.delay(attempt, rng)
            if policy.deadline_s is not None and clock() + wait - started > policy.deadline_s:
                raise
            logger.info(
                "retrying",
                extra={"what": what, "error": str(error), "attempt": attempt, "wait_s": wait},
            )
            sleep(wait)
    raise AssertionError("unreachable: the last attempt returns or raises")


__all__ = ["Backoff", "RetryPolicy", "retry"]
