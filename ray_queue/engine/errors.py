"""Typed errors, named by what the caller can do about them.

They live in the engine because the engine is where bad input is first recognised; the
public package re-exports them (``ray_queue.ConfigError`` …) and the gRPC layer maps each
to one status code.
"""

from __future__ import annotations

from dataclasses import dataclass


class RayQueueError(Exception):
    """Root of every error ray-queue raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a config: which document, which field, what to do."""

    document: str
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.document}: {self.field}" if self.field else self.document
        return f"{where}: {self.message}"


class ConfigError(RayQueueError):
    """The config was rejected as a whole; nothing changed. ``problems`` lists every issue."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"config rejected ({len(problems)} problem(s)); the running config is unchanged:\n"
            f"{lines}"
        )


class InvalidWorkloadError(RayQueueError, ValueError):
    """The workload itself is malformed (negative resources, no bundles, bad counts)."""


class UnknownQueueError(RayQueueError, LookupError):
    """The named Queue does not exist. Apply a config that defines it, or use another."""


class UnknownPriorityClassError(RayQueueError, LookupError):
    """The named PriorityClass does not exist. Define it in the config, or omit it."""


class UnknownWorkloadError(RayQueueError, LookupError):
    """No workload has this id (never submitted, or forgotten after finishing)."""


class DuplicateWorkloadError(RayQueueError):
    """A workload with this id was already submitted; ids must be unique."""


class WorkloadRejected(RayQueueError):
    """The workload can never be admitted (e.g. it asks for more than any quota can give)."""


class InvalidTransitionError(RayQueueError):
    """The event does not apply to the workload's current state (e.g. finishing a pending one)."""
