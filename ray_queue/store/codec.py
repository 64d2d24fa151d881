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
import zlib
from collections.abc import Callable, Mapping, Sequence
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


Encoder = Callable[[Any], Any]


def encode(tp: Any, value: Any) -> Any:
    """A JSON-compatible form of ``value``, an engine value of type ``tp``."""
    return encoder(tp)(value)


@cache
def encoder(tp: Any) -> Encoder:
    """A function encoding values of type ``tp``, built once from its type hints.

    Why specialise: the store encodes every committed workload on the manager's hot path,
    and a walker that inspects each value's type at run time spent more time asking what a
    value is than encoding it. The hints are the same ones ``decode`` reads, so the two
    stay symmetric by construction.
    """
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) != 1:
            raise CodecError(f"cannot encode the union {tp!r}: one type or None, please")
        inner = encoder(non_none[0])
        return lambda v: None if v is None else inner(v)
    supertype = getattr(tp, "__supertype__", None)
    if supertype is not None:  # NewType
        return encoder(supertype)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return _enum_value
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_encoder(tp)
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        items = tuple(encoder(a) for a in args)
        return lambda v: [enc(x) for enc, x in zip(items, v, strict=True)]
    if origin in (tuple, list, frozenset, set):
        item = encoder(args[0])
        if item is _identity:
            return list
        return lambda v: [item(x) for x in v]
    if origin in (dict, Mapping):
        key, val = encoder(args[0]), encoder(args[1])
        return lambda v: [[key(k), val(x)] for k, x in v.items()]
    if tp in _SCALARS:
        return _identity
    raise CodecError(f"cannot encode type {tp!r}")


_SCALARS = (type(None), bool, int, float, str)


def _identity(value: Any) -> Any:
    return value


def _enum_value(value: Enum) -> Any:
    return value.value


def _dataclass_encoder(tp: type) -> Encoder:
    fields = tuple((name, encoder(hint)) for name, hint in _hints(tp).items())

    def encode_dataclass(value: Any) -> dict[str, Any]:
        return {name: enc(getattr(value, name)) for name, enc in fields}

    return encode_dataclass


def decode(tp: Any, data: Any) -> Any:
    """Rebuild a value of type ``tp`` from ``encode``'s output."""
    return decoder(tp)(data)


Decoder = Callable[[Any], Any]


@cache
def decoder(tp: Any) -> Decoder:
    """A function decoding ``encode``'s output of type ``tp``, built once from its hints.

    Why specialise: a restarted manager decodes every stored workload before it serves
    again (100,000 at issue 23's scale), and a walker asking ``typing`` what each value's
    type is spent ~15x longer asking than building (0.9 ms per status, 90 s to restore).
    """
    origin = typing.get_origin(tp)
    if tp is Any:
        return _identity
    if origin in (Union, types.UnionType):
        return _union_decoder(tp)
    supertype = getattr(tp, "__supertype__", None)
    if supertype is not None:  # NewType: calling it is the identity
        return decoder(supertype)
    if isinstance(tp, type) and issubclass(tp, Enum):
        return _enum_decoder(tp)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _dataclass_decoder(tp)
    args = typing.get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            item = decoder(args[0])
            if item is _identity:
                return tuple
            return lambda data: tuple([item(v) for v in data])
        items = tuple(decoder(a) for a in args)
        return lambda data: tuple([dec(v) for dec, v in zip(items, data, strict=True)])
    if origin in (frozenset, set, list):
        item = decoder(args[0])
        build = origin
        return lambda data: build([item(v) for v in data])
    if origin in (dict, Mapping):
        key, val = decoder(args[0]), decoder(args[1])
        return lambda data: {key(k): val(v) for k, v in data}
    if tp in (int, str, bool):
        return _exact(tp)
    if tp is float:
        return _float
    raise CodecError(f"cannot decode type {tp!r}")


def _union_decoder(tp: Any) -> Decoder:
    args = typing.get_args(tp)
    nullable = type(None) in args
    non_none = [decoder(a) for a in args if a is not type(None)]
    if len(non_none) == 1:
        (inner,) = non_none

        def optional(data: Any) -> Any:
            if data is None and nullable:
                return None
            return inner(data)

        return optional

    def first_match(data: Any) -> Any:
        if data is None and nullable:
            return None
        for dec in non_none:
            try:
                return dec(data)
            except (CodecError, TypeError, ValueError):
                continue
        raise CodecError(f"{data!r} matches none of {tp}")

    return first_match


