"""A JOB workload's Ray job runs, each an explicit state machine (a table, one comment per
edge), and the few rules that keep runs from overlapping or outliving their workload.

Each admission of a JOB workload is a new Ray job run, ``rq-<workload>-<n>`` (a stopped
Ray job cannot be restarted under its id). Ray's job server is slow and forgetful at the
edges, which the soak found twice (issue 23):

* a stop that reaches Ray before the submission does is lost ("does not exist"), and a
  stop of a run whose supervisor is not up yet does nothing; the run then goes on with no
  workload holding its quota (``job_outlives_workload``);
* a readmitted workload's next run, submitted at once, ran beside the previous run still
  being stopped: quota held once, used twice (``job_running_twice``).

So: a run is submitted only once no earlier run of its workload is going in Ray
(``WAITING`` until Ray lists them ended); a stop asked while the submission is on its way
is remembered (``RECALLING``: the job desk drops the submission if unsent, or stops the
run as soon as Ray has it); a run Ray lists going after its stop is asked again, less and
less often (``stop_again_after``); and any ``rq-`` run Ray lists going that no admission
owns is stopped (a restarted manager's, or one whose tracking was given up).

Nothing here imports Ray: ``ManagerCore`` passes Ray's listing in and carries the
submissions and stops out (``RayActions``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from ray_queue.engine.errors import InvalidTransitionError
from ray_queue.engine.model import WorkloadId
from ray_queue.wire import job_of_submission

logger = logging.getLogger(__name__)

#: Ray job states after which a run will not run again, and whether each is a failure.
DONE_STATES = {"SUCCEEDED": False, "FAILED": True, "STOPPED": True}
#: Ray job states of a run that is going (its driver started or about to).
GOING_STATES = frozenset({"PENDING", "RUNNING"})
#: Submitting a run is tried this many times (once a listing pass) before its job fails.
SUBMIT_ATTEMPTS = 30
#: A stop Ray did not carry out is asked again after this long, doubling to the cap: Ray
#: takes a few seconds to stop a driver (SIGTERM, SIGKILL 3 s later) and to list it, so
#: a faster re-ask only repeats a stop under way.
STOP_AGAIN_BASE_S = 2.0
STOP_AGAIN_MAX_S = 30.0
#: A run asked to stop and not listed for this long since is taken as gone from Ray: a
#: stop asked while its submission was on its way, neither listed nor refused since, never
#: reached Ray.
UNSEEN_AFTER_S = 600.0


class RunState(StrEnum):
    #: Admitted, not submitted: an earlier run of its workload is still going in Ray.
    WAITING = "waiting"
    #: To be submitted on the next listing pass (its turn came, or Ray refused it).
    UNSENT = "unsent"
    #: Submitted (the desk sends it in the background); Ray does not list it yet.
    SUBMITTING = "submitting"
    #: Ray lists it going (PENDING or RUNNING), for its admitted workload.
    LISTED = "listed"
    #: Its workload left its admission while the submission was on its way: the desk drops
    #: the submission if unsent, or stops the run as soon as Ray has it.
    RECALLING = "recalling"
    #: Its workload left its admission while Ray listed it going: asked to stop, and asked
    #: again while Ray keeps listing it going.
    STOPPING = "stopping"
    #: Ray lists it ended, or it never reached Ray and never will.
    ENDED = "ended"


class RunEvent(StrEnum):
    #: No earlier run of its workload is going in Ray any more.
    CLEARED = "cleared"
    #: Handed to the job desk for submission.
    SENT = "sent"
    #: The submission did not reach Ray: refused, or dropped after a stop.
    REFUSED = "refused"
    #: Ray lists it PENDING or RUNNING.
    GOING = "going"
    #: Ray lists it SUCCEEDED, FAILED or STOPPED.
    DONE = "done"
    #: Its workload left its admission (cancelled, preempted, evicted, finished, failed).
    STOP = "stop"
    #: Recalled long ago and never listed since: it never reached Ray.
    UNSEEN = "unseen"


R, E = RunState, RunEvent

#: (state, event) → next state. Self-edges are inputs a state takes and ignores on purpose.
TRANSITIONS: dict[tuple[RunState, RunEvent], RunState] = {
    # The earlier run ended: its turn to be submitted.
    (R.WAITING, E.CLEARED): R.UNSENT,
    # Its workload left before its turn: nothing was ever sent.
    (R.WAITING, E.STOP): R.ENDED,
    # A submission a killed manager had on its way landed after all (recovery made it
    # WAITING): it is Ray's now, and the earlier run is being stopped.
    (R.WAITING, E.GOING): R.LISTED,
    # ... and ended too, before the listing showed it going.
    (R.WAITING, E.DONE): R.ENDED,
    (R.UNSENT, E.SENT): R.SUBMITTING,
    # Nothing is on its way to Ray: stopping it is forgetting it.
    (R.UNSENT, E.STOP): R.ENDED,
    # A refused submission that got through after all (Ray answered too late).
    (R.UNSENT, E.GOING): R.LISTED,
    (R.UNSENT, E.DONE): R.ENDED,
    # Refused again (a report of an earlier attempt): still to be tried again.
    (R.UNSENT, E.REFUSED): R.UNSENT,
    # Refused (Ray's job agent down, "no available agent"): tried again next pass.
    (R.SUBMITTING, E.REFUSED): R.UNSENT,
    (R.SUBMITTING, E.GOING): R.LISTED,
    # It ran and ended between two listings.
    (R.SUBMITTING, E.DONE): R.ENDED,
    # A stop now could overtake the submission: the desk carries it out once Ray has it.
    (R.SUBMITTING, E.STOP): R.RECALLING,
    (R.LISTED, E.GOING): R.LISTED,
    # A late refusal of a submission Ray already lists (it timed out, then landed).
    (R.LISTED, E.REFUSED): R.LISTED,
    (R.LISTED, E.DONE): R.ENDED,
    (R.LISTED, E.STOP): R.STOPPING,
    # Dropped unsent, or refused: it never ran.
    (R.RECALLING, E.REFUSED): R.ENDED,
    # Ray has it: the desk's stop is on its way; re-asked while it stays listed going.
    (R.RECALLING, E.GOING): R.STOPPING,
    (R.RECALLING, E.DONE): R.ENDED,
    (R.RECALLING, E.STOP): R.RECALLING,
    (R.RECALLING, E.UNSEEN): R.ENDED,
    (R.STOPPING, E.GOING): R.STOPPING,
    (R.STOPPING, E.REFUSED): R.STOPPING,
    (R.STOPPING, E.DONE): R.ENDED,
    (R.STOPPING, E.STOP): R.STOPPING,
    # Asked to stop long ago and no longer listed at all (Ray's job record was deleted).
    (R.STOPPING, E.UNSEEN): R.ENDED,
    # An ended run takes whatever a stale listing or a late report says, and stays ended.
    (R.ENDED, E.GOING): R.ENDED,
    (R.ENDED, E.DONE): R.ENDED,
    (R.ENDED, E.REFUSED): R.ENDED,
    (R.ENDED, E.STOP): R.ENDED,
}


class RunTransitionError(InvalidTransitionError):
    """A job run was given an event its state has no edge for: a bug in ray_queue (please
    report it with the log line), not in the job."""


def step(state: RunState, event: RunEvent) -> RunState:
    """The state after ``event`` in ``state``; raise if there is no such edge."""
    nxt = TRANSITIONS.get((state, event))
    if nxt is None:
        raise RunTransitionError(f"a Ray job run that is {state.value} cannot take {event.value}")
    return nxt


def stop_again_after(asks: int) -> float:
    """How long after the ``asks``-th stop (>= 1) of a run Ray still lists going to ask
    again. No jitter: one manager asks, about a handful of runs, so there is no herd."""
    return min(STOP_AGAIN_MAX_S, STOP_AGAIN_BASE_S * 2.0 ** min(asks - 1, 16))


def listed_event(ray_state: str | None) -> RunEvent | None:
    """What a listing says of a run: going, done, or nothing (not listed, or a state Ray
    may add later)."""
    if ray_state in GOING_STATES:
        return RunEvent.GOING
    if ray_state in DONE_STATES:
        return RunEvent.DONE
    return None


@dataclass
class Run:
    """One Ray job run of a JOB workload, as the manager knows it."""

    workload: WorkloadId
    submission_id: str
    state: RunState
    #: Refused submissions in a row, and Ray's last error.
    refusals: int = 0
    error: str = ""
    #: Stops asked; when the first was asked and when the next one is due.
    stop_asks: int = 0
    stopped_at: float = 0.0
    stop_again_at: float = 0.0
    #: Ray's state in the last listing that listed it.
    ray_state: str | None = None


@dataclass(frozen=True, slots=True)
class Observed:
    """What one pass over Ray's listing means for the workloads (``JobRuns.observe``)."""

    #: Workloads whose run Ray lists RUNNING.
    running: tuple[WorkloadId, ...] = ()
    #: Workloads whose run ended by itself: (workload, submission id, Ray's state).
    ended: tuple[tuple[WorkloadId, str, str], ...] = ()
    #: Workloads whose run Ray refused ``SUBMIT_ATTEMPTS`` times: (workload, message).
    refused: tuple[tuple[WorkloadId, str], ...] = ()


