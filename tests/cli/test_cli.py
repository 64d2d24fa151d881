"""``ray-queue`` end to end: the installed console script, as a subprocess, against a real
server; JSON/YAML output parsed, human output checked for content, exit codes for
every failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.grpc.conftest import ADMIN_TOKEN, CONFIG_YAML, TENANT_A_TOKEN, Harness, request

pytestmark = pytest.mark.timeout(120)

RAY_QUEUE = Path(sys.executable).parent / "ray-queue"


def run(
    harness: Harness | None,
    *args: str,
    token: str | None = ADMIN_TOKEN,
    stdin: str = "",
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    argv = [str(RAY_QUEUE)]
    if harness is not None:
        argv += ["--address", harness.address]
    if token:
        argv += ["--token", token]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_QUEUE_")}
    full_env.update(env or {})
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, input=stdin, timeout=60, env=full_env
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def seeded(harness: Harness) -> Harness:
    client = harness.client()
    client.submit(request("fill", "team-b", cpu=8000))  # alone, so it is admitted first
    client.submit_many(
        [
            request("wait-1", "team-b", priority="low"),
            request("wait-2", "team-b", priority="high"),
            request("a-1", "team-a", cpu=500),
        ]
    )
    return harness


def test_status(seeded: Harness) -> None:
    data = json.loads(ok(run(seeded, "status", "-o", "json")))
    by_name = {cq["name"]: cq for cq in data["cluster_queues"]}
    assert set(by_name) == {"cq-a", "cq-b"}
    cpu = next(r for r in by_name["cq-b"]["resources"] if r["resource"] == "CPU")
    assert (cpu["usage"], cpu["borrowed"]) == (8000, 4000)
    assert [c["name"] for c in data["cohorts"]] == ["shared"]
    human = ok(run(seeded, "status"))
    assert "cq-b" in human and "(+4 borrowed)" in human and "8/4" in human


def test_list_workloads_with_filters(seeded: Harness) -> None:
    everything = json.loads(ok(run(seeded, "-o", "json", "list", "workloads")))
    assert [w["spec"]["id"] for w in everything] == ["fill", "wait-1", "wait-2", "a-1"]
    pending = json.loads(
        ok(
            run(
                seeded, "list", "workloads", "--queue", "team-b", "--state", "PENDING", "-o", "json"
            )
        )
    )
    assert sorted(w["spec"]["id"] for w in pending) == ["wait-1", "wait-2"]
    human = ok(run(seeded, "list", "workloads", "--cluster-queue", "cq-a"))
    assert "a-1" in human and "fill" not in human


def test_pending_positions(seeded: Harness) -> None:
    data = yaml.safe_load(ok(run(seeded, "pending", "--queue", "team-b", "-o", "yaml")))
    assert [(p["workload"], p["position_in_queue"]) for p in data] == [("wait-2", 0), ("wait-1", 1)]
    assert "wait-2" in ok(run(seeded, "pending", "--queue", "team-b"))


def test_describe_workload(seeded: Harness) -> None:
    data = json.loads(ok(run(seeded, "describe", "workload", "fill", "-o", "json")))
    assert data["state"] == "ADMITTED"
    assert [t["reason"] for t in data["history"]] == ["Created", "Admitted"]
    assert data["admission"]["usage"] == {"cpu/CPU": 8000}
    human = ok(run(seeded, "describe", "workload", "fill"))
    assert "History" in human and "Admitted" in human and "CPU[cpu]=8" in human


def test_cancel(seeded: Harness) -> None:
    assert "cancelled" in ok(run(seeded, "cancel", "fill", "--message", "done with it"))
    assert seeded.backend.workload("fill").history[-1].message == "done with it"
    again = ok(run(seeded, "cancel", "fill"))
    assert "already CANCELLED" in again
    missing = run(seeded, "cancel", "ghost")
    assert missing.returncode == 1 and "UnknownWorkloadError" in missing.stderr


def test_tenant_text_cannot_drive_the_admins_terminal(seeded: Harness) -> None:
    # A tenant's cancel message with escape codes (clear the screen, rich markup).
    hostile = "\x1b[2J\x1b[31mgone[/] [bold]x"
    ok(run(seeded, "cancel", "a-1", "--message", hostile, token=TENANT_A_TOKEN))
    human = ok(run(seeded, "describe", "workload", "a-1"))
    assert "\x1b" not in human
    assert "\\x1b[2J\\x1b[31mgone[/] [bold]x" in human


def test_apply_and_config_get(seeded: Harness, tmp_path: Path) -> None:
    current = ok(run(seeded, "config", "get"))
    docs = [d for d in yaml.safe_load_all(current) if d]
    assert {d["kind"] for d in docs} >= {"ClusterQueue", "Queue", "ResourceFlavor"}
    good = tmp_path / "config.yaml"
    good.write_text(CONFIG_YAML)
    assert "dry run" in ok(run(seeded, "apply", "-f", str(good), "--dry-run"))
    assert "config applied" in ok(run(seeded, "apply", "-f", str(good)))
    assert "config applied" in ok(run(seeded, "apply", "-f", "-", stdin=current))
    bad = tmp_path / "bad.yaml"
    bad.write_text(CONFIG_YAML.replace("clusterQueue: cq-b", "clusterQueue: cq-missing"))
    for extra in ([], ["--dry-run"]):
        result = run(seeded, "apply", "-f", str(bad), *extra)
        assert result.returncode == 1
        assert "ConfigError" in result.stderr and "cq-missing" in result.stderr
    missing = run(seeded, "apply", "-f", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert json.loads(ok(run(seeded, "config", "get", "-o", "json")))


def test_apply_merges_like_kubectl_and_prune_says_what_it_would_remove(
    seeded: Harness, tmp_path: Path
) -> None:
    one_queue = tmp_path / "team-c.yaml"
    one_queue.write_text(
        "apiVersion: kueue.x-k8s.io/v1beta1\nkind: LocalQueue\n"
        "metadata: {name: team-c}\nspec: {clusterQueue: cq-a}\n"
    )
    out = ok(run(seeded, "apply", "-f", str(one_queue)))
    assert "config applied" in out and "+ Queue/team-c" in out
    assert {q for q in seeded.backend.config().queues} == {"team-a", "team-b", "team-c"}
    assert "no changes" in ok(run(seeded, "apply", "-f", str(one_queue), "--dry-run"))

    # --prune makes the file the whole config: a dry run names what would go and the
    # live workloads in the way, and changes nothing.
    without_b = tmp_path / "without-b.yaml"
    without_b.write_text(
        CONFIG_YAML.replace(
            "apiVersion: ray-queue.io/v1alpha1\nkind: Queue\nmetadata: {name: team-b}\n"
            "spec: {clusterQueue: cq-b}\n---\n",
            "",
        )
    )
    dry = run(seeded, "apply", "-f", str(without_b), "--prune", "--dry-run", "-o", "json")
    assert dry.returncode == 1 and "team-b" in dry.stderr  # still used: refused
    plan = ok(run(seeded, "apply", "-f", str(without_b), "--dry-run", "-o", "json"))
    assert json.loads(plan)["changes"] == []  # without --prune nothing is removed
    pruned_c = tmp_path / "all-but-c.yaml"
    pruned_c.write_text(CONFIG_YAML)
    shown = json.loads(
        ok(run(seeded, "apply", "-f", str(pruned_c), "--prune", "--dry-run", "-o", "json"))
    )
    assert shown["changes"] == [{"change": "removed", "kind": "Queue", "name": "team-c"}]
    assert set(seeded.backend.config().queues) == {"team-a", "team-b", "team-c"}


def test_job_submit(seeded: Harness) -> None:
    refused = run(
        seeded, "job", "submit", "--queue", "team-a", "--num-gpus", "1", "--", "python", "train.py"
    )
    assert refused.returncode == 1
    assert "JobsUnsupportedError" in refused.stderr and "cannot run jobs" in refused.stderr
    usage = run(seeded, "job", "submit", "--queue", "team-a")
    assert usage.returncode == 2 and "after --" in usage.stderr
    bad_resources = run(
        seeded, "job", "submit", "--queue", "team-a", "--resources", "[1]", "--", "x"
    )
    assert bad_resources.returncode == 2 and "--resources" in bad_resources.stderr


def test_job_submit_request_shape() -> None:
    from ray_queue.cli.app import _parser, job_request

    args = _parser().parse_args(
        [
            "job",
            "submit",
            "--queue",
            "q",
            "--priority",
            "high",
            "--num-cpus",
            "2",
            "--num-gpus",
            "0.5",
            "--resources",
            '{"TPU": 4}',
            "--id",
            "j1",
            "--",
            "python",
            "a b.py",
        ]
    )
    req = job_request(args)
    assert req.id == "j1" and req.priority_class == "high"
    assert dict(req.bundle_groups[0].resources) == {"CPU": 2000, "GPU": 500, "TPU": 4000}
    assert req.payload["entrypoint"] == "python 'a b.py'"


def test_job_submit_takes_quantities_and_refuses_negative_amounts() -> None:
    from ray_queue.cli.app import _parser, job_request

    args = _parser().parse_args(["job", "submit", "--queue", "q", "--memory", "4Gi", "--", "x"])
    assert job_request(args).bundle_groups[0].resources["memory"] == 4 * 2**30 * 1000
    for flag, value, problem in (
        ("--num-gpus", "-1", "'-1' is negative; give 0 or more"),
        ("--memory", "lots", "'lots' is not an amount"),
    ):
        refused = run(None, "job", "submit", "--queue", "q", flag, value, "--", "x")
        assert refused.returncode == 2 and problem in refused.stderr, refused.stderr


def test_top_refreshes_and_exits(seeded: Harness) -> None:
    out = ok(run(seeded, "top", "--iterations", "2", "--interval", "0.1"))
    assert "ray-queue top" in out and "cq-a" in out
    assert run(seeded, "top", "-o", "json").returncode == 2


def test_auth_failures(seeded: Harness) -> None:
    anonymous = run(seeded, "status", token=None)
    assert anonymous.returncode == 1 and "UnauthenticatedError" in anonymous.stderr
    tenant = run(seeded, "config", "get", token=TENANT_A_TOKEN)
    assert tenant.returncode == 1 and "PermissionDeniedError" in tenant.stderr
    mine = json.loads(ok(run(seeded, "list", "workloads", "-o", "json", token=TENANT_A_TOKEN)))
    assert [w["spec"]["id"] for w in mine] == ["a-1"]


def test_address_from_environment(seeded: Harness) -> None:
    result = run(
        None,
        "status",
        "-o",
        "json",
        env={"RAY_QUEUE_ADDRESS": seeded.address, "RAY_QUEUE_TOKEN": ADMIN_TOKEN},
        token=None,
    )
    assert json.loads(ok(result))["cluster_queues"]


def test_unreachable_server() -> None:
    result = subprocess.run(
        [str(RAY_QUEUE), "--address", "127.0.0.1:1", "--timeout", "5", "status"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    assert "cannot reach" in result.stderr and "--address" in result.stderr


def test_token_file(seeded: Harness, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(ADMIN_TOKEN + "\n")
    assert json.loads(
        ok(run(seeded, "--token-file", str(token_file), "status", "-o", "json", token=None))
    )
    missing = run(seeded, "--token-file", str(tmp_path / "nope"), "status", token=None)
    assert missing.returncode == 2 and "--token-file" in missing.stderr


def test_job_submit_caps_become_the_jobs_max_resources() -> None:
    from ray_queue.cli.app import _parser, job_request

    flags = ["--max-gpus", "2", "--max-cpus", "4", "--max", "TPU=8", "--max", "memory=4Gi"]
    args = _parser().parse_args(["job", "submit", "--queue", "q", *flags, "--", "python", "x.py"])
    assert job_request(args).max_resources == {
        "GPU": 2000,
        "CPU": 4000,
        "TPU": 8000,
        "memory": 4 * 2**30 * 1000,
    }
    bare = _parser().parse_args(["job", "submit", "--queue", "q", "--", "x"])
    assert job_request(bare).max_resources is None
    for given, problem in (("TPU", "give RESOURCE=N"), ("TPU=-1", "is negative")):
        refused = run(None, "job", "submit", "--queue", "q", "--max", given, "--", "x")
        assert refused.returncode == 2 and problem in refused.stderr, refused.stderr
