"""What a test does when a tool it needs is missing: skip on a developer's machine, fail
under CI.

``make test`` installs every tool from scratch, so under CI (``CI=true``) a missing one
means a broken install step, which must fail the run rather than pass as a skip; locally
the skip message says how to get the tool.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import NoReturn

import pytest

from tests.k8s import toolchain


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(message: str) -> NoReturn:
    """Inside a test or fixture: fail under CI, else skip, with ``message``."""
    if in_ci():
        pytest.fail(f"CI=true and {message}")
    pytest.skip(message)


def require_k8s_tools(
    items: Sequence[pytest.Item], *, needs_tools: Callable[[pytest.Item], bool]
) -> None:
    """At collection: build the k8s harness tools if missing (outside any test timeout);
    if they cannot be had, stop the run under CI, else skip the ``items`` that
    ``needs_tools``."""
    if not items:
        return
    try:
        toolchain.ensure_tools(lambda msg: print(f"\n[k8s-tools] {msg}", flush=True))
    except toolchain.ToolchainUnavailable as exc:
        if in_ci():
            raise pytest.UsageError(f"CI=true and the k8s harness is unavailable: {exc}") from exc
        skip = pytest.mark.skip(reason=f"k8s harness unavailable: {exc}")
        for item in items:
            if needs_tools(item):
                item.add_marker(skip)
