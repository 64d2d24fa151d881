"""Reading one config mapping while collecting every problem, with its field path.

A config is rejected as a whole with *every* mistake listed, so parsing must never stop
at the first one. A ``Fields`` view reads one mapping of a document: a bad value is
recorded as a ``ConfigProblem`` (document label, dotted field path, what to do) and
``None`` comes back, so the caller falls back to a default and carries on. Each view
remembers the keys it was asked about; in every document, whatever its apiVersion, the
keys nobody asked about are problems, because a field dropped without a word changes
what the config means (a misspelt ``borowingLimit: 0`` would leave borrowing
unlimited). A field the document's ``ray-queue.io/ignore-fields`` annotation lists is
dropped silently instead, and a listed path that matches nothing is itself a problem.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from ray_queue.engine.errors import ConfigProblem
from ray_queue.engine.model import Milli
from ray_queue.engine.quantity import (
    QuantityError,
    parse_duration,
    parse_quantity,
    parse_quantity_exact,
)


class Problems:
    """Every problem found so far, in the order found."""

    def __init__(self) -> None:
        self.items: list[ConfigProblem] = []

    def add(self, document: str, field_path: str, message: str) -> None:
        self.items.append(ConfigProblem(document=document, field=field_path, message=message))


#: The annotation that lists fields to drop silently: comma-separated field paths.
IGNORE_ANNOTATION = "ray-queue.io/ignore-fields"


@functools.lru_cache(maxsize=512)
def path_pattern(pattern: str) -> re.Pattern[str]:
    """A field path as messages print it; ``[*]`` stands for any one list position.

    Everything else is literal, so ``spec.resourceGroups[*].flavors[*].resources[name=pods]``
    matches ``spec.resourceGroups[1].flavors[0].resources[name=pods]``.
    """
    parts = (re.escape(part) for part in pattern.split("[*]"))
    return re.compile(r"\[[^\]]+\]".join(parts))


def wildcard(path: str) -> str:
    """``path`` with every list index as ``[*]``: one opt-out line for all positions."""
    return re.sub(r"\[\d+\]", "[*]", path)


@dataclass(frozen=True, slots=True)
class UnreadField:
    """A real Kueue (or Kubernetes) field that ray-queue does not carry over."""

    #: Why, in a few words, for the message.
    reason: str
    #: Values that mean what ray-queue does anyway: accepted, since dropping them changes
    #: nothing (``namespaceSelector: {}`` selects every namespace).
    neutral: tuple[object, ...] = ()
    #: Whose field it is, for the message.
    owner: str = "Kueue"

    def accepts(self, value: object) -> bool:
        # Type-strict: ``0 == False`` must not make 0 neutral.
        return any(type(value) is type(n) and value == n for n in self.neutral)


@dataclass(slots=True)
class DocumentContext:
    """The document being read: its label for messages, and what it may leave unread."""

    label: str
    problems: Problems
    #: Our own apiVersion, which has fields only ray-queue knows (``workerGroup`` …).
    ours: bool
    #: Known fields not carried over, by field path (``[*]`` for any list position).
    unsupported: Mapping[str, UnreadField] = field(default_factory=dict)
    views: list[Fields] = field(default_factory=list)
    #: The document's ignore-fields patterns, as written → compiled, and which matched.
    ignored: dict[str, re.Pattern[str]] = field(default_factory=dict)
    ignored_used: set[str] = field(default_factory=set)
    ignored_at: str = ""
    #: Paths reported as droppable, offered when an ignore-fields path matches nothing.
    rejected: list[str] = field(default_factory=list)

    def report(self, field_path: str, message: str) -> None:
        self.problems.add(self.label, field_path, message)

    def ignore(self, where: str, patterns: Iterable[str]) -> None:
        """Drop the fields at these paths silently (the ignore-fields annotation, at ``where``)."""
        self.ignored_at = where
        self.ignored = {p: path_pattern(p) for p in patterns}

    def reject(self, field_path: str, message: str) -> None:
        """A field ray-queue would drop: a problem, unless the document says to ignore it."""
        hits = [p for p, rx in self.ignored.items() if rx.fullmatch(field_path)]
        self.ignored_used.update(hits)
        if not hits:
            self.rejected.append(field_path)
            self.report(field_path, message)

    def unsupported_at(self, field_path: str) -> UnreadField | None:
        for pattern, entry in self.unsupported.items():
            if path_pattern(pattern).fullmatch(field_path):
                return entry
        return None

    def finish(self) -> None:
        """Report every field no one read, then the ignore-fields paths that matched none."""
        for view in self.views:
            view.report_unread()
        for pattern in self.ignored:
            if pattern not in self.ignored_used:
                self.report(self.ignored_at, _stale_message(pattern, self.rejected))


def _stale_message(pattern: str, rejected: list[str]) -> str:
    close = difflib.get_close_matches(pattern, [*rejected, *map(wildcard, rejected)], n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return (
        f"{pattern!r} matches no field that ray-queue would drop in this document; "
        f"{hint}fix the path or remove it from the list"
    )


T = TypeVar("T")


class Fields:
    """A read-only view of one mapping in a document, at ``path``.

    Every accessor records a problem (and returns ``None``) when the value is present but
    wrong, or absent but required; it never raises.
    """

    def __init__(self, ctx: DocumentContext, path: str, data: Mapping[object, object]) -> None:
        self.ctx = ctx
        self.path = path
        self.data = data
        self.known: set[str] = set()
        ctx.views.append(self)

    def at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def problem(self, key: str, message: str) -> None:
        self.ctx.report(self.at(key), message)

    def allow(self, *keys: str) -> None:
        """Accept these keys without reading them (Kubernetes plumbing such as ``status``)."""
        self.known.update(keys)

    def raw(self, key: str, *, required: bool = False) -> object | None:
        self.known.add(key)
        value = self.data.get(key)
        if value is None and required:
            self.problem(key, f"is required; add {key!r} here")
        return value

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.raw(key, required=required)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            self.problem(key, f"must be a non-empty string, got {value!r}")
            return None
        return value

    def boolean(self, key: str) -> bool | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, bool):
            self.problem(key, f"must be true or false, got {value!r}")
            return None
        return value

    def integer(
        self, key: str, *, required: bool = False, minimum: int | None = None
    ) -> int | None:
        value = self.raw(key, required=required)
        if value is None:
            return None
        # An integral float is accepted: JSON documents that went through a protobuf
        # Struct (the gRPC API) carry every number as a double.
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            self.problem(key, f"must be an integer, got {value!r}")
            return None
        if minimum is not None and value < minimum:
            self.problem(key, f"must be >= {minimum}, got {value}")
            return None
        return value

    def quantity(self, key: str, *, required: bool = False) -> Milli | None:
        """A non-negative Kubernetes quantity in milli-units."""
        value = self.raw(key, required=required)
        if value is None:
            return None
        try:
            amount = parse_quantity(value)
        except QuantityError as err:
            self.problem(key, str(err))
            return None
        if amount < 0:
            self.problem(key, f"must be >= 0, got {value}")
            return None
        return amount

    def weight(self, key: str) -> float | None:
        """A fair-sharing weight: a non-negative quantity, kept as a float (``"0.5"``)."""
        value = self.raw(key)
        if value is None:
            return None
        try:
            exact = parse_quantity_exact(value)
        except QuantityError as err:
            self.problem(key, str(err))
            return None
        if exact < 0:
            self.problem(key, f"must be >= 0, got {value}")
            return None
        return float(exact)

    def duration(self, key: str) -> float | None:
        value = self.raw(key)
        if value is None:
            return None
        try:
            seconds = parse_duration(value)
        except QuantityError as err:
            self.problem(key, str(err))
            return None
        if seconds < 0:
            self.problem(key, f"must be >= 0, got {value}")
            return None
        return seconds

    def choice(self, key: str, allowed: Mapping[str, T]) -> T | None:
        value = self.raw(key)
        if value is None:
            return None
        if isinstance(value, str) and value in allowed:
            return allowed[value]
        self.problem(key, f"must be one of {', '.join(allowed)}; got {value!r}")
        return None

    def child(self, key: str, *, required: bool = False) -> Fields | None:
        value = self.raw(key, required=required)
        if value is None:
            return None
        if not isinstance(value, Mapping):
            self.problem(key, f"must be a mapping, got {type(value).__name__}")
            return None
        return Fields(self.ctx, self.at(key), value)

    def children(self, key: str, *, required: bool = False) -> list[Fields]:
        value = self.raw(key, required=required)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(key, f"must be a list, got {type(value).__name__}")
            return []
        views = []
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                views.append(Fields(self.ctx, f"{self.at(key)}[{i}]", item))
            else:
                self.ctx.report(f"{self.at(key)}[{i}]", f"must be a mapping, got {item!r}")
        return views

    def strings(self, key: str, *, required: bool = False) -> list[str]:
        value = self.raw(key, required=required)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(key, f"must be a list of strings, got {type(value).__name__}")
            return []
        out = []
        for i, item in enumerate(value):
            if isinstance(item, str) and item:
                out.append(item)
            else:
                self.ctx.report(f"{self.at(key)}[{i}]", f"must be a non-empty string, got {item!r}")
        return out

    def string_map(self, key: str, *, scalars: bool = False) -> dict[str, str]:
        """A ``map[string]string``; with ``scalars``, numbers and booleans are stringified."""
        value = self.raw(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problem(key, f"must be a mapping of strings, got {type(value).__name__}")
            return {}
        out: dict[str, str] = {}
        for k, v in value.items():
            where = f"{self.at(key)}.{k}"
            if not isinstance(k, str):
                self.ctx.report(where, f"keys must be strings, got {k!r}")
            elif isinstance(v, str):
                out[k] = v
            elif scalars and isinstance(v, bool):
                out[k] = "true" if v else "false"
            elif scalars and isinstance(v, int | float):
                out[k] = str(v)
            else:
                self.ctx.report(where, f"must be a string, got {v!r}; quote it")
        return out

    def report_unread(self) -> None:
        """Every key no accessor read: a problem, unless it is neutral or ignored."""
        for key, value in self.data.items():
            if isinstance(key, str) and key in self.known:
                continue
            path = self.at(str(key))
            entry = self.ctx.unsupported_at(path)
            if entry is None:
                self.ctx.reject(path, self._unknown(str(key)))
            elif not entry.accepts(value):
                self.ctx.reject(
                    path,
                    f"{entry.owner} field not supported by ray-queue ({entry.reason}); remove "
                    f"it, or list it in the {IGNORE_ANNOTATION} annotation to ignore it",
                )

    def _unknown(self, key: str) -> str:
        # Known-unsupported fields are worth suggesting too: their message says what to do.
        candidates = sorted(self.known | self._unsupported_here())
        close = difflib.get_close_matches(key, candidates, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        message = f"unknown field; {hint}fields allowed here: {', '.join(sorted(self.known))}"
        if not self.ctx.ours:
            # A Kueue newer than ray-queue may have fields it has never heard of.
            message += f"; to drop it on purpose, list it in the {IGNORE_ANNOTATION} annotation"
        return message

    def _unsupported_here(self) -> set[str]:
        names = set()
        for pattern in self.ctx.unsupported:
            parent, _, leaf = pattern.rpartition(".")
            if path_pattern(parent).fullmatch(self.path):
                names.add(leaf)
        return names
