"""Ray's job server, called from a thread of its own so that it never stalls the manager.

Submitting, stopping and listing jobs are HTTP calls to the dashboard, and when Ray's job
agent is down each can hang for tens of seconds (20 s was seen for one submission). Made
on the manager's event loop, that hung every tenant's queue. Here they run one at a time
on one worker thread: ``submit`` and ``stop`` return at once, ``listing`` returns the last
listing (asking for a fresh one), and submissions that failed are collected for the
manager to count and retry (``failures``). Submitting is idempotent (the submission id is
derived from the admission), so a retry of one that did succeed is harmless.
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


class JobDesk:
    def __init__(self, connect: Callable[[], Any]) -> None:
        """``connect``: makes a ``JobSubmissionClient`` (called on the worker thread)."""
        self._connect = connect
        self._client: Any = None
        self._lock = threading.Lock()
        self._work: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._submitting: set[str] = set()
        self._failures: dict[str, str] = {}
        self._listing: dict[str, str] | None = None
        #: Ray's message of each listed job that has one (why a failed job failed).
        self._messages: dict[str, str] = {}
        self._listing_asked = False
        threading.Thread(target=self._serve, name="ray-queue-jobs", daemon=True).start()

    def submit(self, submission_id: str, request: Mapping[str, Any]) -> None:
        """Submit in the background (once at a time per submission id)."""
        with self._lock:
            if submission_id in self._submitting:
                return
            self._submitting.add(submission_id)
        self._work.put(lambda: self._submit(submission_id, request))

    def stop(self, submission_id: str) -> None:
        self._work.put(lambda: self._stop(submission_id))

    def listing(self) -> Mapping[str, str]:
        """Ray's job statuses by submission id, as last listed; asks for a fresh listing.
        The very first call lists synchronously (recovery needs the truth)."""
        with self._lock:
            listing = self._listing
            if listing is not None and not self._listing_asked:
                self._listing_asked = True
                self._work.put(self._list)
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

    # -- the worker thread --------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            job = self._work.get()
            try:
                job()
            except Exception:
                logger.exception("a call to Ray's job server failed")

    def _jobs(self) -> Any:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def _submit(self, submission_id: str, request: Mapping[str, Any]) -> None:
        try:
            self._jobs().submit_job(submission_id=submission_id, **request)
            logger.info("submitted Ray job %s", submission_id)
        except Exception as e:
            if "already exists" in str(e):
                return
            logger.warning("submitting Ray job %s failed: %s", submission_id, e)
            with self._lock:
                self._failures[submission_id] = str(e)
        finally:
            with self._lock:
                self._submitting.discard(submission_id)

    def _stop(self, submission_id: str) -> None:
        try:
            self._jobs().stop_job(submission_id)
        except Exception as e:  # not found or already finished
            logger.info("stopping job %s: %s", submission_id, e)

    def _list(self) -> None:
        try:
            listed = self._jobs().list_jobs()
        except Exception as e:  # the job server may be starting or absent
            logger.warning("listing Ray jobs failed: %s", e)
            listed = None
        with self._lock:
            self._listing_asked = False
            if listed is not None:
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
