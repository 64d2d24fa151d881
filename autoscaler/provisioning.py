"""ProvisioningRequests and their PodTemplates on the Kubernetes API (all-at-once gangs).

For a quota-reserved gang the planner asks for one ``autoscaling.x-k8s.io/v1``
ProvisioningRequest: ``spec.provisioningClassName`` from the admission check's config,
``spec.podSets[0] = {podTemplateRef: {name}, count}`` where the PodTemplate is the gang's
worker group Pod template annotated to consume the request. Cluster-autoscaler (or the
test standing in for it) answers through ``status.conditions``; ``requests.phase_of``
reads them.

Everything this client makes carries our labels, so ``read()`` finds it again after a
restart; names come from the workload id and attempt, so creating twice is a no-op
(AlreadyExists is success). Deleting removes the request and then its template, and a
sweep removes templates whose request never got created (a crash between the two).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import random
from collections.abc import Iterable, Sequence
from typing import Any

from autoscaler.providers.base import WorkerGroup
from autoscaler.providers.kuberay import (
    CLASS_ANNOTATION,
    CONSUME_ANNOTATION,
    LEGACY_CLASS_ANNOTATION,
    LEGACY_CONSUME_ANNOTATION,
    RAY_API,
    KubeApi,
    NotFoundError,
)
from autoscaler.requests import (
    ATTEMPT_LABEL,
    GROUP_LABEL,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    WORKLOAD_ANNOTATION,
    WORKLOAD_LABEL,
    RequestSpec,
    RequestView,
    label_value,
    phase_of,
)
from ray_queue.engine.model import WorkloadId

logger = logging.getLogger(__name__)

PR_API = ("autoscaling.x-k8s.io", "v1", "provisioningrequests")
CLUSTER_LABEL = "ray.io/cluster"


class ProvisioningClient:
    """The ``RequestClient`` of the loop, for one RayCluster's namespace."""

    def __init__(
        self,
        api_client: Any,
        *,
        cluster_name: str,
        namespace: str,
        attempts: int = 5,
        request_timeout_s: float = 10.0,
        retry_deadline_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._api = KubeApi.connect(
            api_client, attempts=attempts, retry_deadline_s=retry_deadline_s, rng=rng
        )
        self._cluster = cluster_name
        self._namespace = namespace
        self._timeout = request_timeout_s

    @property
    def selector(self) -> str:
        return f"{MANAGED_BY_LABEL}={MANAGED_BY},{CLUSTER_LABEL}={label_value(self._cluster)}"

    def read(self) -> list[RequestView]:
        listed: Any = self._api.call(
            lambda: self._api.custom.list_namespaced_custom_object(
                *PR_API[:2], self._namespace, PR_API[2], label_selector=self.selector,
                _request_timeout=self._timeout,
            ),
            "list ProvisioningRequests",
        )
        return sorted((view_of(item) for item in listed.get("items", [])), key=lambda r: r.name)

    def create(self, spec: RequestSpec, group: WorkerGroup) -> None:
        template: Any = self._pod_template(spec, group)
        self._create(
            lambda: self._api.core.create_namespaced_pod_template(
                self._namespace, template, _request_timeout=self._timeout
            ),
            f"create PodTemplate {spec.name}",
        )
        body = {
            "apiVersion": "/".join(PR_API[:2]),
            "kind": "ProvisioningRequest",
            "metadata": {
                "name": spec.name,
                "labels": self._labels(spec),
                "annotations": {WORKLOAD_ANNOTATION: spec.workload, GROUP_LABEL: spec.group},
            },
            "spec": {
                "provisioningClassName": spec.provisioning_class,
                "podSets": [{"podTemplateRef": {"name": spec.name}, "count": spec.count}],
            },
        }
        self._create(
            lambda: self._api.custom.create_namespaced_custom_object(
                *PR_API[:2], self._namespace, PR_API[2], body, _request_timeout=self._timeout
            ),
            f"create ProvisioningRequest {spec.name}",
        )

    def delete(self, name: str) -> None:
        self._delete(
            lambda: self._api.custom.delete_namespaced_custom_object(
                *PR_API[:2], self._namespace, PR_API[2], name, _request_timeout=self._timeout
            ),
            f"delete ProvisioningRequest {name}",
        )
        self._delete(
            lambda: self._api.core.delete_namespaced_pod_template(
                name, self._namespace, _request_timeout=self._timeout
            ),
            f"delete PodTemplate {name}",
        )

    def sweep(self, keep: Iterable[str]) -> list[str]:
        """Delete our PodTemplates whose request is not in ``keep``; returns their names."""
        keep = set(keep)
        templates: Any = self._api.call(
            lambda: self._api.core.list_namespaced_pod_template(
                self._namespace, label_selector=self.selector, _request_timeout=self._timeout
            ),
            "list PodTemplates",
        )
        gone = []
        for item in templates.items:
            name = item.metadata.name
            if name not in keep:
                self._delete(
                    lambda n=name: self._api.core.delete_namespaced_pod_template(
                        n, self._namespace, _request_timeout=self._timeout
                    ),
                    f"delete PodTemplate {name}",
                )
                gone.append(name)
        return gone

    # -- plumbing -------------------------------------------------------------------------

    def _labels(self, spec: RequestSpec) -> dict[str, str]:
        return {
            MANAGED_BY_LABEL: MANAGED_BY,
            CLUSTER_LABEL: label_value(self._cluster),
            WORKLOAD_LABEL: label_value(spec.workload),
            ATTEMPT_LABEL: str(spec.attempt),
            GROUP_LABEL: label_value(spec.group),
        }

    def _pod_template(self, spec: RequestSpec, group: WorkerGroup) -> dict[str, Any]:
        """The group's Pod template, annotated as the gang's Pods will be."""
        cluster: Any = self._api.call(
            lambda: self._api.custom.get_namespaced_custom_object(
                *RAY_API[:2], self._namespace, RAY_API[2], self._cluster,
                _request_timeout=self._timeout,
            ),
            f"read RayCluster {self._cluster}",
        )
        specs: Sequence[dict[str, Any]] = cluster["spec"].get("workerGroupSpecs") or []
        base = next((s for s in specs if s["groupName"] == group.name), None)
        if base is None:
            raise NotFoundError(f"worker group {group.name!r} is not in {self._cluster}")
        pod = copy.deepcopy(base.get("template") or {})
        meta = pod.setdefault("metadata", {})
        meta.setdefault("annotations", {}).update(
            {
                CONSUME_ANNOTATION: spec.name,
                CLASS_ANNOTATION: spec.provisioning_class,
                LEGACY_CONSUME_ANNOTATION: spec.name,
                LEGACY_CLASS_ANNOTATION: spec.provisioning_class,
            }
        )
        return {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": spec.name, "labels": self._labels(spec)},
            "template": pod,
        }

    def _create(self, fn: Any, what: str) -> None:
        from autoscaler.providers.base import ConflictError

        try:
            self._api.call(fn, what)
        except ConflictError:
            # Made before a restart: fine.
            logger.debug("already exists", extra={"what": what})

    def _delete(self, fn: Any, what: str) -> None:
        with contextlib.suppress(NotFoundError):  # already gone
            self._api.call(fn, what)


def view_of(item: dict[str, Any]) -> RequestView:
    meta = item.get("metadata") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    conditions = (item.get("status") or {}).get("conditions") or []
    states = {str(c.get("type")): str(c.get("status")) for c in conditions}
    phase = phase_of(states)
    message = next(
        (str(c.get("message") or c.get("reason") or "") for c in conditions
         if c.get("type") == phase.value),
        "",
    )
    pod_sets = (item.get("spec") or {}).get("podSets") or [{}]
    return RequestView(
        name=str(meta.get("name")),
        workload=WorkloadId(annotations.get(WORKLOAD_ANNOTATION, labels.get(WORKLOAD_LABEL, ""))),
        attempt=int(labels.get(ATTEMPT_LABEL, "0") or 0),
        group=str(annotations.get(GROUP_LABEL, labels.get(GROUP_LABEL, ""))),
        count=int(pod_sets[0].get("count", 0) or 0),
        phase=phase,
        message=message,
    )
