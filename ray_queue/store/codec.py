"""Engine values ⇄ JSON, for the store.

The store must survive a kill -9 and a software upgrade, so it holds plain JSON rather than
pickles. Rather than hand-write an encoder per dataclass (and forget a field when the
engine grows one), the codec walks the type hints of the engine's frozen dataclasses:
enums by value, tuples as lists, mappings as ``[key, value]`` pairs (keys such as
``(flavor, resource)`` are not strings), ``X | None`` as ``null``. Decoding uses the same
hints, so ``decode(T, encode(value)) == value`` for every engine value type.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from enum import Enum
from functools import cache
from typing import Any, TypeVar, Union

from ray_queue.engine.config import QueueConfig
from ray_queue.engine.model import WorkloadStatus

T = TypeVar("T")

#: Bumped when the stored shape changes incompatibly; old stores are then refused loudly.
FORMAT_VERSION = 1


class CodecError(ValueError):
    """Stored data does not match the shape the engine expects."""


_SCALARS = frozenset({type(None), bool, int, float, str})


def encode(value: Any) -> Any:
    """A JSON-compatible form of an engine value (dataclasses, enums, tuples, mappings)."""
    # Exact scalar types first: the store encodes every committed workload on the
    # manager's hot path, and most values are plain scalars (str enums are not: their
    # type is the enum, so they fall through to the next check).
    if type(value) in _SCALARS:
        return value
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bool | int | float | str):
        return value
    names = _field_names(type(value))
    if names is not None:
        return {name: encode(getattr(value, name)) for name in names}
    if isinstance(value, Mapping):
        return [[encode(k), encode(v)] for k, v in value.items()]
    if isinstance(value, tuple | list | frozenset | set):
        return [encode(v) for v in value]
    raise CodecError(f"cannot encode {type(value).__name__}")


def decode(tp: Any, data: Any) -> Any:
    """Rebuild a value of type ``tp`` from ``encode``'s output."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return data
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return decode(non_none[0], data)
        for arg in non_none:
            try:
                return decode(arg, data)
            except (CodecError, TypeError, ValueError):
                continue
        raise CodecError(f"{data!r} matches none of {tp}")
    supertype = getattr(tp, "__supertype__", None)
    if supertype is not None:  # NewType
        return tp(decode(supertype, data))
    if isinstance(tp, type) and issubclass(tp, Enum):
        return tp(data)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise CodecError(f"expected an object for {tp.__name__}, got {type(data).__name__}")
        hints = _hints(tp)
        kwargs = {name: decode(hints[name], data[name]) for name in hints if name in data}
        return tp(**kwargs)
    if origin in (tuple,):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(decode(args[0], v) for v in data)
        return tuple(decode(a, v) for a, v in zip(args, data, strict=True))
    if origin in (frozenset, set):
        (arg,) = typing.get_args(tp)
        return origin(decode(arg, v) for v in data)
    if origin in (list,):
        (arg,) = typing.get_args(tp)
        return [decode(arg, v) for v in data]
    if origin in (dict, Mapping):
        key_t, value_t = typing.get_args(tp)
        return {decode(key_t, k): decode(value_t, v) for k, v in data}
    if tp in (int, str, bool):
        if not isinstance(data, tp):
            raise CodecError(f"expected {tp.__name__}, got {data!r}")
        return data
    if tp is float:
        if not isinstance(data, int | float):
            raise CodecError(f"expected a number, got {data!r}")
        return float(data)
    raise CodecError(f"cannot decode type {tp!r}")


@cache
def _field_names(tp: type) -> tuple[str, ...] | None:
    """A dataclass type's field names (``dataclasses.fields`` rebuilds them every call)."""
    if not dataclasses.is_dataclass(tp):
        return None
    return tuple(f.name for f in dataclasses.fields(tp))


@cache
def _hints(tp: type) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(tp)}
    return {k: v for k, v in typing.get_type_hints(tp).items() if k in fields}


def dumps_status(status: WorkloadStatus) -> str:
    return json.dumps(encode(status), separators=(",", ":"))


def loads_status(text: str) -> WorkloadStatus:
    return typing.cast(WorkloadStatus, decode(WorkloadStatus, json.loads(text)))


def dumps_config(config: QueueConfig) -> str:
    return json.dumps(encode(config), separators=(",", ":"))


def loads_config(text: str) -> QueueConfig:
    return typing.cast(QueueConfig, decode(QueueConfig, json.loads(text)))


def roundtrip(tp: type[T], value: T) -> T:
    """``decode(tp, encode(value))`` through real JSON text (used by tests)."""
    return typing.cast(T, decode(tp, json.loads(json.dumps(encode(value)))))
