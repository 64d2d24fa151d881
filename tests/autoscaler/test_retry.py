"""The one retry helper: its delays (a table), their jitter (seeded, so repeatable), and
``retry``'s limits: attempts, the deadline, and which errors it retries at all."""

from __future__ import annotations

import random

import pytest

from autoscaler.providers.base import ConflictError, PermanentError, TransientError
from autoscaler.retry import Backoff, RetryPolicy, retry


@pytest.mark.parametrize(
    ("base_s", "max_s", "failures", "expected_s"),
    [
        pytest.param(0.05, 2.0, 1, 0.05, id="first-failure-waits-base"),
        pytest.param(0.05, 2.0, 2, 0.1, id="doubles"),
        pytest.param(0.05, 2.0, 3, 0.2, id="doubles-again"),
        pytest.param(0.05, 2.0, 6, 1.6, id="sixth"),
        pytest.param(0.05, 2.0, 7, 2.0, id="capped"),
        pytest.param(0.05, 2.0, 10_000, 2.0, id="long-outage-stays-capped"),
        pytest.param(2.0, 30.0, 4, 16.0, id="loop-4th"),
        pytest.param(2.0, 30.0, 5, 30.0, id="loop-capped"),
        pytest.param(0.4, 0.4, 3, 0.4, id="base-equals-max"),
    ],
)
def test_delays_without_jitter(
    base_s: float, max_s: float, failures: int, expected_s: float
) -> None:
    backoff = Backoff(base_s=base_s, max_s=max_s, jitter=0.0)
    assert backoff.delay(failures, random.Random(0)) == pytest.approx(expected_s)


@pytest.mark.parametrize("jitter", [0.25, 0.5, 1.0])
@pytest.mark.parametrize("failures", [1, 3, 8])
def test_jitter_spreads_each_delay_below_its_unjittered_value(
    jitter: float, failures: int
) -> None:
    backoff = Backoff(base_s=0.1, max_s=2.0, jitter=jitter)
    full = Backoff(base_s=0.1, max_s=2.0, jitter=0.0).delay(failures, random.Random(0))
    rng = random.Random(7)
    delays = [backoff.delay(failures, rng) for _ in range(2_000)]
    assert all((1 - jitter) * full <= d <= full for d in delays)
    # Spread over the whole band, not bunched: that is what de-synchronises callers.
    band = jitter * full
    assert min(delays) < (1 - jitter) * full + 0.05 * band
    assert max(delays) > full - 0.05 * band


def test_a_seed_fixes_the_sequence_and_another_seed_changes_it() -> None:
    backoff = Backoff(base_s=0.1, max_s=2.0)

    def sequence(seed: int) -> list[float]:
        rng = random.Random(seed)
        return [backoff.delay(n, rng) for n in range(1, 8)]

    assert sequence(3) == sequence(3)
    assert sequence(3) != sequence(4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"base_s": 0.0, "max_s": 1.0}, "base_s"),
        ({"base_s": 2.0, "max_s": 1.0}, "base_s <= max_s"),
        ({"base_s": 0.1, "max_s": 1.0, "jitter": 1.5}, "jitter"),
    ],
)
def test_bad_backoffs_are_refused(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Backoff(**kwargs)


class FakeTime:
    """A clock that only ``sleep`` moves: retry's waits, recorded and instant."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Flaky:
    """Raises the given errors in turn, then returns ``"ok"``; counts its calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


POLICY = RetryPolicy(Backoff(base_s=0.1, max_s=1.0, jitter=0.5), attempts=5, deadline_s=None)


def run(fn: Flaky, policy: RetryPolicy = POLICY, seed: int = 1) -> tuple[str, FakeTime]:
    time = FakeTime()
    out = retry(
        fn,
        policy,
        retry_on=(TransientError,),
        what="test call",
        rng=random.Random(seed),
        sleep=time.sleep,
        clock=time.clock,
    )
    return out, time


def test_retries_transient_errors_with_the_backoffs_delays() -> None:
    fn = Flaky(TransientError("503"), TransientError("503"))
    out, time = run(fn)
    assert out == "ok" and fn.calls == 3
    rng = random.Random(1)
    assert time.sleeps == [POLICY.backoff.delay(1, rng), POLICY.backoff.delay(2, rng)]


def test_gives_up_after_the_attempts_with_the_last_error() -> None:
    fn = Flaky(*(TransientError(f"503 #{i}") for i in range(10)))
    with pytest.raises(TransientError, match="503 #4"):
        run(fn)
    assert fn.calls == POLICY.attempts


def test_does_not_retry_other_errors() -> None:
    for error in (PermanentError("403"), ConflictError("409")):
        fn = Flaky(error)
        with pytest.raises(type(error)):
            run(fn)
        assert fn.calls == 1


def test_the_deadline_stops_retries_that_would_end_after_it() -> None:
    # Without jitter the waits are 1, 2, 4, 8 s: the third retry would end at 7 s > 5 s.
    policy = RetryPolicy(Backoff(base_s=1.0, max_s=8.0, jitter=0.0), attempts=10, deadline_s=5.0)
    fn = Flaky(*(TransientError(f"503 #{i}") for i in range(10)))
    time = FakeTime()
    with pytest.raises(TransientError, match="503 #2"):
        retry(
            fn,
            policy,
            retry_on=(TransientError,),
            what="test call",
            rng=random.Random(0),
            sleep=time.sleep,
            clock=time.clock,
        )
    assert (fn.calls, time.sleeps) == (3, [1.0, 2.0])


def test_attempts_count_the_first_call() -> None:
    with pytest.raises(ValueError, match="attempts"):
        RetryPolicy(Backoff(base_s=0.1, max_s=1.0), attempts=0)
    fn = Flaky(TransientError("503"))
    with pytest.raises(TransientError):
        run(fn, RetryPolicy(POLICY.backoff, attempts=1))
    assert fn.calls == 1
