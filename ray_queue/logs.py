"""Log lines as key/value pairs (logfmt): ``ts=… level=… logger=… msg=… key=value …``.

Modules log a short constant message and put what varies in fields, as Kueue and Ray's
autoscaler do::

    logger.info("cycle", extra={"decisions": 3, "schedule_ms": 1.2})

which ``LogfmtFormatter`` writes as one greppable line that Loki, Vector or any logfmt
parser reads without a regex::

    ts=2026-12-07T11:53:31.123Z level=info logger=ray_queue.manager.core msg=cycle \
decisions=3 schedule_ms=1.2

Each module logs through ``logging.getLogger(__name__)``; only the entry points
(``python -m ray_queue.manager``, the autoscaler's main, the development gRPC server) call
``install``, so a library user's own logging setup is left alone. Values are quoted when
they hold a space, ``=`` or a quote; newlines are escaped, so a record is always one line
(a traceback too, in ``exc``).

Code that runs in users' own processes (``client``, ``capture``: drivers and their Ray
workers) logs under the user's logging setup, whose formatter shows no ``extra`` field, so
it keeps what varies in the message. ``tests/test_logs.py`` holds the rest to fields.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

#: Attributes every ``LogRecord`` has; anything else on a record came from ``extra``.
_STANDARD = frozenset(
    vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


class LogfmtFormatter(logging.Formatter):
    """Formats a record as one logfmt line: the fixed keys, then its ``extra`` fields in
    the order they were given."""

    def format(self, record: logging.LogRecord) -> str:
        pairs: list[tuple[str, object]] = [
            ("ts", _timestamp(record.created)),
            ("level", record.levelname.lower()),
            ("logger", record.name),
            ("msg", record.getMessage()),
        ]
        pairs.extend(fields(record))
        if record.exc_info:
            pairs.append(("exc", self.formatException(record.exc_info)))
        if record.stack_info:
            pairs.append(("stack", record.stack_info))
        return " ".join(f"{key}={_value(value)}" for key, value in pairs)


def fields(record: logging.LogRecord) -> Iterator[tuple[str, object]]:
    """The ``extra`` fields of a record (its non-standard attributes)."""
    for key, value in vars(record).items():
        if key not in _STANDARD and not key.startswith("_"):
            yield key, value


def install(level: int | str = logging.INFO, *, stream: Any = None) -> logging.Handler:
    """Send the root logger's records, as logfmt, to ``stream`` (stderr by default). For
    entry points only. Replaces the plain stream handlers installed before (``basicConfig``,
    an earlier ``install``), so no line is written twice; other handlers (files, a host
    process's own) are kept."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def parse(line: str) -> dict[str, str]:
    """One logfmt line back into its fields (the inverse of ``LogfmtFormatter`` for the
    values it writes; for tests and tools reading our logs)."""
    out: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] == " ":
            i += 1
        if i >= n:
            break
        eq = line.index("=", i)
        key = line[i:eq]
        i = eq + 1
        if i < n and line[i] == '"':
            value, i = _unquote(line, i + 1)
        else:
            end = line.find(" ", i)
            end = n if end < 0 else end
            value, i = line[i:end], end
        out[key] = value
    return out


def _timestamp(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNESCAPES = {'"': '"', "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}


def _value(value: object) -> str:
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, Mapping):
        text = ",".join(f"{k}:{v}" for k, v in value.items())
    else:
        text = str(value)
    if text and not any(c in text for c in ' ="\\\n\r\t'):
        return text
    return '"' + "".join(_ESCAPES.get(c, c) for c in text) + '"'


def _unquote(line: str, i: int) -> tuple[str, int]:
    chars: list[str] = []
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            chars.append(_UNESCAPES.get(line[i + 1], line[i + 1]))
            i += 2
        elif c == '"':
            return "".join(chars), i + 1
        else:
            chars.append(c)
            i += 1
    raise ValueError(f"unterminated quoted value in log line: {line!r}")


__all__ = ["LogfmtFormatter", "fields", "install", "parse"]
