"""Kubernetes quantities and durations: exact parsing, rounding up, readable round trips."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ray_queue.engine.quantity import (
    QuantityError,
    format_duration,
    format_quantity,
    parse_duration,
    parse_quantity,
)

pytestmark = pytest.mark.timeout(60)

GI = 2**30


@pytest.mark.parametrize(
    ("value", "milli"),
    [
        pytest.param(4, 4000, id="int"),
        pytest.param(0, 0, id="zero"),
        pytest.param(0.5, 500, id="float"),
        pytest.param(0.1, 100, id="float-not-binary-exact"),
        pytest.param("2", 2000, id="string-int"),
        pytest.param("1.25", 1250, id="string-decimal"),
        pytest.param(".5", 500, id="leading-dot"),
        pytest.param("500m", 500, id="milli"),
        pytest.param("1500m", 1500, id="milli-above-one"),
        pytest.param("1k", 1_000_000, id="kilo"),
        pytest.param("2M", 2 * 10**9, id="mega"),
        pytest.param("1G", 10**12, id="giga"),
        pytest.param("1T", 10**15, id="tera"),
        pytest.param("1P", 10**18, id="peta"),
        pytest.param("1E", 10**21, id="exa"),
        pytest.param("1Ki", 1024 * 1000, id="kibi"),
        pytest.param("1Mi", 2**20 * 1000, id="mebi"),
        pytest.param("16Gi", 16 * GI * 1000, id="gibi"),
        pytest.param("1.5Gi", 3 * GI // 2 * 1000, id="fractional-gibi"),
        pytest.param("1Ti", 2**40 * 1000, id="tebi"),
        pytest.param("1Pi", 2**50 * 1000, id="pebi"),
        pytest.param("1Ei", 2**60 * 1000, id="exbi"),
        pytest.param("1e3", 10**6, id="exponent"),
        pytest.param("1E3", 10**6, id="exponent-capital"),
        pytest.param("25e-1", 2500, id="negative-exponent"),
        pytest.param("1u", 1, id="micro-rounds-up"),
        pytest.param("1n", 1, id="nano-rounds-up"),
        pytest.param("0.0001", 1, id="sub-milli-rounds-up"),
        pytest.param("1001u", 2, id="rounds-up-not-nearest"),
        pytest.param(" 3 ", 3000, id="surrounding-space"),
        pytest.param("+2", 2000, id="plus-sign"),
        pytest.param("-2", -2000, id="negative-is-returned"),
        pytest.param(
            "123456789012345678901234567890", 123456789012345678901234567890000, id="huge"
        ),
    ],
)
def test_parse_quantity(value: object, milli: int) -> None:
    assert parse_quantity(value) == milli


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("abc", id="word"),
        pytest.param("1x", id="unknown-suffix"),
        pytest.param("1ki", id="lowercase-binary"),
        pytest.param("1 Gi", id="space-before-suffix"),
        pytest.param("1Gi2", id="trailing-digits"),
        pytest.param("", id="empty"),
        pytest.param("NaN", id="nan-string"),
        pytest.param("inf", id="inf-string"),
        pytest.param("1e400", id="exponent-out-of-range"),
        pytest.param(float("nan"), id="nan-float"),
        pytest.param(float("inf"), id="inf-float"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="none"),
        pytest.param([1], id="list"),
    ],
)
def test_parse_quantity_rejects(value: object) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(value)


def test_quantity_error_says_what_is_accepted() -> None:
    with pytest.raises(QuantityError, match=r"Gi.*1e3"):
        parse_quantity("12 GB")


@pytest.mark.parametrize(
    ("milli", "binary", "expected"),
    [
        pytest.param(4000, False, 4, id="whole"),
        pytest.param(0, True, 0, id="zero"),
        pytest.param(1500, False, "1500m", id="fraction"),
        pytest.param(16 * GI * 1000, True, "16Gi", id="memory-gibi"),
        pytest.param(3 * 2**20 * 1000, True, "3Mi", id="memory-mebi"),
        pytest.param(1000 * 1000, True, 1000, id="memory-not-a-power-of-two"),
        pytest.param(16 * GI * 1000, False, 16 * GI, id="not-binary"),
    ],
)
def test_format_quantity(milli: int, binary: bool, expected: int | str) -> None:
    assert format_quantity(milli, binary=binary) == expected


@given(st.integers(min_value=-(10**30), max_value=10**30), st.booleans())
def test_format_then_parse_quantity_is_identity(milli: int, binary: bool) -> None:
    assert parse_quantity(format_quantity(milli, binary=binary)) == milli


_SUFFIX_MILLI = {"m": 1, "": 1000, "k": 10**6, "M": 10**9, "G": 10**12, "Ki": 1024 * 1000}


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(sorted(_SUFFIX_MILLI)))
def test_parse_of_any_suffix_spelling(number: int, suffix: str) -> None:
    assert parse_quantity(f"{number}{suffix}") == number * _SUFFIX_MILLI[suffix]


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_float_quantity_rounds_up_to_milli(amount: float) -> None:
    milli = parse_quantity(amount)
    assert milli >= amount * 1000 - 1e-6 * max(1.0, amount)
    assert milli - 1 < amount * 1000 + 1e-6 * max(1.0, amount)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        pytest.param(30, 30.0, id="int-seconds"),
        pytest.param(1.5, 1.5, id="float-seconds"),
        pytest.param("45", 45.0, id="string-seconds"),
        pytest.param("30s", 30.0, id="seconds"),
        pytest.param("5m", 300.0, id="minutes"),
        pytest.param("1h", 3600.0, id="hours"),
        pytest.param("1h30m", 5400.0, id="compound"),
        pytest.param("7m30s", 450.0, id="minutes-seconds"),
        pytest.param("1.5h", 5400.0, id="fractional-hours"),
        pytest.param("500ms", 0.5, id="milliseconds"),
        pytest.param("250us", 0.00025, id="microseconds"),
        pytest.param("168h", 604800.0, id="a-week"),
        pytest.param("0s", 0.0, id="zero"),
    ],
)
def test_parse_duration(value: object, seconds: float) -> None:
    assert math.isclose(parse_duration(value), seconds, rel_tol=1e-12)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("5 minutes", id="words"),
        pytest.param("1h3", id="missing-unit"),
        pytest.param("1d", id="days-are-not-go"),
        pytest.param("h", id="unit-only"),
        pytest.param("", id="empty"),
        pytest.param("NaN", id="nan"),
        pytest.param(float("inf"), id="inf"),
        pytest.param(False, id="bool"),
        pytest.param({"s": 1}, id="mapping"),
    ],
)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(QuantityError):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        pytest.param(300.0, "5m", id="minutes"),
        pytest.param(5400.0, "1h30m", id="compound"),
        pytest.param(3661.0, "1h1m1s", id="all-units"),
        pytest.param(0.0, "0s", id="zero"),
        pytest.param(0.25, 0.25, id="fraction-stays-a-number"),
    ],
)
def test_format_duration(seconds: float, expected: str | float) -> None:
    assert format_duration(seconds) == expected


@given(
    st.one_of(
        st.integers(min_value=0, max_value=10**12).map(float),
        st.floats(min_value=0, max_value=1e15, allow_nan=False),
    )
)
def test_format_then_parse_duration_is_identity(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == seconds
