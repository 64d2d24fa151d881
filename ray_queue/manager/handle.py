"""The manager actor as this process reaches it: with its credential on every call.

Where the credential comes from, first found wins: ``ray_queue.init(token=...)``,
``$RAY_QUEUE_TOKEN`` (in a Ray job the manager submitted, the job's own credential, put
there for its driver and workers by the manager), the file named by
``$RAY_QUEUE_TOKEN_FILE``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ray_queue.errors import UnauthenticatedError

TOKEN_ENV = "RAY_QUEUE_TOKEN"
TOKEN_FILE_ENV = "RAY_QUEUE_TOKEN_FILE"
#: Manager methods that take no credential.
_OPEN = frozenset({"ping", "pid"})


class _Method:
    def __init__(self, method: Any, credential: str | None) -> None:
        self._method = method
        self._credential = credential

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._method.remote(*args, credential=self._credential, **kwargs)


class ManagerHandle:
    """Wraps the actor handle: ``handle.status.remote()`` sends the credential along."""

    def __init__(self, actor: Any, credential: str | None) -> None:
        self.actor = actor
        self._credential = credential

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.actor, name)
        return method if name in _OPEN else _Method(method, self._credential)


def credential(token: str | None) -> str | None:
    """This process's credential (see the module docstring); ``None``: none given."""
    if token:
        return token
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    if os.environ.get(TOKEN_FILE_ENV):
        path = Path(os.environ[TOKEN_FILE_ENV])
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise UnauthenticatedError(
                f"cannot read ${TOKEN_FILE_ENV} ({path}): {e.strerror or e}"
            ) from None
    return None