def _dataclass_decoder(tp: type) -> Decoder:
    hints = _hints(tp)
    # The constructor's own order: positional arguments cost less than keywords.
    fields = tuple((f.name, decoder(hints[f.name])) for f in dataclasses.fields(tp) if f.init)
    build: Callable[..., Any] = tp

    def decode_dataclass(data: Any) -> Any:
        if not isinstance(data, dict):
            raise CodecError(f"expected an object for {tp.__name__}, got {type(data).__name__}")
        try:
            return build(*[dec(data[name]) for name, dec in fields])
        except KeyError:
            # Fields absent from the data take their defaults: a store written before a
            # field was added still reads.
            return build(**{name: dec(data[name]) for name, dec in fields if name in data})

    init_hints = [(f.name, hints[f.name]) for f in dataclasses.fields(tp) if f.init]
    return _compiled(tp, init_hints, decode_dataclass)


def _compiled(tp: type, fields: list[tuple[str, Any]], general: Decoder) -> Decoder:
    """``general`` (the decoder above) with a fast path compiled for ``tp``'s fields.

    Why: the per-field decoder calls of ``general`` were most of a restart's CPU at
    100,000 workloads (a call per scalar, five million in all). The fast path is one
    expression per field with the type checks of common types written inline. It only
    *returns* when every field is present and of exactly the expected JSON type, and
    then builds what ``general`` builds; anything else (a missing field, a wrong type)
    goes to ``general``, which gives the defaults or the ``CodecError`` as before.
    """
    namespace: dict[str, Any] = {"build": tp, "general": general, "new": object.__new__}
    exprs = [_inline(hint, f"data[{name!r}]", namespace) for name, hint in fields]
    if _plain_slots(tp):
        # Its __init__ would only set each slot, through object.__setattr__ (frozen): its
        # slots' own setters do the same in half the time.
        for name, _ in fields:
            namespace[f"set_{name}"] = tp.__dict__[name].__set__
        body = "".join(
            f"            set_{name}(made, {expr})\n"
            for (name, _), expr in zip(fields, exprs, strict=True)
        )
        build = f"            made = new(build)\n{body}            return made\n"
    else:
        build = f"            return build({', '.join(exprs)})\n"
    source = (
        "def fast(data):\n"
        "    if type(data) is dict:\n"
        "        try:\n"
        f"{build}"
        "        except Exception:\n"
        "            pass\n"
        "    return general(data)\n"
    )
    exec(compile(source, f"<decoder of {tp.__qualname__}>", "exec"), namespace)
    return typing.cast(Decoder, namespace["fast"])


def _plain_slots(tp: type) -> bool:
    """Whether ``tp``'s constructor does nothing but set each field's slot (no
    ``__post_init__``, no field left out of ``__init__``, its own generated ``__init__``)."""
    fields = dataclasses.fields(tp)
    # dataclasses compiles the __init__ it writes from text: a hand-written one has a file.
    init = getattr(tp.__dict__.get("__init__"), "__code__", None)
    return (
        not hasattr(tp, "__post_init__")
        and getattr(init, "co_filename", "") == "<string>"
        and all(f.init for f in fields)
        and all(isinstance(tp.__dict__.get(f.name), types.MemberDescriptorType) for f in fields)
    )


def _inline(tp: Any, expr: str, namespace: dict[str, Any]) -> str:
    """Python source decoding ``expr`` (evaluated once) as ``decoder(tp)`` would, with
    the checks of scalars, enums, optionals and tuples inline; other types call their
    decoder. Names it needs are added to ``namespace``."""
    n = len(namespace)
    var = f"v{n}"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    supertype = getattr(tp, "__supertype__", None)
    if tp is Any:
        return expr
    if supertype is not None:  # NewType
        return _inline(supertype, expr, namespace)
    if tp in (int, str, bool, float):
        # ``_exact``/``_float`` accept more than the exact type (an int for a float):
        # anything but the exact type goes through them.
        namespace[f"check{n}"] = decoder(tp)
        return f"({var} if type({var} := {expr}) is {tp.__name__} else check{n}({var}))"
    if isinstance(tp, type) and issubclass(tp, Enum):
        # An unknown or unhashable value raises here, and ``general`` reports it.
        namespace[f"members{n}"] = {member.value: member for member in tp}
        return f"members{n}[{expr}]"
    if origin in (Union, types.UnionType) and len(args) == 2 and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        namespace[var] = None  # reserves the name
        return f"(None if ({var} := {expr}) is None else {_inline(inner, var, namespace)})"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        namespace[f"item{n}"] = decoder(args[0])
        return f"tuple(map(item{n}, {expr}))"
    if origin in (dict, Mapping) and all(a in (int, str, bool, float) for a in args):
        # Resources and checks: a comprehension of [key, value] pairs, as decoder() builds.
        namespace[f"k{n}"] = namespace[f"x{n}"] = None  # reserves the names
        key = _inline(args[0], f"k{n}", namespace)
        value = _inline(args[1], f"x{n}", namespace)
        return f"{{{key}: {value} for k{n}, x{n} in {expr}}}"
    namespace[f"dec{n}"] = decoder(tp)
    return f"dec{n}({expr})"


