"""Ray's job server, called from threads of its own so that it never stalls the manager.

Submitting, stopping and listing jobs are HTTP calls to the dashboard, and when Ray's job
agent is down each can hang for tens of seconds (20 s was seen for one submission). Made
on the manager's event loop, that hung every tenant's queue. Here each kind has a lane
(a queue and a worker thread) of its own, so a stop never waits behind a hung submission
or listing: ``submit`` and ``stop`` return at once, ``listing`` returns the last listing
(asking for a fresh one), and submissions that did not reach Ray are collected for the
manager to count and retry (``failures``). Submitting is idempotent (the submission id is
derived from the admission), so a retry of one that did succeed is harmless.

A stop of a run whose submission is still queued or in flight would reach Ray first and
be lost ("does not exist"), so it is remembered: a queued submission is dropped unsent
(reported as a failure, so the manager knows it never ran), and one in flight is stopped
as soon as Ray has answered it (``manager/job_runs.py``).

Ray does not stop a PENDING job: the stop goes to the job's supervisor actor, which runs
it only once it is scheduled, and a supervisor waiting for its entrypoint's resources
(taken by the work admitted in its place) waits for good (until Ray's 15-minute start
timeout). So a stop asked again of a run Ray still has PENDING kills its supervisor
actor; Ray then marks the job FAILED ("Job supervisor actor died"). The first stop is a
plain one: a supervisor in its runtime env setup stops its driver at once when it starts.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)


#: Ray's message for a failed job ends with up to 20,000 characters of its logs; a
#: status message keeps its first line (what happened) and the end of the logs (the error).
_MESSAGE_HEAD = 300
_MESSAGE_TAIL = 700


def brief(message: str) -> str:
    """Ray's job message, at most about a thousand characters."""
    if len(message) <= _MESSAGE_HEAD + _MESSAGE_TAIL:
        return message
    first = message.split("\n", 1)[0][:_MESSAGE_HEAD]
    return f"{first} … {message[-_MESSAGE_TAIL:]}"


#: What ``failures`` says of a submission dropped unsent because its run was stopped.
DROPPED = "stopped before it was submitted"
#: Ray job states after which a job will not run again.
_ENDED = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})


def kill_supervisor(submission_id: str) -> bool:
    """Kill the supervisor actor of Ray's job ``submission_id``; whether there was one."""
    import ray
    from ray.dashboard.modules.job.common import (
        JOB_ACTOR_NAME_TEMPLATE,
        SUPERVISOR_ACTOR_RAY_NAMESPACE,
    )

    name = JOB_ACTOR_NAME_TEMPLATE.format(job_id=submission_id)
    try:
        actor = ray.get_actor(name, namespace=SUPERVISOR_ACTOR_RAY_NAMESPACE)
    except ValueError:  # Ray's answer for no such actor
        return False
    ray.kill(actor, no_restart=True)
    return True


class _Lane:
    """A queue of calls and the one thread that makes them, in order."""

    def __init__(self, name: str) -> None:
        self._work: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def put(self, call: Callable[[], None]) -> None:
        self._work.put(call)

    def _serve(self) -> None:
        while True:
            call = self._work.get()
            try:
                call()
            except Exception:
                logger.exception("a call to Ray's job server failed")


