"""Structure-aware fuzzing of every RPC against a live server with ``ManagerCore`` behind
it (``benchmarks.grpc_fuzz`` holds the strategies, drawn from the proto descriptors, and
the properties): no INTERNAL or UNKNOWN status, no hang, no crash, and a refused request
or a read changes nothing. A bounded, derandomized run here; ``python -m
benchmarks.grpc_fuzz --examples 5000`` for the long one."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from google.protobuf.message import Message
from hypothesis import given, settings

from benchmarks.grpc_fuzz import METHODS, SUPPRESS, Call, Target, calls
from ray_queue.engine.errors import ConfigError
from tests.grpc.conftest import assert_server_threads_end

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    before = {t.ident for t in threading.enumerate()}
    t = Target()
    yield t
    t.close()
    # The server's threads (its pool grows with the requests) end with it.
    assert_server_threads_end(before)


@pytest.fixture(autouse=True)
def no_leaked_threads() -> None:
    """Replaces conftest's per-test check: the module's server lives across tests (its
    own check is in ``target``)."""


@settings(
    max_examples=400,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=SUPPRESS,
)
@given(call=calls())
def test_fuzzed_requests_break_nothing(target: Target, call: Call) -> None:
    target.check(call)


def _set_fields(message: Message, out: set[str]) -> None:
    for field, value in message.ListFields():
        out.add(field.full_name)
        values = value if field.is_repeated else [value]
        for v in values:
            if isinstance(v, Message):
                _set_fields(v, out)


def test_the_strategies_reach_every_rpc_and_every_request_field() -> None:
    """Built from the descriptors: a field the proto gains is fuzzed without a hand-written
    strategy; this fails if the generator stops reaching one."""
    seen: set[str] = set()

    @settings(max_examples=600, database=None, derandomize=True, suppress_health_check=SUPPRESS)
    @given(call=calls())
    def collect(call: Call) -> None:
        seen.add(call.method.full_name)
        _set_fields(call.message, seen)

    collect()
    expected = {m.full_name for m in METHODS}
    expected |= {f.full_name for m in METHODS for f in m.input_type.fields}
    assert expected - seen == set()


def test_yaml_nested_too_deeply_is_a_config_problem(target: Target) -> None:
    """Found by the fuzzer: PyYAML's recursion ran out on "[" * 3000 and ApplyConfig
    answered INTERNAL; now it is a problem named in the answer, and nothing changes."""
    before = target.snapshot()
    with pytest.raises(ConfigError) as info:
        target.admin.apply_config("[" * 3000)
    assert [(p.document, p.message) for p in info.value.problems] == [
        ("yaml", "is nested too deeply")
    ]
    assert target.snapshot() == before
