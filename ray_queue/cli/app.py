"""The ``ray-queue`` command: kueuectl's job, for Ray.

Every command is a thin layer over ``QueueClient``: parse flags, make one or two calls,
render. Failures print one ``error:`` line saying what went wrong and what to do, and
exit non-zero (1 for a refused or failed request, 2 for bad usage, 3 when the server
cannot be reached), so scripts can rely on the exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ray_queue.cli import render
from ray_queue.engine.config_loader import dump_yaml, parse_yaml, yaml_documents
from ray_queue.engine.config_merge import Change, ObjectChange, diff, merge_documents
from ray_queue.engine.errors import ConfigError, RayQueueError
from ray_queue.engine.model import (
    BundleGroup,
    WorkloadId,
    WorkloadKind,
    WorkloadState,
    WorkloadStatus,
    to_milli,
)
from ray_queue.engine.quantity import QuantityError, parse_quantity
from ray_queue.grpc import address as addr
from ray_queue.grpc.client import QueueClient
from ray_queue.grpc.status import ServerUnavailableError
from ray_queue.wire import SubmitRequest

TOKEN_ENV = "RAY_QUEUE_TOKEN"
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


class UsageError(Exception):
    """Bad flags or input the parser could not catch."""


# long: the command line as one table, a statement per flag and command, read top to
# bottom as ``ray-queue --help`` prints it; splitting it scatters that table.
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ray-queue",
        description="Queues, quotas and fair sharing for a shared Ray cluster.",
    )
    p.add_argument("--address", help=f"manager gRPC address host:port (or ${addr.ADDRESS_ENV})")
    p.add_argument("--token", help=f"bearer token (or ${TOKEN_ENV}; visible in ps, prefer a file)")
    p.add_argument("--token-file", help="read the bearer token from this file")
    p.add_argument("--tls", action="store_true", help="use TLS with the system's CA roots")
    p.add_argument("--tls-ca", metavar="PEM", help="use TLS, trusting this CA certificate")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument(
        "-o", "--output", choices=["table", "json", "yaml"], default="table", help="output format"
    )
    # -o also works after the command (``ray-queue status -o json``).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-o", "--output", choices=["table", "json", "yaml"], default=argparse.SUPPRESS
    )
    sub = p.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_sub(common)
    )

    sub.add_parser("status", help="ClusterQueues and cohorts: usage, quota, borrowing, share")

    lst = sub.add_parser("list", help="list things")
    lst_sub = lst.add_subparsers(dest="what", required=True, metavar="WHAT")
    lw = lst_sub.add_parser("workloads", help="workloads, newest last")
    lw.add_argument("--queue", default="")
    lw.add_argument("--cluster-queue", default="")
    lw.add_argument("--owner", default="")
    lw.add_argument(
        "--state",
        action="append",
        default=[],
        choices=[s.value for s in WorkloadState],
        help="repeat for several",
    )
    lw.add_argument("--history", action="store_true", help="include transitions (json/yaml)")

    pending = sub.add_parser("pending", help="pending workloads with their positions")
    pending.add_argument("--queue", default="")
    pending.add_argument("--cluster-queue", default="")
    pending.add_argument("--limit", type=int, default=0)

    describe = sub.add_parser("describe", help="one object in detail")
    describe_sub = describe.add_subparsers(dest="what", required=True, metavar="WHAT")
    dw = describe_sub.add_parser("workload", help="a workload with its history")
    dw.add_argument("id")

    cancel = sub.add_parser("cancel", help="cancel a workload (frees its quota)")
    cancel.add_argument("id")
    cancel.add_argument("--message", default="", help="recorded in its history")

    apply = sub.add_parser(
        "apply",
        help="apply config documents over the running config",
        description=(
            "Like kubectl apply: each object in the file (by kind and name; a Kueue LocalQueue "
            "is a Queue) is created or replaced, and running objects the file leaves out stay, "
            "unless --prune. The result is validated as a whole; a refused config changes "
            "nothing. Prints what it adds (+), changes (~) and removes (-)."
        ),
    )
    apply.add_argument("-f", "--filename", required=True, help="YAML file, or - for stdin")
    apply.add_argument(
        "--dry-run", action="store_true", help="validate and show the changes; change nothing"
    )
    apply.add_argument(
        "--prune",
        action="store_true",
        help="make the file the whole config: remove running objects it leaves out",
    )

    config = sub.add_parser("config", help="the running config")
    config_sub = config.add_subparsers(dest="what", required=True, metavar="WHAT")
    config_sub.add_parser("get", help="print the running config as YAML")

    job = sub.add_parser("job", help="Ray jobs")
    job_sub = job.add_subparsers(dest="what", required=True, metavar="WHAT")
    js = job_sub.add_parser(
        "submit",
        help="queue a Ray job; it is submitted to Ray once admitted",
        description="Example: ray-queue job submit --queue training --num-gpus 1 -- python x.py",
    )
    js.add_argument("--queue", required=True)
    js.add_argument("--priority", default=None, help="PriorityClass name")
    js.add_argument("--num-cpus", type=_amount, default="1", help="CPUs (default 1)")
    js.add_argument("--num-gpus", type=_amount, default="0", help="GPUs, e.g. 1 or 0.5")
    js.add_argument("--memory", type=_amount, default="0", help="bytes, or e.g. 512Mi, 4Gi")
    js.add_argument("--resources", default="", help='custom resources as JSON, e.g. {"TPU": 4}')
    js.add_argument("--runtime-env-json", default="", help="Ray runtime_env as JSON")
    js.add_argument(
        "--max-gpus", type=_amount, default=None, help="cap on the GPUs the job holds at once"
    )
    js.add_argument(
        "--max-cpus", type=_amount, default=None, help="cap on the CPUs the job holds at once"
    )
    js.add_argument(
        "--max",
        action="append",
        default=[],
        metavar="RESOURCE=N",
        help="cap on any resource the job holds at once, e.g. --max TPU=8 (repeatable)",
    )
    js.add_argument("--id", default="", help="workload id (default: job-<random>)")
    js.add_argument("--name", default="")
    js.add_argument("entrypoint", nargs=argparse.REMAINDER, help="-- then the command")

    top = sub.add_parser("top", help="a live view of queues and pending work")
    top.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    top.add_argument(
        "--iterations", type=int, default=0, help="stop after this many refreshes (0: never)"
    )
    return p


def _sub(common: argparse.ArgumentParser) -> type[argparse.ArgumentParser]:
    """A parser class whose every instance also accepts the common options."""

    class Sub(argparse.ArgumentParser):
        def __init__(self, **kwargs: Any) -> None:
            kwargs.setdefault("parents", [common])
            super().__init__(**kwargs)

    return Sub


def _client(args: argparse.Namespace) -> QueueClient:
    address, _ = addr.resolve(args.address)
    token = args.token or os.environ.get(TOKEN_ENV) or None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise UsageError(
                f"cannot read --token-file {args.token_file}: {e.strerror or e}"
            ) from None
    return QueueClient(
        address, token=token, tls=args.tls, tls_ca_path=args.tls_ca, timeout_s=args.timeout
    )


def _emit(args: argparse.Namespace, data: Any, table: Callable[[], Any]) -> None:
    if args.output == "table":
        render.console().print(table())
    else:
        sys.stdout.write(render.dump(data, args.output))
        if args.output == "json":
            sys.stdout.write("\n")


# -- commands ---------------------------------------------------------------------------------


def cmd_status(client: QueueClient, args: argparse.Namespace) -> int:
    cqs, cohorts, outside = client.cluster_queues(), client.cohorts(), client.unmanaged_usage()
    _emit(
        args,
        {"cluster_queues": cqs, "cohorts": cohorts, "unmanaged": outside},
        lambda: render.status_view(cqs, cohorts, outside),
    )
    return 0


def cmd_list(client: QueueClient, args: argparse.Namespace) -> int:
    statuses = client.workloads(
        queue=args.queue,
        cluster_queue=args.cluster_queue,
        owner=args.owner,
        states=[WorkloadState(s) for s in args.state],
        include_history=args.history,
    )
    _emit(args, statuses, lambda: render.workloads_table(statuses))
    return 0


def cmd_pending(client: QueueClient, args: argparse.Namespace) -> int:
    positions = client.pending(queue=args.queue, cluster_queue=args.cluster_queue, limit=args.limit)
    _emit(args, positions, lambda: render.pending_table(positions))
    return 0


def cmd_describe(client: QueueClient, args: argparse.Namespace) -> int:
    status = client.workload(args.id)
    children: list[WorkloadStatus] = []
    if status.spec.kind is WorkloadKind.JOB:
        # What the job's run made (docs/capture.md, "Jobs own their work"), oldest first.
        mine = [w for w in client.workloads() if w.spec.parent == status.spec.id]
        children = sorted(mine, key=lambda w: w.spec.created_at)
    _emit(args, status, lambda: render.describe_view(status, children))
    return 0


def cmd_cancel(client: QueueClient, args: argparse.Namespace) -> int:
    live = client.cancel(args.id, message=args.message)
    status = client.workload(args.id)
    text = (
        f"workload {args.id} cancelled"
        if live
        else f"workload {args.id} was already {status.state.value}; nothing to cancel"
    )
    _emit(args, {"id": args.id, "was_live": live, "state": status.state}, lambda: text)
    return 0


def cmd_apply(client: QueueClient, args: argparse.Namespace) -> int:
    if args.filename == "-":
        text = sys.stdin.read()
    else:
        try:
            text = Path(args.filename).read_text(encoding="utf-8")
        except OSError as e:
            raise UsageError(f"cannot read {args.filename}: {e.strerror or e}") from None
    # Merged here, as kubectl's client-side apply does: the server takes whole configs.
    running = parse_yaml(client.config_yaml())
    merged = merge_documents(running, yaml_documents(text), prune=args.prune)
    changes = diff(running, merged)
    touched = _touched_by_removals(client, changes)
    result = client.apply_config(dump_yaml(merged), validate_only=args.dry_run)
    if result.problems:
        raise ConfigError(list(result.problems))
    lines = [str(c) for c in changes] or ["no changes"]
    lines += [f"  {what}: {', '.join(ids)}" for what, ids in touched.items()]
    if args.dry_run:
        head = f"config is valid (dry run, nothing changed): {result.summary}"
    else:
        head = f"config applied: {result.summary}"
        if result.evicted:
            head += f"; evicted {len(result.evicted)}: {', '.join(result.evicted)}"
    data = {
        "applied": result.applied,
        "summary": result.summary,
        "evicted": list(result.evicted),
        "changes": [{"change": c.change.value, "kind": c.kind, "name": c.name} for c in changes],
        "live_workloads_of_removed": touched,
    }
    _emit(args, data, lambda: "\n".join([head, *lines]))
    return 0


def _touched_by_removals(client: QueueClient, changes: list[ObjectChange]) -> dict[str, list[str]]:
    """Live workloads in the Queues and ClusterQueues a change removes, by object."""
    out: dict[str, list[str]] = {}
    for change in changes:
        if change.change is not Change.REMOVED or change.kind not in ("Queue", "ClusterQueue"):
            continue
        if change.kind == "Queue":
            found = client.workloads(queue=change.name)
        else:
            found = client.workloads(cluster_queue=change.name)
        live: list[str] = [w.spec.id for w in found if not w.state.is_terminal]
        if live:
            out[f"{change.kind}/{change.name} has live workloads"] = live
    return out


def cmd_config(client: QueueClient, args: argparse.Namespace) -> int:
    text = client.config_yaml()
    if args.output == "json":
        import yaml

        print(json.dumps([d for d in yaml.safe_load_all(text) if d], indent=2))
    else:
        sys.stdout.write(text)
    return 0


def _amount(text: str) -> int:
    """A resource amount of 0 or more, in milli-units: a number or a Kubernetes quantity."""
    try:
        milli = parse_quantity(text)
    except QuantityError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an amount; give a number such as 1 or 0.5, or a quantity such as 4Gi"
        ) from None
    if milli < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; give 0 or more")
    return milli


def job_request(args: argparse.Namespace) -> SubmitRequest:
    entry = list(args.entrypoint)
    if entry and entry[0] == "--":
        entry = entry[1:]
    if not entry:
        raise UsageError("give the job's command after --, e.g. -- python train.py")
    resources: dict[str, int] = {}
    if args.num_cpus:
        resources["CPU"] = args.num_cpus
    if args.num_gpus:
        resources["GPU"] = args.num_gpus
    if args.memory:
        resources["memory"] = args.memory
    if args.resources:
        try:
            custom = json.loads(args.resources)
        except ValueError as e:
            raise UsageError(f"--resources is not JSON: {e}") from None
        if not isinstance(custom, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and v >= 0
            for v in custom.values()
        ):
            raise UsageError(
                '--resources must be a JSON object of numbers of 0 or more, e.g. {"TPU": 4}'
            )
        resources.update({str(k): to_milli(float(v)) for k, v in custom.items()})
    if not resources:
        raise UsageError("a job needs at least one resource (--num-cpus, --num-gpus, ...)")
    runtime_env = None
    if args.runtime_env_json:
        try:
            runtime_env = json.loads(args.runtime_env_json)
        except ValueError as e:
            raise UsageError(f"--runtime-env-json is not JSON: {e}") from None
    return SubmitRequest(
        id=WorkloadId(args.id or f"job-{uuid.uuid4().hex[:12]}"),
        queue=args.queue,
        bundle_groups=(BundleGroup(resources, 1),),
        kind=WorkloadKind.JOB,
        priority_class=args.priority,
        name=args.name,
        payload={"entrypoint": shlex.join(entry), "runtime_env": runtime_env, "metadata": {}},
        max_resources=job_cap(args),
    )


def job_cap(args: argparse.Namespace) -> dict[str, int] | None:
    """``--max-gpus``, ``--max-cpus`` and ``--max RESOURCE=N`` as one cap (milli-units);
    ``None`` when none is given. The manager checks the names against the queue."""
    cap: dict[str, int] = {}
    for given in args.max:
        resource, equals, amount = given.partition("=")
        if not equals or not resource.strip():
            raise UsageError(f"--max {given!r}: give RESOURCE=N, e.g. --max TPU=8")
        try:
            cap[resource.strip()] = _amount(amount.strip())
        except argparse.ArgumentTypeError as e:
            raise UsageError(f"--max {given!r}: {e}") from None
    if args.max_gpus is not None:
        cap["GPU"] = args.max_gpus
    if args.max_cpus is not None:
        cap["CPU"] = args.max_cpus
    return cap or None


def cmd_job(client: QueueClient, args: argparse.Namespace) -> int:
    status = client.submit(job_request(args))
    _emit(
        args,
        status,
        lambda: (
            f"job {status.spec.id} queued in {status.spec.queue}: {status.state.value} "
            f"({status.message})"
        ),
    )
    return 0


def cmd_top(client: QueueClient, args: argparse.Namespace) -> int:
    from rich.console import Group
    from rich.live import Live

    def frame() -> Group:
        cqs, cohorts = client.cluster_queues(), client.cohorts()
        pending = client.pending(limit=20)
        stamp = time.strftime("%H:%M:%S")
        return Group(
            f"ray-queue top — {client.address} — {stamp} (Ctrl-C to quit)",
            render.status_view(cqs, cohorts),
            render.pending_table(pending),
        )

    if args.output != "table":
        raise UsageError("top is a live view; use status or pending with -o json|yaml")
    n = 0
    with Live(frame(), console=render.console(), refresh_per_second=4, screen=False) as live:
        try:
            while True:
                n += 1
                if args.iterations and n >= args.iterations:
                    break
                time.sleep(args.interval)
                live.update(frame())
        except KeyboardInterrupt:
            pass
    return 0


COMMANDS: dict[str, Callable[[QueueClient, argparse.Namespace], int]] = {
    "status": cmd_status,
    "list": cmd_list,
    "pending": cmd_pending,
    "describe": cmd_describe,
    "cancel": cmd_cancel,
    "apply": cmd_apply,
    "config": cmd_config,
    "job": cmd_job,
    "top": cmd_top,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        client = _client(args)
    except (OSError, UsageError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    try:
        return COMMANDS[args.command](client, args)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ServerUnavailableError as e:
        address, source = addr.resolve(args.address)
        print(
            f"error: cannot reach the ray-queue manager at {address} (from {source}): {e}\n"
            f"  pass --address host:port or set {addr.ADDRESS_ENV}",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    except RayQueueError as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        client.close()
