"""Installs the real CustomResourceDefinitions the autoscaler talks to.

Why this exists: a hand-written CRD would accept whatever our code sends; the published ones
carry the real OpenAPI schemas, so a malformed RayCluster patch or ProvisioningRequest fails
here as it would in a cluster. The files are read at test time from the Go module cache
(``go mod download`` of the pinned KubeRay and cluster-autoscaler APIs modules) and are never
committed.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, cast

import yaml

from tests.k8s.process import wait_for
from tests.k8s.toolchain import (
    CLUSTER_AUTOSCALER_APIS_MODULE,
    CLUSTER_AUTOSCALER_APIS_VERSION,
    KUBERAY_MODULE,
    KUBERAY_VERSION,
    module_dir,
)

KUBERAY_CRD_FILES = ("ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml", "ray.io_rayservices.yaml")
"""All three: the operator watches every kind it owns and will not start without them."""
PROVISIONING_REQUEST_CRD_FILE = "autoscaling.x-k8s.io_provisioningrequests.yaml"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml parses 3 MB of CRDs 10x faster


def crd_paths() -> list[Path]:
    """The CRD files, from the Go module cache (downloaded if absent)."""
    kuberay = module_dir(KUBERAY_MODULE, KUBERAY_VERSION) / "config" / "crd" / "bases"
    ca_apis = module_dir(CLUSTER_AUTOSCALER_APIS_MODULE, CLUSTER_AUTOSCALER_APIS_VERSION)
    paths = [kuberay / name for name in KUBERAY_CRD_FILES]
    paths.append(ca_apis / "config" / "crd" / PROVISIONING_REQUEST_CRD_FILE)
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"CRD file missing from the module cache: {path}")
    return paths


def load_crds(paths: list[Path]) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in paths:
        with path.open() as f:
            docs.extend(d for d in yaml.load_all(f, Loader=_LOADER) if d)
    return docs


def _established(api_client: Any, name: str) -> bool:
    from kubernetes import client

    ext = client.ApiextensionsV1Api(api_client)
    # Raw JSON: deserialising a 1 MB schema into client models takes seconds for nothing.
    resp: Any = ext.read_custom_resource_definition(name, _preload_content=False)
    status = json.loads(resp.data).get("status", {})
    return any(
        c.get("type") == "Established" and c.get("status") == "True"
        for c in status.get("conditions", [])
    )


def _discoverable(api_client: Any, group: str, version: str, plural: str) -> bool:
    from kubernetes import client

    # A 404 here (group-version not yet published) raises, which wait_for counts as "not yet".
    found = client.CustomObjectsApi(api_client).get_api_resources(group, version)
    return any(r.name == plural for r in found.resources)


def install_crds(api_client: Any, *, timeout_s: float = 60.0) -> list[str]:
    """Create every CRD (idempotent) and wait until each is Established and discoverable.

    Returns their names. Established alone is not enough: the API server publishes a new
    group-version in discovery a moment later, and a client that lists it in between gets 404.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    ext = client.ApiextensionsV1Api(api_client)
    names: list[str] = []
    served: list[tuple[str, str, str]] = []
    for doc in load_crds(crd_paths()):
        name = doc["metadata"]["name"]
        names.append(name)
        spec = doc["spec"]
        served.extend(
            (spec["group"], v["name"], spec["names"]["plural"])
            for v in spec["versions"]
            if v.get("served", True)
        )
        try:
            ext.create_custom_resource_definition(cast(Any, doc), _preload_content=False)
        except ApiException as exc:
            if exc.status != 409:
                raise
    for name in names:
        wait_for(
            functools.partial(_established, api_client, name),
            timeout_s,
            what=f"CRD {name} Established",
        )
    for group, version, plural in served:
        wait_for(
            functools.partial(_discoverable, api_client, group, version, plural),
            timeout_s,
            what=f"{plural}.{group}/{version} in discovery",
        )
    return names
