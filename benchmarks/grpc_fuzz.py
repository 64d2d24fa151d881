"""Structure-aware fuzzing of the gRPC API: ``python -m benchmarks.grpc_fuzz --examples N
--seed S [--out FILE.json]``.

Requests are drawn by hypothesis from the proto descriptors themselves (every RPC of
``QueueService`` and ``AutoscalerService``, every field of its request by its declared
type, nested messages and maps included), so a field added to the proto is fuzzed
without anyone writing a strategy for it. Strings come from a pool that mixes the
server's own names (queues, workloads, flavors, a valid config) with hostile ones, so the
requests reach past the first "no such queue". Each request is sent with one of the
admin's, a tenant's, the autoscaler's, a bogus or no token to a live server on loopback
with ``ManagerCore`` behind it (Ray's side recorded by ``tests.manager.fakes``), and:

* no status is INTERNAL or UNKNOWN (a bug in the server), no unary call goes unanswered
  for a minute, and the server answers its health check afterwards;
* a refused request (any status but OK), a read (Get, List, Watch) and a validate-only
  config change nothing: the state snapshot (workloads with their histories, the
  config, what was asked of Ray) is the same before and after;
* a submission refused item by item leaves no refused id behind.

``tests/grpc/test_fuzz.py`` runs a bounded number of examples in ``make test``; this
command runs many more and prints which statuses each RPC got.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from benchmarks import provenance
from ray_queue.engine.clock import ManualClock
from ray_queue.engine.config_loader import load_config
from ray_queue.grpc.client import QueueClient
from ray_queue.grpc.gen import autoscaler_pb2 as apb
from ray_queue.grpc.gen import queue_pb2 as pb
from ray_queue.grpc.manager_backend import start_grpc_server
from ray_queue.grpc.server import QueueServer, ServerOptions
from ray_queue.manager.core import ManagerCore
from ray_queue.store.base import MemoryStore
from tests.grpc.conftest import (
    ADMIN_TOKEN,
    AUTOSCALER_TOKEN,
    CONFIG_YAML,
    TENANT_A_TOKEN,
    principals,
    request,
)
from tests.manager.fakes import RecordingActions

FD = FieldDescriptor
SERVICES = (
    pb.DESCRIPTOR.services_by_name["QueueService"],
    apb.DESCRIPTOR.services_by_name["AutoscalerService"],
)
METHODS: list[MethodDescriptor] = [m for s in SERVICES for m in s.methods]
TOKENS = (ADMIN_TOKEN, TENANT_A_TOKEN, AUTOSCALER_TOKEN, "not-a-token", None)
#: Statuses that mean the server broke, or a unary call that never answered.
BROKEN = {
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.DATA_LOSS,
}
READ_PREFIXES = ("Get", "List", "Watch")
#: A unary call not answered in this long hangs (DEADLINE_EXCEEDED is then a failure).
UNARY_DEADLINE_S = 60.0
#: The workloads seeded before fuzzing; each fuzzed id is drawn partly from these.
SEEDED = ("keep-a", "keep-b", "gang", "job-1")
#: The config with other quotas: a fuzzed ApplyConfig that sends it changes real state.
OTHER_CONFIG = CONFIG_YAML.replace("nominalQuota: 4", "nominalQuota: 2", 1)
WORDS = (
    *SEEDED,
    "team-a",
    "team-b",
    "cq-a",
    "cq-b",
    "shared",
    "cpu",
    "gpu",
    "prov",
    "gpu-group",
    "low",
    "high",
    "CPU",
    "GPU",
    "memory",
    "ray-queue.io/provisioning",
    "python x.py",
    "{}",
    '{"pip": ["x"]}',
    '{"env_vars": {"A": 1}}',
    "[" * 3000,
    "{" * 3000,
    "",
    " ",
    "\x00",
    "é☃\U0001f600",
    "x" * 300,
    "../../etc/passwd",
    "PENDING",
    "READY",
    "Preempted",
    CONFIG_YAML,
    OTHER_CONFIG,
    CONFIG_YAML.replace("nominalQuota: 4", "nominalQuota: -4"),
    "apiVersion: ray-queue.io/v1alpha1\nkind: Queue\nmetadata: {name: q}\n"
    "spec: {clusterQueue: nope}",
    "- [1, 2\n",
    "a: &a [*a]\n",
    "!!python/object/apply:os.system ['true']",
)
INT_EDGES = {
    FD.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FD.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FD.CPPTYPE_UINT32: (0, 2**32 - 1),
    FD.CPPTYPE_UINT64: (0, 2**64 - 1),
}
MAX_DEPTH = 4


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    cpp = field.cpp_type
    if cpp in INT_EDGES:
        low, high = INT_EDGES[cpp]
        return st.one_of(
            st.integers(max(low, -2), 4),
            st.integers(0, 10_000),
            st.sampled_from((low, high)),
            st.integers(low, high),
        )
    if cpp == FD.CPPTYPE_DOUBLE:
        return st.floats()
    if cpp == FD.CPPTYPE_FLOAT:
        return st.floats(width=32)
    if cpp == FD.CPPTYPE_BOOL:
        return st.booleans()
    if cpp == FD.CPPTYPE_ENUM:
        # proto3 enums are open: a number the server does not know is a legal message.
        known = [v.number for v in field.enum_type.values] if field.enum_type else [0]
        return st.one_of(st.sampled_from(known), st.integers(-3, 64))
    if field.type == FD.TYPE_BYTES:
        return st.binary(max_size=64)
    return st.one_of(st.sampled_from(WORDS), st.text(max_size=40))


def _map_entry(field: FieldDescriptor) -> Descriptor | None:
    """The key/value entry type of a map field (``None``: not a map)."""
    entry = field.message_type
    return entry if entry is not None and entry.GetOptions().map_entry else None


def _single(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    if field.message_type is not None:
        return message_strategy(field.message_type, depth + 1)
    return _scalar(field)


def _field(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    map_entry = _map_entry(field)
    if map_entry is not None:
        entry = map_entry.fields_by_name
        key, value = entry["key"], entry["value"]
        return st.dictionaries(_scalar(key), _single(value, depth), max_size=3)
    if field.is_repeated:
        return st.lists(_single(field, depth), max_size=3)
    return _single(field, depth)


def _build(descriptor: Descriptor, values: dict[str, Any]) -> Message:
    message: Message = message_factory.GetMessageClass(descriptor)()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        target = getattr(message, name)
        if _map_entry(field) is not None:
            for k, v in value.items():
                if isinstance(v, Message):
                    target[k].CopyFrom(v)
                else:
                    target[k] = v
        elif field.is_repeated:
            target.extend(value)
        elif isinstance(value, Message):
            target.CopyFrom(value)
        else:
            setattr(message, name, value)
    return message


def message_strategy(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """Messages of ``descriptor``'s type: each field set or not, by its declared type.
    Below ``MAX_DEPTH`` nested messages stay empty (``Struct`` nests without end)."""
    if depth >= MAX_DEPTH:
        return st.just(message_factory.GetMessageClass(descriptor)())
    optional = {f.name: _field(f, depth) for f in descriptor.fields}
    return st.fixed_dictionaries({}, optional=optional).map(
        lambda values: _build(descriptor, values)
    )


@dataclass(frozen=True)
class Call:
    method: MethodDescriptor
    message: Message
    token: str | None

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        text = repr(self.message)
        if len(text) > 600:
            text = f"{text[:600]}… ({len(text)} characters)"
        return f"Call({self.method.full_name}, token={self.token!r}, {text})"


def calls() -> st.SearchStrategy[Call]:
    return st.sampled_from(METHODS).flatmap(
        lambda m: st.builds(
            Call, st.just(m), message_strategy(m.input_type), st.sampled_from(TOKENS)
        )
    )


class Target:
    """A gRPC server on loopback over ``ManagerCore`` on its own event loop (as in the
    actor), with Ray's side recorded, seeded with a few workloads; and the outcomes."""

    def __init__(self) -> None:
        self.actions = RecordingActions()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-manager-loop")
        self.thread.start()
        config = load_config(CONFIG_YAML)
        clock = ManualClock(1_000.0)

        async def start() -> tuple[ManagerCore, QueueServer]:
            core = ManagerCore.recover(
                MemoryStore(), self.actions, clock, default_config=lambda: config
            )
            options = ServerOptions(port=0, host="127.0.0.1", principals=principals())
            return core, start_grpc_server(core, asyncio.get_running_loop(), options, publish=False)

        self.core, self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.channel = grpc.insecure_channel(self.server.address)
        self.admin = QueueClient(self.server.address, token=ADMIN_TOKEN, timeout_s=10)
        from ray_queue.engine.model import WorkloadKind

        self.admin.submit_many(
            [
                request("keep-a", cpu=8000),
                request("keep-b", "team-b"),
                request("gang", gpu=1000, count=2),
                request(
                    "job-1",
                    "team-b",
                    kind=WorkloadKind.JOB,
                    payload={"entrypoint": "python x.py", "runtime_env": {}},
                ),
            ]
        )
        self.outcomes: collections.Counter[str] = collections.Counter()
        #: The longest each RPC took (reported by the benchmark, never asserted).
        self.slowest_s: dict[str, float] = collections.defaultdict(float)
        self.examples = 0

    def close(self) -> None:
        self.channel.close()
        self.admin.close()
        self.server.stop(grace_s=0.2)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def snapshot(self) -> tuple[Any, ...]:
        """What a request may change: workloads and their histories, the config, and
        what was asked of Ray."""
        workloads = tuple(
            (w.spec, w.state, w.reason, len(w.history))
            for w in self.admin.workloads(include_history=True)
        )
        return workloads, self.admin.config_yaml(), len(self.actions.calls)

    def send(self, call: Call) -> tuple[grpc.StatusCode, list[Message]]:
        path = f"/{call.method.containing_service.full_name}/{call.method.name}"
        response_type = message_factory.GetMessageClass(call.method.output_type)
        metadata = (("authorization", f"Bearer {call.token}"),) if call.token else ()
        answers: list[Message] = []
        try:
            if call.method.server_streaming:
                stream = self.channel.unary_stream(
                    path,
                    request_serializer=type(call.message).SerializeToString,
                    response_deserializer=response_type.FromString,
                )(call.message, metadata=metadata, timeout=1.0)
                try:
                    for answer in stream:
                        answers.append(answer)
                        if len(answers) >= 2:
                            break
                finally:
                    stream.cancel()
            else:
                unary = self.channel.unary_unary(
                    path,
                    request_serializer=type(call.message).SerializeToString,
                    response_deserializer=response_type.FromString,
                )
                # Generous: a deadline met only on an idle machine is not a hang.
                answers.append(unary(call.message, metadata=metadata, timeout=UNARY_DEADLINE_S))
        except grpc.RpcError as e:
            code: grpc.StatusCode = e.code()
            if call.method.server_streaming and code in (
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED,
            ):
                return grpc.StatusCode.OK, answers  # a stream we ended ourselves
            return code, answers
        return grpc.StatusCode.OK, answers

    def check(self, call: Call) -> None:
        """One fuzzed request against the properties in the module's docstring."""
        before = self.snapshot()
        started = time.monotonic()
        code, answers = self.send(call)
        took_s = time.monotonic() - started
        self.examples += 1
        self.outcomes[f"{call.method.name} {code.name}"] += 1
        self.slowest_s[call.method.name] = max(self.slowest_s[call.method.name], took_s)
        assert code not in BROKEN, f"{call!r} answered {code.name}"
        hung = code is grpc.StatusCode.DEADLINE_EXCEEDED and not call.method.server_streaming
        assert not hung, f"{call!r} not answered in {UNARY_DEADLINE_S:.0f}s"
        assert self.admin.health() == "SERVING", f"not serving after {call!r}"
        after = self.snapshot()
        read = call.method.name.startswith(READ_PREFIXES)
        validate_only = isinstance(call.message, pb.ApplyConfigRequest) and (
            call.message.validate_only
        )
        if code is not grpc.StatusCode.OK or read or validate_only:
            assert after == before, f"{call!r} ({code.name}) changed the state"
        if isinstance(call.message, pb.SubmitWorkloadsRequest) and answers:
            known_before = {w[0].id for w in before[0]}
            known_after = {w[0].id for w in after[0]}
            response = answers[0]
            assert isinstance(response, pb.SubmitWorkloadsResponse)
            for result in response.results:
                if result.HasField("error") and result.id not in known_before:
                    assert result.id not in known_after, f"refused {result.id!r} was kept"