class JobDesk:
    def __init__(
        self,
        connect: Callable[[], Any],
        kill: Callable[[str], bool] = kill_supervisor,
    ) -> None:
        """``connect``: makes a ``JobSubmissionClient`` (called on each lane's thread:
        each has a client of its own). ``kill``: kills a job's supervisor actor (a stop
        asked again of a PENDING job)."""
        self._connect = connect
        self._kill = kill
        #: Stops asked of each run not yet listed ended.
        self._stops_asked: dict[str, int] = {}
        self._clients = threading.local()
        self._lock = threading.Lock()
        self._submits = _Lane("ray-queue-job-submits")
        self._stops = _Lane("ray-queue-job-stops")
        self._lists = _Lane("ray-queue-job-listings")
        #: Submissions queued and not yet sent, and those being sent.
        self._queued: set[str] = set()
        self._sending: set[str] = set()
        #: Of those, the ones asked to stop meanwhile.
        self._recalled: set[str] = set()
        self._failures: dict[str, str] = {}
        self._listing: dict[str, str] | None = None
        #: Ray's message of each listed job that has one (why a failed job failed).
        self._messages: dict[str, str] = {}
        self._listing_asked = False

    def submit(self, submission_id: str, request: Mapping[str, Any]) -> None:
        """Submit in the background (once at a time per submission id)."""
        with self._lock:
            if submission_id in self._queued or submission_id in self._sending:
                return
            self._queued.add(submission_id)
        self._submits.put(lambda: self._submit(submission_id, request))

    def stop(self, submission_id: str) -> None:
        """Stop in the background, ahead of any queued submission or listing. A submission
        still queued is dropped instead; one in flight is stopped again once sent."""
        with self._lock:
            if submission_id in self._queued or submission_id in self._sending:
                self._recalled.add(submission_id)
            if submission_id in self._queued:
                return
        self._stops.put(lambda: self._stop(submission_id))

    def listing(self) -> Mapping[str, str]:
        """Ray's job statuses by submission id, as last listed; asks for a fresh listing.
        The very first call lists synchronously (recovery needs the truth)."""
        with self._lock:
            listing = self._listing
            if listing is not None and not self._listing_asked:
                self._listing_asked = True
                self._lists.put(self._list)
        if listing is None:
            self._list()
            with self._lock:
                listing = self._listing or {}
        return dict(listing)

    def messages(self) -> dict[str, str]:
        """Ray's message for each job of the last listing that has one, shortened."""
        with self._lock:
            return dict(self._messages)

    def failures(self) -> dict[str, str]:
        """Submissions that failed since the last call: submission id → Ray's error."""
        with self._lock:
            failed, self._failures = self._failures, {}
        return failed

    # -- the lanes' threads ----------------------------------------------------------------

    def _jobs(self) -> Any:
        client = getattr(self._clients, "client", None)
        if client is None:
            client = self._clients.client = self._connect()
        return client

    def _submit(self, submission_id: str, request: Mapping[str, Any]) -> None:
        with self._lock:
            self._queued.discard(submission_id)
            if submission_id in self._recalled:
                self._recalled.discard(submission_id)
                self._failures[submission_id] = DROPPED
                logger.info("Ray job stopped before it was submitted", extra={"job": submission_id})
                return
            self._sending.add(submission_id)
        sent = False
        try:
            self._jobs().submit_job(submission_id=submission_id, **request)
            logger.info("submitted Ray job", extra={"job": submission_id})
            sent = True
        except Exception as e:
            if "already exists" in str(e):
                sent = True
            else:
                logger.warning(
                    "submitting Ray job failed", extra={"job": submission_id, "error": str(e)}
                )
                with self._lock:
                    self._failures[submission_id] = str(e)
        finally:
            with self._lock:
                self._sending.discard(submission_id)
                recalled = submission_id in self._recalled
                self._recalled.discard(submission_id)
        if sent and recalled:
            # Its stop may have reached Ray before it did, and been lost.
            self._stops.put(lambda: self._stop(submission_id))

    def _stop(self, submission_id: str) -> None:
        client = self._jobs()
        try:
            client.stop_job(submission_id)
        except Exception as e:  # not found or already finished
            logger.info(
                "stopping Ray job: not stopped", extra={"job": submission_id, "reason": str(e)}
            )
        with self._lock:
            asked = self._stops_asked[submission_id] = self._stops_asked.get(submission_id, 0) + 1
        if asked < 2:
            return
        try:
            status = client.get_job_status(submission_id)
            pending = str(getattr(status, "value", status)) == "PENDING"
        except Exception:  # not found: nothing to kill
            return
        if pending and self._kill(submission_id):
            logger.info(
                "Ray job still PENDING after a stop: killed its supervisor",
                extra={"job": submission_id},
            )

    def _list(self) -> None:
        try:
            listed = self._jobs().list_jobs()
        except Exception as e:  # the job server may be starting or absent
            logger.warning("listing Ray jobs failed", extra={"error": str(e)})
            listed = None
        with self._lock:
            self._listing_asked = False
            if listed is not None:
                for job in listed:
                    if str(getattr(job.status, "value", job.status)) in _ENDED:
                        self._stops_asked.pop(job.submission_id, None)
                self._listing = {
                    job.submission_id: str(getattr(job.status, "value", job.status))
                    for job in listed
                    if job.submission_id
                }
                self._messages = {
                    job.submission_id: brief(job.message)
                    for job in listed
                    if job.submission_id and job.message
                }
            elif self._listing is None:
                self._listing = {}
