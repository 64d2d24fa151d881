"""Child processes that always die, and bounded waits.

Why this exists: the harness starts etcd, kube-apiserver, the KubeRay operator and Ray nodes.
Each runs in its own process group (so its children go with it), logs to a file (so a
failure can show the tail), and is stopped SIGTERM-then-SIGKILL at teardown even when a test
failed. ``wait_for`` replaces bare sleeps: every wait has a deadline and says what it waited
for when it gives up.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """A bounded wait ran out; the message names what never became true."""


def wait_for(
    pred: Callable[[], T | None],
    timeout_s: float,
    *,
    interval_s: float = 0.2,
    what: str = "condition",
) -> T:
    """Poll ``pred`` until it returns something truthy and return that, or raise WaitTimeout.

    Exceptions from ``pred`` count as "not yet"; the last one is reported on timeout.
    """
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while True:
        try:
            result = pred()
            if result:
                return result
        except Exception as exc:  # the thing polled is not up yet
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise WaitTimeout(f"timed out after {timeout_s:.0f} s waiting for {what}{detail}")
        time.sleep(interval_s)


_PR_SET_PDEATHSIG = 1
_LIBC: ctypes.CDLL | None = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError):
        # Loaded here, not in the child: nothing but async-signal-safe work after fork.
        _LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL me if the thread that started me dies.

    Teardown and atexit cover a test that fails; this covers the test process itself being
    killed (SIGKILL from a CI time limit), after which nothing of ours could run. Linux only;
    elsewhere a no-op.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_LIVE: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()
"""Every process started and not yet stopped, so an interpreter exit still stops them."""


@atexit.register
def _stop_leftovers() -> None:
    for proc in list(_LIVE):
        proc.stop(grace_s=3.0)


class ManagedProcess:
    """One child process in its own process group, with its output in ``log_path``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,  # its own process group: killpg reaches its children
                preexec_fn=_die_with_parent,
            )
        self.pgid = self.popen.pid
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> bool:
        """True while running; raises with the log tail once the process has exited."""
        code = self.popen.poll()
        if code is not None:
            raise RuntimeError(
                f"{self.name} exited with code {code}; last lines of {self.log_path}:\n"
                f"{self.log_tail()}"
            )
        return True

    def stop(self, *, grace_s: float = 10.0) -> None:
        """SIGTERM the whole group, then SIGKILL it after ``grace_s``. Idempotent."""
        _LIVE.discard(self)
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=wait_s)
            if self.popen.poll() is not None and not _group_alive(self.pgid):
                return
        # The leader is gone; make sure no straggler in its group survives.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pgid, signal.SIGKILL)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
