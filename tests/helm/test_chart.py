"""The Helm chart, rendered by the real helm and checked by the real API server.

What must hold: the chart lints; default and full values render the objects the docs
promise, shaped as the manager and autoscaler expect (in-tree autoscaler off, the sidecar's
flags, the flavors from the worker groups, a queue config the real loader accepts); every
rendered object passes a server-side dry-run apply with the real CRDs; bad values fail
with a message naming the value; and an install keeps its generated tokens on upgrade.
"""

from __future__ import annotations

import base64
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from autoscaler import __main__ as autoscaler_cli
from ray_queue.engine.config import ProvisioningMode
from ray_queue.engine.config_loader import load_config
from ray_queue.grpc.auth import Role, digest, parse_tokens
from ray_queue.manager import __main__ as manager_cli
from tests.helm.conftest import CHART, DOCS, EXAMPLES, KUBE_VERSION, REPO, VALUES, Helm

pytestmark = pytest.mark.timeout(180)

DEFAULT_KINDS = sorted(
    [
        "ConfigMap",  # queue config
        "ConfigMap",  # dashboard
        "NetworkPolicy",
        "NetworkPolicy",
        "RayCluster",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "Service",
        "ServiceAccount",
    ]
)


def _by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _one(objects: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [o for o in _by_kind(objects, kind) if o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} *{name_suffix}, got {len(found)}"
    return found[0]


def _head_containers(cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    return {c["name"]: c for c in spec["containers"]}


def test_lint_default_and_full_values(helm: Helm) -> None:
    for extra in ([], ["-f", str(VALUES / "full.yaml")]):
        proc = helm.run("lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION, *extra)
        assert "0 chart(s) failed" in proc.stdout, proc.stdout


def test_default_values_render_a_ray_cluster_with_manager_and_sidecar(helm: Helm) -> None:
    objects = helm.template(namespace="ray")
    assert sorted(o["kind"] for o in objects) == DEFAULT_KINDS
    assert all(o["metadata"]["namespace"] == "ray" for o in objects)

    cluster = _one(objects, "RayCluster")
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["spec"]["enableInTreeAutoscaling"] is False
    head = cluster["spec"]["headGroupSpec"]
    pod = head["template"]
    # KubeRay must leave the head's command alone so the manager starts after Ray.
    assert pod["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    assert pod["spec"]["automountServiceAccountToken"] is False
    containers = _head_containers(cluster)
    assert set(containers) == {"ray-head", "autoscaler"}
    script = containers["ray-head"]["args"][0]
    assert 'eval "$KUBERAY_GEN_RAY_START_CMD" &' in script
    assert "'python' '-m' 'ray_queue.manager'" in script
    assert "'--config-file' '/etc/ray-queue/config/queues.yaml' '--watch-config'" in script
    assert 'kill -0 "$manager_pid"' in script

    sidecar = containers["autoscaler"]
    assert sidecar["command"] == ["python", "-m", "autoscaler"]
    args = sidecar["args"]
    assert args == [
        "--cluster-name=rq-ray-queue",
        "--namespace=ray",
        "--manager-address=127.0.0.1:50051",
        "--interval-s=1",
        "--metrics-port=9091",
        "--token-file=/etc/ray-queue/autoscaler/token",
        "--idle-timeout-s=60",
        "--gcs-address=127.0.0.1:6379",
        "--worker-group=cpu=cpu-workers",
    ]
    # The sidecar's real argument parser accepts exactly what the chart passes.
    parsed = autoscaler_cli.parse_args(args)
    assert (parsed.cluster_name, parsed.namespace, parsed.metrics_port) == (
        "rq-ray-queue",
        "ray",
        9091,
    )
    assert parsed.worker_group == ["cpu=cpu-workers"]
    mounts = {m["name"]: m["mountPath"] for m in sidecar["volumeMounts"]}
    assert mounts == {
        "kube-api-access": "/var/run/secrets/kubernetes.io/serviceaccount",
        "autoscaler-token": "/etc/ray-queue/autoscaler",
        "ray-auth": "/etc/ray-queue/ray-auth",
    }
    head_volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert head_volumes["autoscaler-token"]["secret"]["items"] == [
        {"key": "autoscaler", "path": "token"}
    ]
    assert head_volumes["tokens"]["secret"]["items"] == [
        {"key": "tokens.yaml", "path": "tokens.yaml"}
    ]
    env = {e["name"]: e.get("value") for e in containers["ray-head"]["env"]}
    assert env["RAY_QUEUE_TOKENS_FILE"] == "/etc/ray-queue/tokens/tokens.yaml"
    assert env["RAY_QUEUE_GRPC_PORT"] == "50051"
    # The manager container holds no Kubernetes credentials.
    assert all(
        m["mountPath"] != "/var/run/secrets/kubernetes.io/serviceaccount"
        for m in containers["ray-head"]["volumeMounts"]
    )

    (group,) = cluster["spec"]["workerGroupSpecs"]
    assert (group["groupName"], group["minReplicas"], group["maxReplicas"]) == (
        "cpu-workers",
        0,
        10,
    )
    assert group["template"]["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] == "4Gi"
    assert group["template"]["spec"]["automountServiceAccountToken"] is False

    queues = _one(objects, "ConfigMap", "-queues")
    config = load_config(queues["data"]["queues.yaml"])
    assert set(config.flavors) == {"cpu"}
    assert config.flavors["cpu"].worker_group == "cpu-workers"
    assert dict(config.flavors["cpu"].node_labels) == {"ray-queue.io/flavor": "cpu"}
    assert group["rayStartParams"]["labels"] == "ray-queue.io/flavor=cpu"
    assert set(config.cluster_queues) == {"default"} and set(config.queues) == {"default"}

    dashboard = _one(objects, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = (CHART / "dashboards" / "ray-queue.json").read_text()
    assert json.loads(dashboard["data"]["ray-queue.json"]) == json.loads(shipped)

    secret = _one(objects, "Secret")
    tokens = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert len(tokens["admin"]) == 40 and len(tokens["autoscaler"]) == 40
    assert len(tokens["ray"]) == 40
    assert len({tokens["admin"], tokens["autoscaler"], tokens["ray"]}) == 3
    # The manager's own token parser reads the file the chart writes.
    principals = parse_tokens(tokens["tokens.yaml"], origin="chart")
    assert principals[digest(tokens["admin"])].role is Role.ADMIN
    assert principals[digest(tokens["autoscaler"])].role is Role.AUTOSCALER
    assert len(principals) == 2

    grpc = _one(objects, "Service", "-grpc")
    assert grpc["spec"]["ports"] == [
        {
            "name": "grpc",
            "port": 50051,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "grpc",
        }
    ]
    head_labels = pod["metadata"]["labels"]
    for service in _by_kind(objects, "Service"):
        assert service["spec"]["selector"].items() <= head_labels.items()


def test_full_values_render_every_option(helm: Helm) -> None:
    objects = helm.template(VALUES / "full.yaml", namespace="ml-team")
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted([*DEFAULT_KINDS, "ServiceMonitor"])
    for obj in objects:
        assert obj["metadata"]["labels"]["team"] == "platform", obj["metadata"]["name"]
        assert obj["metadata"]["annotations"]["owner"] == "platform@example.com"

    cluster = _one(objects, "RayCluster")
    assert cluster["metadata"]["name"] == "ml"
    containers = _head_containers(cluster)
    script = containers["ray-head"]["args"][0]
    env = {e["name"]: e.get("value") for e in containers["ray-head"]["env"]}
    assert env["RAY_QUEUE_TLS_CERT"] == "/etc/ray-queue/tls/tls.crt"
    assert env["RAY_QUEUE_TLS_KEY"] == "/etc/ray-queue/tls/tls.key"
    assert env["RAY_LOG_TO_STDERR"] == "1"
    for fragment in (
        "'--log-level' 'DEBUG'",
        "'--poll-interval-s=1'",
    ):
        assert fragment in script
    assert containers["autoscaler"]["image"] == "registry.example.com/ray-queue-autoscaler:0.1.0"
    assert containers["ray-head"]["image"] == "registry.example.com/ray-queue:0.1.0-py311"
    assert "--interval-s=0.5" in containers["autoscaler"]["args"]
    args = containers["autoscaler"]["args"]
    assert args[-1] == "--idle-timeout-s=120"
    assert "--worker-group=cpu=cpu-workers" in args and "--worker-group=a100=gpu-a100" in args
    assert "--provisioning-check=gpu-provisioning" in args
    assert autoscaler_cli.parse_args(args).provisioning_check == "gpu-provisioning"
    volumes = {
        v["name"]: v for v in cluster["spec"]["headGroupSpec"]["template"]["spec"]["volumes"]
    }
    assert volumes["state"]["persistentVolumeClaim"] == {"claimName": "ml-queue-state"}
    assert volumes["tls"]["secret"]["secretName"] == "ml-grpc-tls"

    assert cluster["spec"]["headGroupSpec"]["rayStartParams"] == {
        "num-cpus": "0",
        "dashboard-host": "0.0.0.0",
        "object-store-memory": "1000000000",  # not 1e+09
    }
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu-workers", "gpu-a100"}
    gpu = groups["gpu-a100"]
    assert gpu["rayStartParams"] == {
        "num-gpus": "4",
        "labels": "example.com/accelerator=a100,ray-queue.io/flavor=a100",
    }
    assert gpu["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert gpu["template"]["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] == "32Gi"

    config = load_config(_one(objects, "ConfigMap", "-queues")["data"]["queues.yaml"])
    assert config.flavors["a100"].provisioning is ProvisioningMode.ALL_AT_ONCE
    assert config.flavors["a100"].worker_group == "gpu-a100"
    assert dict(config.flavors["a100"].node_labels) == {
        "example.com/accelerator": "a100",
        "ray-queue.io/flavor": "a100",
    }
    assert set(config.cluster_queues) == {"training", "research"}

    secret = _one(objects, "Secret")
    text = base64.b64decode(secret["data"]["tokens.yaml"]).decode()
    principals = parse_tokens(text, origin="chart")
    training = principals[digest("training-token-for-tests-only")]
    assert (training.name, training.role, training.queues) == (
        "training",
        Role.TENANT,
        frozenset({"training"}),
    )
    research = next(p for p in principals.values() if p.name == "research")
    assert research.role is Role.TENANT and research.queues == frozenset({"research"})
    assert principals[digest("admin-token-for-tests-only")].role is Role.ADMIN
    assert base64.b64decode(secret["data"]["admin"]).decode() == "admin-token-for-tests-only"

    monitor = _one(objects, "ServiceMonitor")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [
        "manager-metrics",
        "autoscaler-metrics",
    ]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    metrics = _one(objects, "Service", "-metrics")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    )

    manager_policy = _one(objects, "NetworkPolicy", "-manager")
    ingress = manager_policy["spec"]["ingress"]
    assert [sorted(p["port"] for p in rule["ports"]) for rule in ingress] == [
        [50051],
        [9090, 9091],
        [8265, 10001],
    ]
    assert ingress[0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"ray-queue.io/tenant": "true"}}}
    ]


def test_optional_parts_switch_off(helm: Helm) -> None:
    objects = helm.template(
        sets=[
            "autoscaler.enabled=false",
            "networkPolicy.enabled=false",
            "dashboard.enabled=false",
            "tokens.existingSecret=my-tokens",
        ]
    )
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(["ConfigMap", "RayCluster", "Service", "Service", "ServiceAccount"]), (
        "without the autoscaler there is no Role; with existingSecret no Secret"
    )
    cluster = _one(objects, "RayCluster")
    assert set(_head_containers(cluster)) == {"ray-head"}
    assert cluster["spec"]["enableInTreeAutoscaling"] is False
    volumes = {
        v["name"]: v for v in cluster["spec"]["headGroupSpec"]["template"]["spec"]["volumes"]
    }
    assert volumes["tokens"]["secret"]["secretName"] == "my-tokens"
    assert "kube-api-access" not in volumes


#: Each queue config the chart's examples use, with the values file it goes with.
CHART_EXAMPLES = [(EXAMPLES / "values.yaml", EXAMPLES / "queues.yaml")]


def test_every_example_queue_config_loads(helm: Helm) -> None:
    """What `helm install` with an example would hand the manager loads without a problem:
    the chart's examples rendered with their values, the standalone ones as they are."""
    used = {path for pair in CHART_EXAMPLES for path in pair}
    assert set(EXAMPLES.glob("*.yaml")) == used, "every file in examples/helm is checked here"
    for values, queues in CHART_EXAMPLES:
        objects = helm.template(values, set_files=[f"queueConfig={queues}"])
        text = _one(objects, "ConfigMap", "-queues")["data"]["queues.yaml"]
        config = load_config(text)
        groups = _one(objects, "RayCluster")["spec"]["workerGroupSpecs"]
        assert {f.worker_group for f in config.flavors.values()} == {g["groupName"] for g in groups}
        assert config.cluster_queues and config.queues, queues
    standalone = sorted((REPO / "examples" / "config").glob("*.yaml"))
    assert standalone, "examples/config holds the standalone queue configs"
    for path in standalone:
        assert load_config(path).cluster_queues, path


def _manager_argv(cluster: dict[str, Any]) -> list[str]:
    """The manager's command line in the head container's start script."""
    script = _head_containers(cluster)["ray-head"]["args"][0]
    line = next(x for x in script.splitlines() if "'ray_queue.manager'" in x)
    argv = shlex.split(line.rstrip("& "))
    assert argv[:3] == ["python", "-m", "ray_queue.manager"]
    return argv[3:]


@pytest.mark.parametrize("values", ["default", "full"])
def test_the_managers_own_parser_accepts_what_the_chart_passes(helm: Helm, values: str) -> None:
    files = [] if values == "default" else [VALUES / "full.yaml"]
    cluster = _one(helm.template(*files), "RayCluster")
    args = manager_cli._parse(_manager_argv(cluster))  # exits (fails) on an unknown flag
    assert str(args.config_file) == "/etc/ray-queue/config/queues.yaml"
    assert args.watch_config is True and args.address == "auto"
    assert args.state_dir == "/var/lib/ray-queue"


def _pod_specs(cluster: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every pod template of the RayCluster, by group ("head" or the worker group name)."""
    specs = {"head": cluster["spec"]["headGroupSpec"]["template"]["spec"]}
    for group in cluster["spec"]["workerGroupSpecs"]:
        specs[group["groupName"]] = group["template"]["spec"]
    return specs


#: The containers that run Ray or talk to it: Ray's own head and worker containers, and the
#: autoscaler sidecar (it reads node state from the GCS and drains nodes there).
RAY_CLIENTS = {"ray-head", "ray-worker", "autoscaler"}


@pytest.mark.parametrize("values", ["default", "full", "examples"])
def test_ray_auth_is_on_in_every_ray_container_and_its_token_mounted_only_there(
    helm: Helm, values: str
) -> None:
    files = {
        "default": [],
        "full": [VALUES / "full.yaml"],
        "examples": [EXAMPLES / "values.yaml"],
    }[values]
    sets = [f"queueConfig={EXAMPLES / 'queues.yaml'}"] if values == "examples" else []
    objects = helm.template(*files, set_files=sets)
    cluster = _one(objects, "RayCluster")
    secret_name = _one(objects, "Secret")["metadata"]["name"]
    seen = set()
    for group, spec in _pod_specs(cluster).items():
        volumes = {v["name"]: v for v in spec["volumes"]}
        # Every volume of the token Secret projects single keys, never the whole Secret.
        for volume in volumes.values():
            if volume.get("secret", {}).get("secretName") == secret_name:
                assert len(volume["secret"]["items"]) == 1, (group, volume)
        assert volumes["ray-auth"]["secret"] == {
            "secretName": secret_name,
            "defaultMode": 0o400,
            "items": [{"key": "ray", "path": "token"}],
        }
        for container in spec["containers"]:
            seen.add(container["name"])
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
            where = f"{group}/{container['name']}"
            assert container["name"] in RAY_CLIENTS, where
            assert env["RAY_AUTH_MODE"] == "token", where
            assert "RAY_AUTH_TOKEN" not in env, f"{where}: the token is a file, not a variable"
            assert env["RAY_AUTH_TOKEN_PATH"] == "/etc/ray-queue/ray-auth/token", where
            assert mounts["ray-auth"] == "/etc/ray-queue/ray-auth", where
            # The gRPC token file is the manager's alone (it runs in the head container).
            assert ("tokens" in mounts) == (container["name"] == "ray-head"), where
    assert seen == RAY_CLIENTS


def test_ray_auth_off_leaves_no_token_anywhere(helm: Helm) -> None:
    cluster = _one(helm.template(sets=["rayAuth.enabled=false"]), "RayCluster")
    for group, spec in _pod_specs(cluster).items():
        assert "ray-auth" not in {v["name"] for v in spec["volumes"]}, group
        for container in spec["containers"]:
            names = {e["name"] for e in container.get("env", [])}
            assert not names & {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"}, container["name"]


CAPTURE_VARS = {
    "RAY_QUEUE_CAPTURE",
    "RAY_QUEUE_QUEUE",
    "RAY_QUEUE_PRIORITY",
    "RAY_QUEUE_TOKEN_FILE",
}
#: A tenant whose token captured drivers use, and capture on.
CAPTURE_ON = [
    "tokens.tenants[0].name=team-a",
    "tokens.tenants[0].queues={default}",
    "capture.enabled=true",
    "capture.tenant=team-a",
]


def test_capture_puts_its_variables_and_token_on_every_ray_container_and_only_there(
    helm: Helm,
) -> None:
    def capture_env(cluster: dict[str, Any]) -> dict[str, dict[str, str]]:
        return {
            f"{group}/{c['name']}": {
                e["name"]: e["value"] for e in c.get("env", []) if e["name"] in CAPTURE_VARS
            }
            for group, spec in _pod_specs(cluster).items()
            for c in spec["containers"]
        }

    objects = helm.template(sets=[*CAPTURE_ON, "capture.priorityClass=low"])
    cluster = _one(objects, "RayCluster")
    wanted = {
        "RAY_QUEUE_CAPTURE": "1",
        "RAY_QUEUE_QUEUE": "default",
        "RAY_QUEUE_PRIORITY": "low",
        "RAY_QUEUE_TOKEN_FILE": "/etc/ray-queue/capture/token",
    }
    on = capture_env(cluster)
    assert on.pop("head/autoscaler") == {}  # not a driver: it talks gRPC and the GCS
    assert on == {"head/ray-head": wanted, "cpu-workers/ray-worker": wanted}
    # The token file is the tenant's own key of the Secret, and exists there.
    secret = _one(objects, "Secret")
    for group, spec in _pod_specs(cluster).items():
        (volume,) = [v for v in spec["volumes"] if v["name"] == "capture-token"]
        assert volume["secret"]["items"] == [{"key": "tenant-team-a", "path": "token"}], group
    assert "tenant-team-a" in secret["data"]
    # The manager, in the head container, neither is captured nor uses the tenant's token.
    head = next(c for c in _pod_specs(cluster)["head"]["containers"] if c["name"] == "ray-head")
    assert "env -u RAY_QUEUE_TOKEN_FILE 'python' '-m' 'ray_queue.manager'" in head["args"][0]
    off = capture_env(_one(helm.template(), "RayCluster"))
    assert not any(off.values()), off


def test_worker_group_defaults_are_the_documented_ones(helm: Helm, tmp_path: Path) -> None:
    """A group given with only its name and resources gets what docs/helm.md promises."""
    path = tmp_path / "values.yaml"
    path.write_text(
        "workerGroups:\n  - {name: small, flavor: cpu, resources: {requests: {cpu: '1'}}}\n"
    )
    objects = helm.template(path)
    (group,) = _one(objects, "RayCluster")["spec"]["workerGroupSpecs"]
    assert (group["replicas"], group["minReplicas"], group["maxReplicas"]) == (0, 0, 10)
    assert group["numOfHosts"] == 1
    assert group["template"]["spec"]["volumes"][0]["emptyDir"]["sizeLimit"] == "4Gi"
    config = load_config(_one(objects, "ConfigMap", "-queues")["data"]["queues.yaml"])
    flavor = config.flavors["cpu"]
    assert flavor.worker_group == "small"
    assert flavor.provisioning is ProvisioningMode.INCREMENTAL
    # The documented defaults, read from the values table in docs/helm.md.
    table = (DOCS / "helm.md").read_text()
    assert "| `workerGroups[].shmSize` | `4Gi` |" in table
    assert "| `workerGroups[].replicas`, `minReplicas`, `maxReplicas` | `0`, `0`, `10` |" in table
    assert "| `workerGroups[].resources` | required |" in table
    # And values.schema.json requires exactly the keys the table calls required.
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["workerGroups"]["items"]["required"] == ["name", "resources"]


def test_renders_are_the_same_when_no_token_is_generated(helm: Helm) -> None:
    """GitOps renders without the cluster (no lookup): with every token given, or with a
    Secret of the user's own, two renders are identical; with neither, they are not."""
    given = [
        "tokens.admin=admin-token-0001",
        "tokens.autoscaler=autoscaler-token-0001",
        "tokens.ray=ray-token-0001",
        "tokens.tenants[0].name=team-a",
        "tokens.tenants[0].token=team-a-token-0001",
        "tokens.tenants[0].queues[0]=default",
    ]
    assert helm.template(sets=given) == helm.template(sets=given)
    secret = _one(helm.template(sets=given), "Secret")
    # A team's token alone, for its drivers (RAY_QUEUE_TOKEN_FILE), is the one in the file.
    team_a = base64.b64decode(secret["data"]["tenant-team-a"]).decode()
    principals = parse_tokens(base64.b64decode(secret["data"]["tokens.yaml"]).decode(), origin="")
    assert team_a == "team-a-token-0001" and principals[digest(team_a)].queues == {"default"}
    own = ["tokens.existingSecret=ml-tokens"]
    objects = helm.template(sets=own)
    assert objects == helm.template(sets=own)
    assert not _by_kind(objects, "Secret")
    secret_volumes = [
        v["secret"]
        for spec in _pod_specs(_one(objects, "RayCluster")).values()
        for v in spec["volumes"]
        if "secret" in v
    ]
    assert {v["secretName"] for v in secret_volumes} == {"ml-tokens"}
    assert {i["key"] for v in secret_volumes for i in v["items"]} == {
        "tokens.yaml",
        "autoscaler",
        "ray",
    }
    assert helm.template() != helm.template(), "generated tokens differ between renders"


BAD_VALUES = [
    pytest.param(
        "workerGroups:\n  - {name: cpu, maxReplicas: many, resources: {}}\n",
        "/workerGroups/0/maxReplicas",
        id="max-replicas-not-a-number",
    ),
    pytest.param(
        "workerGroups:\n  - {name: CPU_Workers, maxReplicas: 2, resources: {}}\n",
        "/workerGroups/0/name",
        id="group-name-not-a-dns-label",
    ),
    pytest.param(
        "workerGroups:\n  - {name: cpu, maxReplicas: 2, provisioning: gang, resources: {}}\n",
        "/workerGroups/0/provisioning",
        id="unknown-provisioning-mode",
    ),
    pytest.param("manager:\n  grpcPrt: 50052\n", "grpcPrt", id="typo-in-a-key"),
    pytest.param("manager:\n  grpcPort: 70000\n", "/manager/grpcPort", id="port-out-of-range"),
    pytest.param("queueConfig: {kind: ClusterQueue}\n", "/queueConfig", id="config-not-a-string"),
    pytest.param(
        "workerGroups:\n  - {name: cpu, maxReplicas: 2, resources: {requests: {cpu: lots}}}\n",
        "/workerGroups/0/resources/requests/cpu",
        id="bad-quantity",
    ),
    pytest.param(
        "tokens:\n  tenants:\n    - {name: team-a, queues: []}\n",
        "/tokens/tenants/0/queues",
        id="tenant-without-queues",
    ),
    pytest.param(
        "workerGroups:\n  - {name: cpu, minReplicas: 3, maxReplicas: 2, replicas: 3, "
        "resources: {}}\n",
        "minReplicas 3 is above maxReplicas 2",
        id="min-above-max",
    ),
    pytest.param(
        "workerGroups:\n  - {name: a, flavor: cpu, maxReplicas: 2, resources: {}}\n"
        "  - {name: b, flavor: cpu, maxReplicas: 2, resources: {}}\n",
        'flavor "cpu" is provided by two worker groups',
        id="flavor-twice",
    ),
    pytest.param(
        "workerGroups:\n  - {name: a, maxReplicas: 2, resources: {}, labels: {ray.io/gpu: x}}\n",
        "Ray reserves the ray.io/ prefix",
        id="reserved-label-prefix",
    ),
    pytest.param(
        "manager:\n  metricsPort: 8265\n",
        "manager.metricsPort: port 8265 is taken by Ray's dashboard",
        id="port-clash-with-ray",
    ),
    pytest.param(
        "tokens:\n  admin: short\n",
        "/tokens/admin",
        id="token-too-short",
    ),
    pytest.param(
        "manager:\n  tls: {enabled: true}\n",
        "manager.tls.secretName",
        id="tls-without-secret",
    ),
    pytest.param(
        "workerGroups:\n  - {name: cpu-workers, flavor: cpu, resources: {}}\n"
        "queueConfig: |\n  kind: ClusterQueue\n  metadata: {name: training}\n  spec:\n"
        "    resourceGroups:\n    - coveredResources: [GPU]\n"
        "      flavors: [{name: a100, resources: [{name: GPU, nominalQuota: 8}]}]\n",
        'queueConfig: ClusterQueue "training" uses flavor "a100", which no worker group '
        "provides (workerGroups[].flavor: cpu)",
        id="queue-config-flavor-without-a-group",
    ),
    pytest.param(
        "queueConfig: |\n  kind: Queue\n  metadata: {name: q}\n  ---\n"
        "  kind: ResourceFlavor\n  metadata: {name: cpu}\n",
        'queueConfig: ResourceFlavor "cpu": leave ResourceFlavors out',
        id="queue-config-with-its-own-flavor",
    ),
    pytest.param(
        "queueConfig: 'kind: [ClusterQueue'\n",
        "queueConfig: document 1 is not a YAML mapping",
        id="queue-config-not-yaml",
    ),
    pytest.param(
        "capture: {enabled: true, queue: team-x, tenant: a}\n",
        'capture.queue: Queue "team-x" is not in queueConfig (its Queues: default)',
        id="capture-to-an-unknown-queue",
    ),
    pytest.param(
        "capture: {enabled: true}\n",
        "capture.tenant: name the tenant of tokens.tenants",
        id="capture-without-a-tenant",
    ),
    pytest.param(
        "capture: {enabled: true, tenant: nobody}\n",
        'capture.tenant: tenant "nobody" is not in tokens.tenants',
        id="capture-as-an-unknown-tenant",
    ),
    pytest.param(
        "tokens: {tenants: [{name: a, queues: [other]}]}\ncapture: {enabled: true, tenant: a}\n",
        'capture.queue: tenant "a" may not use Queue "default" (its queues: other)',
        id="capture-to-a-queue-of-another-tenant",
    ),
    pytest.param(
        "workerGroups:\n  - {name: cpu, maxReplicas: 2}\n",
        "/workerGroups/0",
        id="group-without-resources",
    ),
]


@pytest.mark.parametrize(("values", "message"), BAD_VALUES)
def test_bad_values_fail_with_a_clear_message(
    helm: Helm, tmp_path: Path, values: str, message: str
) -> None:
    path = tmp_path / "values.yaml"
    path.write_text(values)
    error = helm.template_error(path)
    assert message in error, error
