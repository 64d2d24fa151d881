"""Which live Ray jobs carry a captured driver's worker credential in their runtime_env
(``access/worker_credentials.py``): such a credential is valid only while one does."""

from __future__ import annotations

import json
import logging
import threading
import time

logger = logging.getLogger(__name__)

#: The variable a captured job's runtime_env gives its workers their credential in.
CREDENTIAL_ENV = "RAY_QUEUE_TOKEN"
#: How long one reading of Ray's job table answers: every actor call of a captured
#: job's workers is checked, and a job's end may be noticed this much later.
_FRESH_S = 2.0


class LiveJobCredentials:
    """The worker credentials in the runtime_env of Ray's live jobs, read from Ray's job
    table at most every ``_FRESH_S`` seconds. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._carried: frozenset[str] = frozenset()
        self._read_at = float("-inf")

    def carried(self, credential: str) -> bool:
        with self._lock:
            if time.monotonic() - self._read_at > _FRESH_S:
                self._carried = _read_live_credentials()
                self._read_at = time.monotonic()
            return credential in self._carried


def _read_live_credentials() -> frozenset[str]:
    # Ray's job table with each job's config; the public job_table() drops the config.
    import ray
    from ray.core.generated import gcs_pb2

    accessor = ray._private.state.state._connect_and_get_accessor()
    table = accessor.get_job_table(
        skip_submission_job_info_field=True, skip_is_running_tasks_field=True
    )
    carried: set[str] = set()
    for raw in table:
        # Ray generates its protobuf modules at run time and ships no .pyi.
        entry = gcs_pb2.JobTableData.FromString(raw)  # type: ignore[attr-defined]
        if entry.is_dead:
            continue
        serialized = entry.config.runtime_env_info.serialized_runtime_env
        if not serialized:
            continue
        try:
            env_vars = json.loads(serialized).get("env_vars") or {}
        except (ValueError, AttributeError):
            logger.warning("unreadable runtime_env", extra={"job": entry.job_id.hex()})
            continue
        value = env_vars.get(CREDENTIAL_ENV)
        if isinstance(value, str):
            carried.add(value)
    return frozenset(carried)
