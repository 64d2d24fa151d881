"""Who is calling the manager actor, and what they may touch.

Ray checks nothing about who calls an actor: any job on the cluster can get the manager
by name. So every actor call carries a credential (``credential=``, added by the client's
``ManagerHandle``) and the actor checks it against the same token table as the gRPC
server: admin for config and evictions, the autoscaler role for demand and admission
checks, tenants for their own Queues only. A job the manager submitted gets a credential
in its runtime_env, for its driver and its Ray workers, scoped to its Queue and valid for
as long as its run is live (``access/job_credentials.py``). With no tokens configured the actor is
open, as the gRPC server is on loopback; with a token config that does not load, it is
closed, and every call says why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ray_queue.access import namespaces, parents, worker_credentials
from ray_queue.access.job_credentials import JobCredentials, is_job_credential
from ray_queue.access.principals import (
    AuthConfigError,
    Principal,
    Role,
    TokenTable,
    describe,
    digest,
    load_tokens,
)
from ray_queue.engine.model import WorkloadId
from ray_queue.errors import PermissionDeniedError, UnauthenticatedError
from ray_queue.manager.handle import TOKEN_ENV
from ray_queue.wire import job_capture_env

logger = logging.getLogger(__name__)

#: Submission id of a live job run → the Queue it was queued in and the job's workload
#: (None: not live).
LiveJob = Callable[[str], "tuple[str, WorkloadId] | None"]


class AccessGuard:
    def __init__(
        self,
        tokens: TokenTable,
        jobs: JobCredentials | None,
        live_job: LiveJob,
        *,
        problem: str | None = None,
        carried: Callable[[str], bool] | None = None,
    ) -> None:
        self._tokens = tokens
        self._jobs = jobs
        self._live_job = live_job
        self._problem = problem
        #: Whether a live Ray job carries a worker credential in its runtime_env.
        self._carried = carried or _live_job_credentials()

    @classmethod
    def from_environment(cls, state_directory: Path, live_job: LiveJob) -> AccessGuard:
        """Tokens from ``RAY_QUEUE_TOKENS_FILE`` / ``RAY_QUEUE_TOKENS`` (as the gRPC server)."""
        try:
            principals = load_tokens()
        except AuthConfigError as e:
            logger.error("actor API closed", extra={"error": str(e)})
            return cls(TokenTable({}), None, live_job, problem=str(e))
        if not principals:
            return cls(TokenTable({}), None, live_job)
        logger.info("actor API needs a token", extra={"tokens_per_role": describe(principals)})
        return cls(TokenTable(principals), JobCredentials.in_directory(state_directory), live_job)

    @property
    def enabled(self) -> bool:
        return self._tokens.enabled or self._problem is not None

    def caller(self, credential: str | None) -> Principal:
        """Who ``credential`` stands for, or ``UnauthenticatedError`` saying what to do."""
        if self._problem is not None:
            raise UnauthenticatedError(
                f"the manager's token config does not load ({self._problem}); fix it and "
                "restart the manager"
            )
        if not self._tokens.enabled:
            return self._tokens.lookup(credential)
        if credential and self._jobs is not None and is_job_credential(credential):
            return self._job_principal(credential)
        if credential and worker_credentials.is_worker_credential(credential):
            return self._worker_principal(credential)
        try:
            return self._tokens.lookup(credential)
        except PermissionError as e:
            raise UnauthenticatedError(
                f"the queue manager needs a token ({e}): pass ray_queue.init(token=...) or "
                "set RAY_QUEUE_TOKEN or RAY_QUEUE_TOKEN_FILE"
            ) from None

    def _job_principal(self, credential: str) -> Principal:
        assert self._jobs is not None
        submission_id = self._jobs.submission_of(credential)
        job = self._live_job(submission_id) if submission_id is not None else None
        if job is None:
            raise UnauthenticatedError(
                "job credential not valid: forged, or its Ray job is no longer running"
            )
        queue, workload = job
        return Principal(
            f"job {submission_id}",
            Role.TENANT,
            frozenset({queue}),
            key=digest(credential),
            namespace=namespaces.of_job(workload),
            job=workload,
        )

    def _worker_principal(self, credential: str) -> Principal:
        """A captured job's workers (``access/worker_credentials.py``): the driver's
        tenant in one Queue, while a live Ray job carries the credential."""
        claim = worker_credentials.parse(credential)
        driver = (
            None if claim is None else worker_credentials.verify(claim, self._tokens.principals())
        )
        principal = (
            None
            if claim is None or driver is None
            else worker_credentials.narrowed(driver, claim, credential)
        )
        if principal is None:
            raise UnauthenticatedError(
                "captured-job worker credential not valid: forged, or its driver's token "
                "was revoked or may not use that queue"
            )
        if not self._carried(credential):
            raise UnauthenticatedError(
                "captured-job worker credential not valid: no running Ray job carries it "
                "(its job has ended)"
            )
        return principal

    def require(self, principal: Principal, what: str, *roles: Role) -> None:
        """``PermissionDeniedError`` unless ``principal`` is admin or has one of ``roles``."""
        if principal.role is Role.ADMIN or principal.role in roles:
            return
        raise PermissionDeniedError(
            f"{what} needs the {' or '.join(r.value for r in (Role.ADMIN, *roles))} role; "
            f"token {principal.name!r} is {principal.role.value}"
        )

    def job_env(self, submission_id: str) -> dict[str, str]:
        """Env vars for a job the manager submits: its credential, when tokens are in use,
        and capture's variables, so that its driver (and the driver's Ray workers) queue
        what they make in the job's Queue as children of the job (docs/capture.md)."""
        env: dict[str, str] = {}
        job = self._live_job(submission_id)
        if job is not None:
            queue, workload = job
            env.update(job_capture_env(queue, workload))
        if self._jobs is not None:
            env[TOKEN_ENV] = self._jobs.credential(submission_id)
        return env

    def attach_refusal(self, principal: Principal, parent: WorkloadId | None) -> str | None:
        """Why ``principal`` may not submit work that belongs to the job ``parent``."""
        return None if parent is None else parents.attach_refusal(principal, parent)


def _live_job_credentials() -> Callable[[str], bool]:
    from ray_queue.manager.job_carriers import LiveJobCredentials

    return LiveJobCredentials().carried