@dataclass
class JobRuns:
    """Every Ray job run the manager has not seen end, by submission id.

    ``submit(workload, submission_id)`` hands a run to Ray (in the background; it raises
    if it cannot even try) and ``stop(submission_id)`` asks Ray to stop one. Not
    thread-safe: called from the manager's loop only.
    """

    submit: Callable[[WorkloadId, str], None]
    stop: Callable[[str], None]
    _runs: dict[str, Run] = field(default_factory=dict)
    #: The run of each admitted JOB workload.
    _current: dict[WorkloadId, str] = field(default_factory=dict)

    # -- what the manager tells us --------------------------------------------------------

    def admit(self, workload: WorkloadId, submission_id: str, now: float) -> None:
        """The workload was admitted and ``submission_id`` is its run: submit it now, or
        once its earlier runs are listed ended."""
        self._current[workload] = submission_id
        run = self._runs.get(submission_id)
        if run is not None:
            return  # already known (re-adopted on recovery)
        run = Run(workload, submission_id, RunState.WAITING)
        self._runs[submission_id] = run
        if self.blocker(workload) is None:
            self._apply(run, RunEvent.CLEARED, now)
            self._send(run, now)

    def release(self, workload: WorkloadId, now: float) -> None:
        """The workload left its admission: its run must not go on (idempotent)."""
        submission_id = self._current.pop(workload, None)
        run = self._runs.get(submission_id) if submission_id is not None else None
        if run is not None:
            self._apply(run, RunEvent.STOP, now)

    def adopt(
        self, listing: Mapping[str, str], admitted: Mapping[WorkloadId, str], now: float
    ) -> None:
        """Recovery: ``admitted`` is each admitted JOB workload's run (from the store),
        ``listing`` Ray's jobs. Runs Ray lists going that no admission owns are stopped;
        an admitted workload's run Ray does not list is submitted once no earlier one is
        going (on the next ``observe``)."""
        for workload, submission_id in admitted.items():
            self._current[workload] = submission_id
            listed = submission_id in listing
            state = RunState.LISTED if listed else RunState.WAITING
            self._runs[submission_id] = Run(workload, submission_id, state)
        self._stop_strays(listing, now)
        for workload, submission_id in admitted.items():
            run = self._runs[submission_id]
            if run.state is RunState.WAITING and self.blocker(workload) is None:
                self._apply(run, RunEvent.CLEARED, now)

    def observe(
        self, listing: Mapping[str, str], refusals: Mapping[str, str], now: float
    ) -> Observed:
        """One pass over Ray's listing (submission id → JobStatus name) and the
        submissions refused since the last pass (submission id → Ray's error): moves each
        run on, submits what may go, stops what must not, and says what the workloads
        learn from it. A run refused in this pass is submitted again in the next."""
        unsent = {sid for sid, run in self._runs.items() if run.state is RunState.UNSENT}
        for submission_id, error in refusals.items():
            run = self._runs.get(submission_id)
            if run is not None:
                self._refused(run, error, now)
                unsent.discard(submission_id)
        running: list[WorkloadId] = []
        ended: list[tuple[WorkloadId, str, str]] = []
        for submission_id, run in list(self._runs.items()):
            event = listed_event(listing.get(submission_id))
            if event is None:
                stopped = run.state in (RunState.RECALLING, RunState.STOPPING)
                if stopped and now - run.stopped_at > UNSEEN_AFTER_S:
                    self._apply(run, RunEvent.UNSEEN, now)
                continue
            run.ray_state = listing[submission_id]
            self._apply(run, event, now)
            if self._current.get(run.workload) != submission_id:
                continue
            if run.ray_state == "RUNNING":
                running.append(run.workload)
            elif event is RunEvent.DONE:
                ended.append((run.workload, submission_id, run.ray_state))
                del self._current[run.workload]
        self._stop_strays(listing, now)
        for submission_id, run in self._runs.items():
            going = listing.get(submission_id) in GOING_STATES
            if run.state is RunState.STOPPING and going and now >= run.stop_again_at:
                self._ask_stop(run, now)
            elif run.state is RunState.WAITING and self.blocker(run.workload) is None:
                self._apply(run, RunEvent.CLEARED, now)
                unsent.add(submission_id)
        refused: list[tuple[WorkloadId, str]] = []
        for run in self._runs.values():
            if run.state is not RunState.UNSENT:
                continue
            if run.refusals >= SUBMIT_ATTEMPTS:
                message = f"Ray refused the job {run.refusals} times: {run.error}"
                refused.append((run.workload, message))
            elif run.submission_id in unsent:
                self._send(run, now)
        self._forget_ended()
        return Observed(tuple(running), tuple(ended), tuple(refused))

    # -- what the manager asks --------------------------------------------------------------

    def current(self, workload: WorkloadId) -> Run | None:
        """The run of an admitted JOB workload."""
        submission_id = self._current.get(workload)
        return self._runs.get(submission_id) if submission_id is not None else None

    def blocker(self, workload: WorkloadId) -> Run | None:
        """An earlier run of the workload not yet listed ended (the one its next run waits
        for), if any."""
        mine = self._current.get(workload)
        return next(
            (
                r
                for sid, r in self._runs.items()
                if r.workload == workload and sid != mine and r.state is not RunState.ENDED
            ),
            None,
        )

    def why_not_running(self, workload: WorkloadId) -> str | None:
        """Why an admitted JOB workload's run is not running, for its status."""
        run = self.current(workload)
        if run is None or run.ray_state == "RUNNING":
            return None
        blocker = self.blocker(workload)
        if run.state is RunState.WAITING and blocker is not None:
            return f"waiting for Ray job {blocker.submission_id} to stop"
        return f"Ray job {run.submission_id} is not running yet"

    def live(self, submission_id: str) -> bool:
        """Whether ``submission_id`` is the run of an admitted workload (not a stopped or
        earlier one)."""
        return self._current.get(job_of_submission(submission_id)) == submission_id

    def tracked(self) -> list[WorkloadId]:
        """Admitted JOB workloads with a run (for per-workload reports)."""
        return list(self._current)

    def busy(self) -> bool:
        """Whether Ray's jobs need watching: runs not seen ended."""
        return bool(self._runs)

    def states(self) -> dict[str, RunState]:
        """Each run's state, by submission id (for tests and ``describe``-like reports)."""
        return {sid: run.state for sid, run in self._runs.items()}

    # -- internals --------------------------------------------------------------------------

    def _apply(self, run: Run, event: RunEvent, now: float) -> None:
        before = run.state
        run.state = step(before, event)
        if run.state is before:
            return
        logger.debug(
            "job run transition",
            extra={"job": run.submission_id, "from": before, "event": event, "to": run.state},
        )
        if run.state in (RunState.RECALLING, RunState.STOPPING) and run.stop_asks == 0:
            self._ask_stop(run, now)

    def _ask_stop(self, run: Run, now: float) -> None:
        if run.stop_asks == 0:
            run.stopped_at = now
        elif run.state is RunState.STOPPING:
            logger.info(
                "Ray job still going after its stop; stopping again",
                extra={
                    "job": run.submission_id,
                    "ray_state": run.ray_state,
                    "stops": run.stop_asks,
                },
            )
        run.stop_asks += 1
        run.stop_again_at = now + stop_again_after(run.stop_asks)
        try:
            self.stop(run.submission_id)
        except Exception:
            # Asked again on a later pass while Ray lists it going.
            logger.exception("stopping a Ray job failed", extra={"job": run.submission_id})

    def _send(self, run: Run, now: float) -> None:
        self._apply(run, RunEvent.SENT, now)
        try:
            self.submit(run.workload, run.submission_id)
        except Exception as e:
            # The job server is often briefly unavailable ("no available agent"): the next
            # pass submits again, up to ``SUBMIT_ATTEMPTS`` times.
            logger.warning(
                "submitting a Ray job failed; will retry",
                extra={"job": run.submission_id, "error": str(e)},
            )
            self._refused(run, str(e), now)

    def _refused(self, run: Run, error: str, now: float) -> None:
        self._apply(run, RunEvent.REFUSED, now)
        if run.state is RunState.UNSENT:
            run.refusals += 1
            run.error = error

    def _stop_strays(self, listing: Mapping[str, str], now: float) -> None:
        for submission_id, ray_state in listing.items():
            if submission_id in self._runs or ray_state not in GOING_STATES:
                continue
            workload = job_of_submission(submission_id)
            logger.info(
                "Ray job going for no admission: stopping it",
                extra={"job": submission_id, "ray_state": ray_state},
            )
            run = Run(workload, submission_id, RunState.STOPPING, ray_state=ray_state)
            self._runs[submission_id] = run
            self._ask_stop(run, now)

    def _forget_ended(self) -> None:
        for submission_id in [s for s, r in self._runs.items() if r.state is RunState.ENDED]:
            del self._runs[submission_id]
