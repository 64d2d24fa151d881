"""Kubernetes quantities and Go-style durations, parsed exactly.

Config documents carry amounts the way Kubernetes does (``500m`` CPU, ``36Gi`` memory,
``1e3``) and durations the way Kueue's Configuration does (``5m``, ``1h30m``, or a plain
number of seconds). The engine works in integer milli-units, so parsing goes through
``Fraction`` (exact, unlike ``Decimal``'s 28-digit default context) and rounds up once at
the end: a quota of ``0.1`` is exactly 100, never
99.99999, and a sub-milli amount still counts as one milli rather than vanishing.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

from ray_queue.engine.model import MILLI, Milli

_SUFFIX_FACTORS: dict[str, Fraction] = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}

_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+\.?\d*|\.\d+))"
    r"(?:(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])|[eE](?P<exponent>[+-]?\d+))?$"
)

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|h|m|s)")
_DURATION_UNITS_S: dict[str, Fraction] = {
    "ns": Fraction(1, 10**9),
    "us": Fraction(1, 10**6),
    "µs": Fraction(1, 10**6),
    "ms": Fraction(1, 10**3),
    "s": Fraction(1),
    "m": Fraction(60),
    "h": Fraction(3600),
}

#: Exponents beyond this are typos, not quotas; refusing them keeps the exact arithmetic
#: (and the resulting Python ints) small.
_MAX_EXPONENT = 30

_PLAIN_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)$")

_BINARY_SUFFIXES = (
    ("Ei", 2**60),
    ("Pi", 2**50),
    ("Ti", 2**40),
    ("Gi", 2**30),
    ("Mi", 2**20),
    ("Ki", 2**10),
)

#: Whole durations up to this many seconds are written as "1h30m"; beyond it (or for
#: fractions) as numbers, which always read back exactly.
_MAX_FORMATTED_DURATION_S = 10**9

_QUANTITY_HINT = "a quantity such as 4, 0.5, 500m or 16Gi"
_DURATION_HINT = "a duration such as 30s, 5m or 1h30m, or a number of seconds"


class QuantityError(ValueError):
    """The value is not a quantity or duration; the message says what is accepted."""


def parse_quantity_exact(value: object) -> Fraction:
    """The exact value of a Kubernetes quantity (an int, a float or a string)."""
    if isinstance(value, bool):
        raise QuantityError(f"expected {_QUANTITY_HINT}, got {value!r}")
    if isinstance(value, int):
        return Fraction(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuantityError(f"must be a finite number, got {value!r}")
        # repr() is the shortest string that reads back as this float: 0.1 stays 1/10.
        return Fraction(repr(value))
    if isinstance(value, str):
        return _parse_quantity_string(value)
    raise QuantityError(f"expected {_QUANTITY_HINT}, got {type(value).__name__} {value!r}")


def _parse_quantity_string(text: str) -> Fraction:
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise QuantityError(
            f"{text!r} is not a quantity; write a number with an optional suffix "
            "(m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei) or an exponent such as 1e3"
        )
    number = Fraction(match["number"])
    exponent = match["exponent"]
    if exponent is not None:
        power = int(exponent)
        if abs(power) > _MAX_EXPONENT:
            raise QuantityError(f"{text!r}: exponent {power} is out of range (at most 30)")
        return number * Fraction(10) ** power
    return number * _SUFFIX_FACTORS[match["suffix"] or ""]


def parse_quantity(value: object) -> Milli:
    """A Kubernetes quantity in milli-units, rounded up (``"500m"`` → 500, ``2`` → 2000).

    Negative values are returned as such; whether they are allowed is the caller's call.
    """
    return math.ceil(parse_quantity_exact(value) * MILLI)


def format_quantity(amount: Milli, *, binary: bool = False) -> int | str:
    """The shortest exact spelling of ``amount`` milli-units, for writing config back.

    Whole units stay plain integers (``4``); fractions use the ``m`` suffix (``"1500m"``).
    With ``binary`` (memory), whole multiples of 1024 use ``Ki`` … ``Ei`` (``"16Gi"``).
    """
    units, rest = divmod(amount, MILLI)
    if rest:
        return f"{amount}m"
    if binary and units:
        for suffix, factor in _BINARY_SUFFIXES:
            if units % factor == 0:
                return f"{units // factor}{suffix}"
    return units


def human_amount(resource: str, amount: Milli) -> str:
    """``amount`` milli-units of ``resource`` for people, in Ray's units: memory with
    binary suffixes (``4Gi``), everything else as a plain number (``2.5``)."""
    if resource == "memory" or resource.endswith("memory"):
        return str(format_quantity(amount, binary=True))
    return f"{amount / MILLI:g}"


def parse_duration(value: object) -> float:
    """Seconds from a number (seconds) or a Go duration string (``"1h30m"``, ``"500ms"``)."""
    if isinstance(value, bool):
        raise QuantityError(f"expected {_DURATION_HINT}, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise QuantityError(f"must be a finite number of seconds, got {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise QuantityError(f"expected {_DURATION_HINT}, got {type(value).__name__} {value!r}")
    text = value.strip()
    if _PLAIN_NUMBER.match(text):
        return float(Fraction(text))
    negative = text.startswith("-")
    body = text[1:] if text[:1] in ("+", "-") else text
    total = Fraction(0)
    position = 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != position:
            break
        total += Fraction(match[1]) * _DURATION_UNITS_S[match[2]]
        position = match.end()
    if not body or position != len(body):
        raise QuantityError(f"{value!r} is not a duration; write {_DURATION_HINT}")
    return float(-total if negative else total)


def format_duration(seconds: float) -> str | float:
    """A readable duration that parses back to exactly ``seconds``.

    Whole seconds become ``"1h30m"``-style strings; anything else stays a number, since a
    decimal string could not promise to read back as the same float.
    """
    if not seconds.is_integer() or not 0 <= seconds <= _MAX_FORMATTED_DURATION_S:
        return seconds
    whole = int(seconds)
    if whole == 0:
        return "0s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return "".join(f"{n}{unit}" for n, unit in ((hours, "h"), (minutes, "m"), (secs, "s")) if n)