def _enum_decoder(tp: type[Enum]) -> Decoder:
    # A dict lookup: calling the enum class goes through EnumType.__call__ and __new__,
    # five times slower, for the million enum values of 100,000 statuses.
    members = {member.value: member for member in tp}

    def member(data: Any) -> Enum:
        try:
            return members[data]
        except (KeyError, TypeError):
            raise CodecError(f"{data!r} is not a {tp.__name__}") from None

    return member


def _exact(tp: type) -> Decoder:
    def check(data: Any) -> Any:
        # The exact type first: cheaper than isinstance, and what JSON gives.
        if type(data) is not tp and not isinstance(data, tp):
            raise CodecError(f"expected {tp.__name__}, got {data!r}")
        return data

    return check


def _float(data: Any) -> float:
    if type(data) is float:
        return data
    if not isinstance(data, int | float):
        raise CodecError(f"expected a number, got {data!r}")
    return float(data)


@cache
def _hints(tp: type) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(tp)}
    return {k: v for k, v in typing.get_type_hints(tp).items() if k in fields}


def dumps_status(status: WorkloadStatus) -> str:
    return json.dumps(_encode_status(status), separators=(",", ":"))


_encode_status = encoder(WorkloadStatus)


_decode_status = decoder(WorkloadStatus)


def loads_status(text: str) -> WorkloadStatus:
    return typing.cast(WorkloadStatus, _decode_status(json.loads(text)))


def loads_statuses(texts: Sequence[str]) -> list[WorkloadStatus]:
    """``loads_status`` of each of ``texts``, parsed as one JSON array: the parser's cost
    per call and its cache of key strings (per call) are paid once per chunk of a
    restart's rows rather than once per row (a fifth of loading 100,000 workloads).
    If the rows do not join into one object each, they are parsed one by one, which
    raises as ``loads_status`` does. ``dumps_status`` writes every row whole; only two
    broken rows that complete each other would pass as the objects they join into,
    which the decoder then checks as it checks any row."""
    try:
        data = json.loads("[" + ",".join(texts) + "]")
    except ValueError:
        data = None
    if data is None or len(data) != len(texts) or not all(type(d) is dict for d in data):
        return [loads_status(text) for text in texts]
    return [_decode_status(item) for item in data]


def dumps_config(config: QueueConfig) -> str:
    return json.dumps(encode(QueueConfig, config), separators=(",", ":"))


def loads_config(text: str) -> QueueConfig:
    return typing.cast(QueueConfig, decode(QueueConfig, json.loads(text)))


def pack_config(config: QueueConfig) -> bytes:
    """``config`` as compressed JSON: small enough for Ray to carry inline in an actor's
    creation task (under its 100 KiB limit at 1,000 ClusterQueues: ~19 KB against
    213 KB pickled). Ray restarts an actor from that task: an argument it had put in the
    object store instead is freed once the actor is created, and the restart after a
    kill -9 then fails (ray#53727)."""
    return zlib.compress(dumps_config(config).encode(), 6)


def unpack_config(packed: bytes) -> QueueConfig:
    """``pack_config``'s inverse (``CodecError`` if ``packed`` is not compressed text)."""
    try:
        text = zlib.decompress(packed).decode()
    except (zlib.error, UnicodeDecodeError) as e:
        raise CodecError(f"not a packed config: {e}") from e
    return loads_config(text)


def roundtrip(tp: type[T], value: T) -> T:
    """``decode(tp, encode(value))`` through real JSON text (used by tests)."""
    return typing.cast(T, decode(tp, json.loads(json.dumps(encode(tp, value)))))
