"""Where a benchmark number came from: the machine and the commit that produced it.

Every benchmark report carries these, so a figure in benchmarks/README.md can always be
traced to the code it measured and the machine it ran on.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]


def command(module: str, argv: Sequence[str] | None) -> str:
    """The command line that reproduces this run: the real one when run from a shell
    (``argv`` is ``None``), else ``python -m <module>`` with the arguments a test gave."""
    if argv is None:
        return shlex.join(sys.orig_argv)
    return shlex.join(["python", "-m", module, *argv])


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
    }


def git(*measured: str) -> dict[str, Any]:
    """The commit, and whether the measured paths had uncommitted changes (changes
    elsewhere in the tree do not affect the numbers, so they do not count)."""

    def run(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    # Reports being rewritten under benchmarks/results, and prose, are not measured code.
    paths = [*measured, ":(exclude)benchmarks/results", ":(exclude)*.md"]
    status = run("status", "--porcelain", "--untracked-files=no", "--", *paths)
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}
