"""The chart against the real API server: dry-run apply, RBAC, install and upgrade.

A rendered object can be valid YAML and still be refused: a field the RayCluster CRD does
not declare, a NetworkPolicy peer of the wrong shape, a Role for a resource that is not
served. Server-side apply with ``dryRun=All`` and strict field validation runs every
admission and schema check without storing anything. RBAC is then checked the way the
API server itself decides: a SubjectAccessReview for the chart's ServiceAccount, for
every verb the autoscaler needs (allowed) and for a sample of verbs it must not have
(denied).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.conftest import CHART, VALUES, Helm
from tests.k8s.conftest import K8sApi

pytestmark = pytest.mark.timeout(240)

FIELD_MANAGER = "ray-queue-helm-test"

#: (group, resource, subresource, verb): what docs/autoscaler.md says the sidecar does,
#: and what autoscaler/providers/kuberay.py and autoscaler/provisioning.py call.
NEEDED = [
    ("ray.io", "rayclusters", "", "get"),
    ("ray.io", "rayclusters", "", "patch"),
    *[
        ("autoscaling.x-k8s.io", "provisioningrequests", "", v)
        for v in ("list", "create", "delete")
    ],
    *[("", "podtemplates", "", v) for v in ("list", "create", "delete")],
    ("", "pods", "", "list"),
]

#: A sample of what it must not do: write what it only reads, touch secrets or config,
#: exec into pods, create or delete whole clusters, change RBAC, or see other namespaces.
FORBIDDEN = [
    # It never watches (every pass is a fresh read) and never reads status.
    ("ray.io", "rayclusters", "", "watch"),
    ("ray.io", "rayclusters", "", "list"),
    ("", "pods", "", "watch"),
    ("", "pods", "", "get"),
    ("autoscaling.x-k8s.io", "provisioningrequests", "", "watch"),
    ("autoscaling.x-k8s.io", "provisioningrequests", "status", "get"),
    ("", "podtemplates", "", "get"),
    ("", "secrets", "", "get"),
    ("", "secrets", "", "list"),
    ("", "configmaps", "", "get"),
    ("", "configmaps", "", "update"),
    ("", "pods", "", "create"),
    ("", "pods", "", "delete"),
    ("", "pods", "", "patch"),
    ("", "pods", "exec", "create"),
    ("", "pods", "log", "get"),
    ("", "services", "", "create"),
    ("", "podtemplates", "", "update"),
    ("", "podtemplates", "", "patch"),
    ("", "serviceaccounts", "token", "create"),
    ("ray.io", "rayclusters", "", "create"),
    ("ray.io", "rayclusters", "", "delete"),
    ("ray.io", "rayclusters", "", "update"),
    ("ray.io", "rayclusters", "status", "patch"),
    ("ray.io", "rayjobs", "", "create"),
    ("autoscaling.x-k8s.io", "provisioningrequests", "", "update"),
    ("autoscaling.x-k8s.io", "provisioningrequests", "", "patch"),
    ("autoscaling.x-k8s.io", "provisioningrequests", "status", "patch"),
    ("rbac.authorization.k8s.io", "roles", "", "create"),
    ("rbac.authorization.k8s.io", "rolebindings", "", "create"),
    ("networking.k8s.io", "networkpolicies", "", "delete"),
]


def _dynamic(api: K8sApi) -> Any:
    from kubernetes.dynamic import DynamicClient

    return DynamicClient(api.api_client)


def _dry_run_apply(dyn: Any, obj: dict[str, Any]) -> None:
    resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    dyn.server_side_apply(
        resource,
        body=obj,
        namespace=obj["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        dry_run="All",
        query_params=[("fieldValidation", "Strict")],
    )


def _apply(dyn: Any, obj: dict[str, Any]) -> None:
    resource = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    dyn.server_side_apply(
        resource,
        body=obj,
        namespace=obj["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        query_params=[("fieldValidation", "Strict")],
    )


@pytest.mark.parametrize("values", ["default", "full"])
def test_every_rendered_object_passes_a_server_side_dry_run(
    helm: Helm, k8s_api: K8sApi, k8s_namespace: str, servicemonitor_crd: str, values: str
) -> None:
    files = [] if values == "default" else [VALUES / "full.yaml"]
    objects = helm.template(*files, namespace=k8s_namespace)
    dyn = _dynamic(k8s_api)
    refused = []
    for obj in objects:
        try:
            _dry_run_apply(dyn, obj)
        except Exception as exc:  # collect all refusals, then report them together
            body = getattr(exc, "body", None) or str(exc)
            refused.append(f"{obj['kind']}/{obj['metadata']['name']}: {body}")
    assert not refused, "the API server refused:\n" + "\n".join(refused)
    assert servicemonitor_crd == "servicemonitors.monitoring.coreos.com"
    if values == "full":
        assert "ServiceMonitor" in {o["kind"] for o in objects}


def test_dry_run_catches_what_the_schema_cannot(k8s_api: K8sApi, k8s_namespace: str) -> None:
    """The dry run is a real check: a RayCluster with a field the CRD lacks is refused."""
    from kubernetes.dynamic.exceptions import DynamicApiError

    bad = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "not-valid", "namespace": k8s_namespace},
        "spec": {"headGroupSpec": {"template": {"spec": {"containers": []}}}, "inTree": True},
    }
    with pytest.raises(DynamicApiError) as info:
        _dry_run_apply(_dynamic(k8s_api), bad)
    assert "inTree" in str(info.value.body)


@pytest.fixture(scope="module")
def rbac_installed(helm: Helm, k8s_api: K8sApi, k8s_namespace: str) -> Iterator[str]:
    """The chart's ServiceAccount, Role and RoleBinding applied for real. Yields the SA user."""
    objects = helm.template(namespace=k8s_namespace)
    dyn = _dynamic(k8s_api)
    kinds = ("ServiceAccount", "Role", "RoleBinding")
    rbac = [o for o in objects if o["kind"] in kinds]
    assert sorted(o["kind"] for o in rbac) == sorted(kinds)
    for obj in rbac:
        _apply(dyn, obj)
    account = next(o for o in rbac if o["kind"] == "ServiceAccount")["metadata"]["name"]
    yield f"system:serviceaccount:{k8s_namespace}:{account}"


