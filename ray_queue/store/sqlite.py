"""A durable ``Store`` in one SQLite file on the head node.

SQLite gives atomic, fsync'd transactions in a single file with no server, which is
exactly what a single-writer actor needs to survive kill -9. WAL journaling with
``synchronous=FULL`` makes each committed batch durable while keeping a batch of hundreds
of workloads one fsync.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path

from ray_queue.engine.config import QueueConfig
from ray_queue.engine.model import WorkloadId, WorkloadStatus
from ray_queue.store.base import Payload, StoredState
from ray_queue.store.codec import (
    FORMAT_VERSION,
    CodecError,
    dumps_config,
    dumps_status,
    loads_config,
    loads_statuses,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workloads (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    payload TEXT
);
"""


#: Rows parsed at once on load (~50 KB of JSON text). Fewer pay the parser's cost per call
#: more often; many more leave what was parsed out of the CPU's caches by the time it is
#: decoded (1,000 at once was slower than one by one).
_CHUNK_ROWS = 50


def _first(row: tuple[int, WorkloadStatus]) -> int:
    return row[0]


class SQLiteStore:
    """``Store`` backed by ``<directory>/ray_queue.sqlite3``."""

    FILE_NAME = "ray_queue.sqlite3"

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / self.FILE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM meta WHERE key='format'").fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO meta(key, value) VALUES ('format', ?)", (str(FORMAT_VERSION),)
            )
        elif int(row[0]) != FORMAT_VERSION:
            raise CodecError(
                f"{self.path} has store format {row[0]}, this version reads {FORMAT_VERSION}; "
                "move the file away to start fresh"
            )
        seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM workloads").fetchone()
        self._seq = int(seq[0])

    def load(self) -> StoredState:
        row = self._db.execute("SELECT value FROM meta WHERE key='config'").fetchone()
        config = loads_config(row[0]) if row is not None else None
        # Submission order (seq of first write) keeps restore deterministic. Sorted here:
        # SQLite's ORDER BY on the unindexed seq sorts whole rows in a temporary b-tree,
        # 0.8 s of a restart at 100,000 workloads, and an index would cost every write.
        # Decoded in chunks, so the JSON text of every row is never held at once.
        decoded: list[tuple[int, WorkloadStatus]] = []
        rows = self._db.execute("SELECT seq, status FROM workloads")
        while chunk := rows.fetchmany(_CHUNK_ROWS):
            statuses = loads_statuses([status for _, status in chunk])
            decoded.extend(zip([seq for seq, _ in chunk], statuses, strict=True))
        decoded.sort(key=_first)
        payloads: dict[WorkloadId, Payload] = {
            WorkloadId(workload): json.loads(payload)
            for workload, payload in self._db.execute(
                "SELECT id, payload FROM workloads WHERE payload IS NOT NULL"
            )
        }
        return StoredState(config, tuple([status for _, status in decoded]), payloads)

    def write(
        self,
        *,
        config: QueueConfig | None = None,
        workloads: Iterable[WorkloadStatus] = (),
        payloads: Mapping[WorkloadId, Payload] | None = None,
        forget: Iterable[WorkloadId] = (),
    ) -> None:
        payloads = payloads or {}
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if config is not None:
                db.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES ('config', ?)",
                    (dumps_config(config),),
                )
            rows = []
            for status in workloads:
                workload = status.spec.id
                payload = payloads.get(workload)
                self._seq += 1
                rows.append(
                    (
                        workload,
                        self._seq,
                        dumps_status(status),
                        json.dumps(payload) if payload is not None else None,
                    )
                )
            # Keep the first seq (submission order) and any stored payload on update.
            db.executemany(
                "INSERT INTO workloads(id, seq, status, payload) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(id) DO UPDATE SET status=excluded.status, "
                "payload=COALESCE(excluded.payload, workloads.payload)",
                rows,
            )
            db.executemany("DELETE FROM workloads WHERE id=?", [(w,) for w in forget])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._db.close()
