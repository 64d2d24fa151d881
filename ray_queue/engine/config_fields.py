"""Reading one config mapping while collecting every problem, with its field path.

A config is rejected as a whole with *every* mistake listed, so parsing must never stop
at the first one. A ``Fields`` view reads one mapping of a document: a bad value is
recorded as a ``ConfigProblem`` (document label, dotted field path, what to do) and
``None`` comes back, so the caller falls back to a default and carries on. Each view
remembers the keys it was asked about; in strict documents (our own apiVersion) the
keys nobody asked about are reported as unknown fields, with the closest known name,
because a typo such as ``nominalQouta`` would otherwise be ignored without a word.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
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


@dataclass(slots=True)
class DocumentContext:
    """The document being read: its label for messages, and how strict to be."""

    label: str
    problems: Problems
    #: Our own apiVersion: unknown fields are errors. Kueue's: they are ignored.
    strict: bool
    views: list[Fields] = field(default_factory=list)

    def report(self, field_path: str, message: str) -> None:
        self.problems.add(self.label, field_path, message)

    def finish(self) -> None:
        """Report unknown fields of every mapping read (strict documents only)."""
        if self.strict:
            for view in self.views:
                view.report_unknown()


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
        """Accept these keys without reading them (e.g. ``status``)."""
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

    def report_unknown(self) -> None:
        for key in self.data:
            if isinstance(key, str) and key in self.known:
                continue
            hint = ""
            close = difflib.get_close_matches(str(key), sorted(self.known), n=1)
            if close:
                hint = f"did you mean {close[0]!r}? "
            self.problem(
                str(key),
                f"unknown field; {hint}fields allowed here: {', '.join(sorted(self.known))}",
            )
