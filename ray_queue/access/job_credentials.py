"""Credentials for the Ray jobs the manager submits, scoped to the job's Queue (and its
job, for attaching children) for as long as its run is live.

A queued job must reach the queue as itself, never with the token of whoever queued it
and never as admin. The credential travels in the job's ``runtime_env`` as
``RAY_QUEUE_TOKEN``, because the job's Ray workers need it as much as its driver does
(capture: Train's controller, Tune's trials and plain tasks make work there) and Ray gives
a job no channel to its own workers that other jobs cannot read. So other jobs that read
``runtime_env`` can act as the job in its Queue while it runs: the exposure of captured
drivers' worker credentials (docs/security.md), and nothing once the run ends.

It is an HMAC-SHA256 of the Ray submission id under the manager's key, which is kept in
its state directory (mode 0600) so that credentials survive a manager restart. Whether
the job is still running, and in which Queue, is the manager's to check, not this
module's.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

KEY_FILE = "job-credentials.key"
_CREDENTIAL = "rqjob"


class JobCredentials:
    """Mints and checks job credentials. Stateless beyond the key: thread-safe."""

    def __init__(self, key: bytes) -> None:
        self._key = key

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
        return cls(key)

    def _mac(self, kind: str, submission_id: str) -> str:
        message = f"{kind}:{submission_id}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def credential(self, submission_id: str) -> str:
        """The job's credential: what goes into its ``runtime_env`` as ``RAY_QUEUE_TOKEN``."""
        return f"{_CREDENTIAL}:{submission_id}:{self._mac(_CREDENTIAL, submission_id)}"

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
