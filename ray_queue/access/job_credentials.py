"""Credentials for the Ray jobs the manager submits: a one-time ticket, then a credential
scoped to the job's Queue for as long as its run is live.

A queued job must reach the queue as itself, never with the token of whoever queued it
and never as admin. Ray shows every job's ``runtime_env`` to every other job, so what
travels there can be read by other tenants' code. What travels is therefore a ticket
that works once: the job's driver trades it (``ray_queue.init``) for the job's
credential, which stays in that process and its children. A ticket read after that is
worth nothing; one stolen before makes the job's own trade fail loudly.

Both are HMAC-SHA256 of the Ray submission id under the manager's key, which is kept in
its state directory (mode 0600) so that both survive a manager restart, as do the
tickets already traded (one line each in a file beside the key). Whether the job is
still running, and in which Queue, is the manager's to check, not this module's.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
from pathlib import Path

#: Env var of a job's runtime_env holding its ticket.
TICKET_ENV = "RAY_QUEUE_JOB_TICKET"
KEY_FILE = "job-credentials.key"
TRADED_FILE = "job-tickets-traded"
_TICKET = "rqticket"
_CREDENTIAL = "rqjob"


class JobCredentials:
    """Mints and checks job tickets and credentials. Thread-safe."""

    def __init__(self, key: bytes, traded_file: Path | None = None) -> None:
        self._key = key
        self._traded_file = traded_file
        self._lock = threading.Lock()
        self._traded: set[str] = set()
        if traded_file is not None and traded_file.exists():
            self._traded = set(traded_file.read_text(encoding="utf-8").split())

    @classmethod
    def in_directory(cls, directory: Path) -> JobCredentials:
        """The manager's key from ``directory``, made on first use."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / KEY_FILE
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            key = bytes.fromhex(path.read_text(encoding="ascii").strip())
        else:
            key = secrets.token_bytes(32)
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(key.hex())
        return cls(key, directory / TRADED_FILE)

    def _mac(self, kind: str, submission_id: str) -> str:
        message = f"{kind}:{submission_id}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def ticket(self, submission_id: str) -> str:
        """What goes into the job's ``runtime_env`` as ``RAY_QUEUE_JOB_TICKET``."""
        return f"{_TICKET}:{submission_id}:{self._mac(_TICKET, submission_id)}"

    def trade(self, ticket: str) -> tuple[str, str]:
        """``(submission id, credential)`` for a ticket, once; ``PermissionError`` for a
        forged ticket or one already traded."""
        submission_id = self._verified(ticket, _TICKET)
        if submission_id is None:
            raise PermissionError("not a job ticket this manager issued")
        with self._lock:
            if submission_id in self._traded:
                raise PermissionError(
                    f"the ticket of Ray job {submission_id} was already traded: only the "
                    "job's first ray_queue.init() gets its credential (pass it on to child "
                    "processes in RAY_QUEUE_TOKEN, as ray_queue.init does)"
                )
            self._traded.add(submission_id)
            if self._traded_file is not None:
                with self._traded_file.open("a", encoding="utf-8") as f:
                    f.write(submission_id + "\n")
        mac = self._mac(_CREDENTIAL, submission_id)
        return submission_id, f"{_CREDENTIAL}:{submission_id}:{mac}"

    def submission_of(self, credential: str) -> str | None:
        """The submission id a job credential was minted for; ``None`` if it is not one."""
        return self._verified(credential, _CREDENTIAL)

    def _verified(self, value: str, kind: str) -> str | None:
        prefix, _, rest = value.partition(":")
        submission_id, _, mac = rest.rpartition(":")
        if prefix != kind or not submission_id:
            return None
        if not hmac.compare_digest(mac, self._mac(kind, submission_id)):
            return None
        return submission_id


def is_job_credential(token: str) -> bool:
    return token.startswith(_CREDENTIAL + ":")