def _allowed(api: K8sApi, user: str, namespace: str, rule: tuple[str, str, str, str]) -> bool:
    from kubernetes import client

    group, resource, subresource, verb = rule
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=user,
            groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            resource_attributes=client.V1ResourceAttributes(
                namespace=namespace,
                group=group,
                resource=resource,
                subresource=subresource or None,
                verb=verb,
            ),
        )
    )
    result = client.AuthorizationV1Api(api.api_client).create_subject_access_review(review)
    return bool(result.status.allowed)


def test_service_account_may_do_what_the_autoscaler_needs(
    k8s_api: K8sApi, k8s_namespace: str, rbac_installed: str
) -> None:
    denied = [r for r in NEEDED if not _allowed(k8s_api, rbac_installed, k8s_namespace, r)]
    assert not denied, f"needed but denied: {denied}"


def test_service_account_may_do_nothing_more(
    k8s_api: K8sApi, k8s_namespace: str, rbac_installed: str
) -> None:
    allowed = [r for r in FORBIDDEN if _allowed(k8s_api, rbac_installed, k8s_namespace, r)]
    assert not allowed, f"allowed but not needed: {allowed}"
    # Namespaced: nothing in another namespace, nothing cluster-scoped.
    for rule in (("ray.io", "rayclusters", "", "patch"), ("", "pods", "", "list")):
        assert not _allowed(k8s_api, rbac_installed, "kube-system", rule), rule
    assert not _allowed(k8s_api, rbac_installed, "", ("", "nodes", "", "list"))