@given(call=calls())
def fuzz(target: Target, call: Call) -> None:
    """The property: hypothesis draws ``call``; the caller gives the target."""
    target.check(call)


SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]


def run(target: Target, examples: int, seed_value: int, *, database: Any = None) -> None:
    """Fuzz ``target`` for ``examples`` examples; raises on the first property broken
    (after hypothesis shrank it)."""
    prop: Callable[[Target], None] = seed(seed_value)(
        settings(
            max_examples=examples,
            deadline=None,
            database=database,
            suppress_health_check=SUPPRESS,
            print_blob=True,
        )(fuzz)
    )
    prop(target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    started = time.monotonic()
    error = None
    target = Target()
    try:
        run(target, args.examples, args.seed)
    except AssertionError as e:
        error = str(e)
    finally:
        target.close()
    wall_s = time.monotonic() - started
    report = {
        "benchmark": "grpc_fuzz",
        "command": provenance.command("benchmarks.grpc_fuzz", argv),
        "machine": provenance.machine(),
        **provenance.git("benchmarks", "ray_queue"),
        "examples": args.examples,
        "seed": args.seed,
        "wall_s": round(wall_s, 1),
        "failure": error,
        "outcomes": dict(sorted(target.outcomes.items())),
        "slowest_s": {k: round(v, 3) for k, v in sorted(target.slowest_s.items())},
    }
    for key, n in report["outcomes"].items():
        print(f"{n:>6}  {key}")
    verdict = f"FAILED: {error}" if error else "no property broken"
    print(f"{args.examples} examples in {wall_s:.0f} s: {verdict}")
    print(f"reproduce: {report['command']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    return 1 if error else 0


if __name__ == "__main__":
    sys.exit(main())