def test_role_grants_exactly_the_needed_rules(helm: Helm) -> None:
    """Structurally too: every (group, resource, verb) the Role grants is in NEEDED."""
    role = next(o for o in helm.template() if o["kind"] == "Role")
    granted = {
        (group, *(resource.split("/", 1) if "/" in resource else (resource, "")), verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert granted == set(NEEDED)


def _secret_tokens(api: K8sApi, namespace: str, name: str) -> dict[str, str]:
    from kubernetes import client

    secret = client.CoreV1Api(api.api_client).read_namespaced_secret(name, namespace)
    return {k: base64.b64decode(v).decode() for k, v in secret.data.items()}


def test_install_upgrade_uninstall_keep_generated_tokens(
    helm_k8s: Helm, k8s_api: K8sApi, k8s_namespace: str, tmp_path: Path
) -> None:
    release = "tok"
    chart_args = [str(CHART), "--namespace", k8s_namespace, "-f", str(VALUES / "install.yaml")]
    notes = helm_k8s.run("install", release, *chart_args, timeout_s=180).stdout
    assert f"RayCluster {k8s_namespace}/tok-ray-queue" in notes
    assert "export RAY_QUEUE_TOKEN=$(kubectl" in notes
    assert "Tenant tokens are in the same Secret, key tokens.yaml (team-a)" in notes
    assert "head pod restart starts from an empty queue" in notes
    assert "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(kubectl" in notes
    assert "{.data.ray}" in notes

    secret_name = "tok-ray-queue-tokens"
    before = _secret_tokens(k8s_api, k8s_namespace, secret_name)
    entries = yaml.safe_load(before["tokens.yaml"])["tokens"]
    assert [(t["name"], t["role"]) for t in entries] == [
        ("admin", "admin"),
        ("autoscaler", "autoscaler"),
        ("team-a", "tenant"),
    ]
    assert all(len(t["token"]) == 40 for t in entries)
    assert len(before["ray"]) == 40, "Ray's own token, generated like the others"

    bigger = tmp_path / "bigger.yaml"
    bigger.write_text(
        "workerGroups:\n  - {name: cpu-workers, flavor: cpu, maxReplicas: 3, "
        "resources: {requests: {cpu: '1', memory: 1Gi}}}\n"
    )
    helm_k8s.run("upgrade", release, *chart_args, "-f", str(bigger), timeout_s=180)
    after = _secret_tokens(k8s_api, k8s_namespace, secret_name)
    assert after == before, "an upgrade must not rotate generated tokens"

    from kubernetes import client

    custom = client.CustomObjectsApi(k8s_api.api_client)
    cluster = custom.get_namespaced_custom_object(
        "ray.io", "v1", k8s_namespace, "rayclusters", "tok-ray-queue"
    )
    assert cluster["spec"]["workerGroupSpecs"][0]["maxReplicas"] == 3

    helm_k8s.run("uninstall", release, "--namespace", k8s_namespace, timeout_s=180)
    # helm.sh/resource-policy: keep — a reinstall finds the same tokens.
    assert _secret_tokens(k8s_api, k8s_namespace, secret_name) == before


#: The last commit whose chart had no ``rayAuth`` (what an installed release may run).
CHART_BEFORE_RAY_AUTH = "8d164fcdaac6bb243274c00d1a70fe6fe4d3a9ba"


def _old_chart(tmp_path: Path) -> Path:
    """The chart as of CHART_BEFORE_RAY_AUTH, from this repository's history."""
    import io
    import subprocess
    import tarfile

    archive = subprocess.run(
        ["git", "-C", str(CHART.parents[1]), "archive", CHART_BEFORE_RAY_AUTH, "helm/ray-queue"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {CHART_BEFORE_RAY_AUTH[:7]} is not in this clone (shallow?)")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "helm" / "ray-queue"


def test_upgrade_from_the_chart_before_ray_auth_as_docs_helm_md_says(
    helm_k8s: Helm, k8s_api: K8sApi, k8s_namespace: str, tmp_path: Path
) -> None:
    release = "old"
    values = ["--namespace", k8s_namespace, "-f", str(VALUES / "install.yaml")]
    helm_k8s.run("install", release, str(_old_chart(tmp_path)), *values, timeout_s=180)
    secret_name = "old-ray-queue-tokens"
    before = _secret_tokens(k8s_api, k8s_namespace, secret_name)
    assert "ray" not in before
    try:
        # --reuse-values keeps the old chart's defaults, which have no rayAuth: it fails.
        upgrade = ["upgrade", release, str(CHART), "--namespace", k8s_namespace]
        failed = helm_k8s.run(*upgrade, "--reuse-values", check=False, timeout_s=180)
        assert failed.returncode != 0 and "rayAuth" in failed.stderr, failed.stderr
        # What docs/helm.md says to use: the values given at install, the new defaults.
        helm_k8s.run(*upgrade, "--reset-then-reuse-values", timeout_s=180)
        after = _secret_tokens(k8s_api, k8s_namespace, secret_name)
        assert len(after.pop("ray")) == 40, "Ray's token is generated on the upgrade"
        # Each tenant's token also gets a key of its own: the same token.
        tenants = {k: v for k, v in after.items() if k.startswith("tenant-")}
        assert {k: after[k] for k in before} == before, "and the tokens the release had are kept"
        assert all(f"token: {token}" in after["tokens.yaml"] for token in tenants.values())

        from kubernetes import client

        cluster = client.CustomObjectsApi(k8s_api.api_client).get_namespaced_custom_object(
            "ray.io", "v1", k8s_namespace, "rayclusters", "old-ray-queue"
        )
        head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert {"name": "RAY_AUTH_MODE", "value": "token"} in head["env"]
        (group,) = cluster["spec"]["workerGroupSpecs"]
        assert group["maxReplicas"] == 2, "the install's own values are kept"
    finally:
        helm_k8s.run("uninstall", release, "--namespace", k8s_namespace, check=False)
