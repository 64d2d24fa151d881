"""``KubeRayProvider``: worker groups of one RayCluster, scaled through the Kubernetes API.

Reads the RayCluster (``ray.io/v1`` ``rayclusters``) and its worker Pods, joins them with
Ray's GCS view of the nodes (KubeRay sets each Pod's ``RAY_CLOUD_INSTANCE_ID`` to its
name), and writes only by RFC 6902 JSON patch guarded by a ``test`` of
``/metadata/resourceVersion`` and of the group's name at its index: a patch planned from a
stale read fails (422) instead of overwriting someone else's change, and is re-read and
retried only if the group still looks the way the plan assumed.

This module and ``provisioning.py`` are the only ones that import ``kubernetes``; every
``ApiException`` leaves here as a ``ProviderError`` subclass (``raise … from``).
"""

from __future__ import annotations

import copy
import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from autoscaler.providers.base import (
    ConflictError,
    GangGroup,
    PermanentError,
    ProviderError,
    TransientError,
    WorkerGroup,
)
from autoscaler.providers.worker_nodes import worker_node
from autoscaler.ray_nodes import RayGcs, RayNode
from autoscaler.requests import (
    MANAGED_BY,
    MANAGED_BY_LABEL,
    WORKLOAD_ANNOTATION,
    WORKLOAD_LABEL,
    label_value,
)
from autoscaler.retry import Backoff, RetryPolicy, retry
from ray_queue.engine.clock import Clock, SystemClock
from ray_queue.engine.quantity import parse_quantity

logger = logging.getLogger(__name__)
T = TypeVar("T")

RAY_API = ("ray.io", "v1", "rayclusters")
#: Pods consume a ProvisioningRequest through these (cluster-autoscaler's keys) …
CONSUME_ANNOTATION = "autoscaling.x-k8s.io/consume-provisioning-request"
CLASS_ANNOTATION = "autoscaling.x-k8s.io/provisioning-class-name"
#: … and the older prefix Kueue still sets, for autoscalers that only know it.
LEGACY_CONSUME_ANNOTATION = "cluster-autoscaler.kubernetes.io/consume-provisioning-request"
LEGACY_CLASS_ANNOTATION = "cluster-autoscaler.kubernetes.io/provisioning-class-name"

#: Container limit keys that are accelerators, and the Ray resource each becomes.
_ACCELERATOR_LIMITS = {"nvidia.com/gpu": "GPU", "amd.com/gpu": "GPU", "google.com/tpu": "TPU"}


class NotFoundError(PermanentError):
    kind = "not_found"


class InvalidError(PermanentError):
    """422. For our JSON patches this is usually a failed ``test`` op — the API server
    says only "the server rejected our request" — so the patcher re-reads to tell a
    stale read (a conflict) from a truly invalid patch."""

    kind = "invalid"


class _StaleRead(ConflictError):
    """A patch refused because the RayCluster moved on since it was read: read again."""


class KubeRayProvider:
    """See ``NodeProvider`` for the contract. Not thread-safe; one loop owns it.

    Every operation (a read, or a read-modify-patch) is retried as a whole under one
    ``RetryPolicy``: ``attempts`` tries, none started later than ``retry_deadline_s`` after
    the first; ``rng`` draws the back-off's jitter (seed it for a repeatable run).
    """

    def __init__(
        self,
        api_client: Any,
        *,
        cluster_name: str,
        namespace: str,
        gcs: RayGcs | Callable[[], Sequence[RayNode]] | None = None,
        clock: Clock | None = None,
        attempts: int = 5,
        request_timeout_s: float = 10.0,
        retry_deadline_s: float = 60.0,
        rng: random.Random | None = None,
    ) -> None:
        self._api = KubeApi.connect(
            api_client, attempts=attempts, retry_deadline_s=retry_deadline_s, rng=rng
        )
        self._name = cluster_name
        self._namespace = namespace
        self._ray_nodes: Callable[[], Sequence[RayNode]]
        if gcs is None:
            self._ray_nodes = list
        elif isinstance(gcs, RayGcs):
            self._ray_nodes = gcs.nodes
        else:
            self._ray_nodes = gcs
        self._gcs = gcs if isinstance(gcs, RayGcs) else None
        self._clock = clock or SystemClock()
        self._timeout = request_timeout_s

    # -- reads ----------------------------------------------------------------------------

    def raycluster(self) -> dict[str, Any]:
        return self._api.retrying(self._read_cluster, f"read RayCluster {self._name}")

    def pods(self) -> list[Any]:
        """Worker Pods of the cluster that are not being deleted."""
        return self._api.retrying(self._list_pods, "list worker Pods")

    def _read_cluster(self) -> dict[str, Any]:
        cluster: Any = request(
            lambda: self._api.custom.get_namespaced_custom_object(
                *RAY_API[:2], self._namespace, RAY_API[2], self._name,
                _request_timeout=self._timeout,
            ),
            f"read RayCluster {self._namespace}/{self._name}",
        )
        return dict(cluster)

    def _list_pods(self) -> list[Any]:
        listed: Any = request(
            lambda: self._api.core.list_namespaced_pod(
                self._namespace,
                label_selector=f"ray.io/cluster={self._name},ray.io/node-type=worker",
                _request_timeout=self._timeout,
            ),
            "list worker Pods",
        )
        return [p for p in listed.items if p.metadata.deletion_timestamp is None]

    def groups(self) -> list[WorkerGroup]:
        cluster = self.raycluster()
        pods = self.pods()
        try:
            ray_nodes = {n.instance_id: n for n in self._ray_nodes() if n.alive}
        except Exception as exc:  # GCS down: scale up still works, scale down waits
            logger.warning(
                "cannot read Ray nodes; treating every worker as busy", extra={"error": str(exc)}
            )
            ray_nodes = {}
        now = self._clock.now()
        out = []
        for spec in cluster.get("spec", {}).get("workerGroupSpecs", []) or []:
            name = spec["groupName"]
            members = sorted(
                (p for p in pods if (p.metadata.labels or {}).get("ray.io/group") == name),
                key=lambda p: p.metadata.name,
            )
            nodes = tuple(worker_node(p.metadata.name, ray_nodes.get(p.metadata.name), now)
                          for p in members)
            template_meta = (spec.get("template") or {}).get("metadata") or {}
            annotations = template_meta.get("annotations") or {}
            out.append(
                WorkerGroup(
                    name=name,
                    shape=group_shape(spec),
                    min_replicas=int(spec.get("minReplicas", 0) or 0),
                    max_replicas=int(spec.get("maxReplicas", 0) or 0),
                    replicas=int(spec.get("replicas", 0) or 0),
                    num_of_hosts=max(1, int(spec.get("numOfHosts", 1) or 1)),
                    labels=group_labels(spec),
                    nodes=nodes,
                    deleting=tuple((spec.get("scaleStrategy") or {}).get("workersToDelete") or ()),
                    gang_of=annotations.get(WORKLOAD_ANNOTATION),
                )
            )
        return out

    def pending_gangs(self) -> list[list[dict[str, int]]] | None:
        """Placement groups Ray is waiting to place (``None``: cannot tell)."""
        if self._gcs is None:
            return None
        try:
            return self._gcs.pending_gangs()
        except Exception as exc:
            logger.warning(
                "cannot read pending placement groups from Ray", extra={"error": str(exc)}
            )
            return None

    # -- writes ---------------------------------------------------------------------------

    def set_replicas(self, group: str, replicas: int, *, expected: int) -> None:
        def step(cluster: dict[str, Any], index: int, spec: dict[str, Any]) -> list[Any] | None:
            current = int(spec.get("replicas", 0) or 0)
            if current == replicas:
                return None  # already there: someone (our earlier self) did it
            if current != expected:
                raise ConflictError(
                    f"group {group} has {current} replicas; the plan assumed {expected}"
                )
            return [_replace(f"/spec/workerGroupSpecs/{index}/replicas", replicas)]

        self._patch_group(group, step, f"scale {group} to {replicas}")

    def delete_workers(self, group: str, workers: Sequence[str]) -> None:
        """Drain each worker in Ray, then lower replicas with them in workersToDelete."""
        drained = [w for w in workers if self._drain(w)]
        if not drained:
            return

        def step(cluster: dict[str, Any], index: int, spec: dict[str, Any]) -> list[Any] | None:
            listed = list((spec.get("scaleStrategy") or {}).get("workersToDelete") or [])
            alive = {p.metadata.name for p in self._list_pods()}
            new = [w for w in drained if w not in listed and w in alive]
            if not new:
                return None
            # Names of Pods already gone are dropped: KubeRay deletes listed Pods every
            # reconcile and leaves the list for the autoscaler to clear.
            keep = [w for w in listed if w in alive]
            replicas = int(spec.get("replicas", 0) or 0)
            hosts = max(1, int(spec.get("numOfHosts", 1) or 1))
            target = max(int(spec.get("minReplicas", 0) or 0), replicas - len(new) // hosts)
            return [
                _replace(f"/spec/workerGroupSpecs/{index}/replicas", target),
                {
                    "op": "add",
                    "path": f"/spec/workerGroupSpecs/{index}/scaleStrategy",
                    "value": {"workersToDelete": keep + new},
                },
            ]

        self._patch_group(group, step, f"delete {','.join(drained)} from {group}")

    def create_gang_group(self, group: GangGroup) -> None:
        """Add a worker group for one gang: ``group.base``'s spec, its Pods annotated to
        consume the gang's ProvisioningRequest. No-op if it exists."""

        def add(cluster: dict[str, Any]) -> list[Any] | None:
            specs = cluster["spec"].get("workerGroupSpecs") or []
            if any(s["groupName"] == group.name for s in specs):
                return None
            base = next((s for s in specs if s["groupName"] == group.base), None)
            if base is None:
                raise PermanentError(f"worker group {group.base!r} is not in {self._name}")
            value = gang_group_spec(base, group)
            return [{"op": "add", "path": "/spec/workerGroupSpecs/-", "value": value}]

        self._patch(add, f"add worker group {group.name}")

    def remove_group(self, name: str) -> None:
        """Remove a per-gang group: first its Pods (drained, listed in workersToDelete,
        replicas 0), and once none is left, the group itself. Takes two passes; each
        step is idempotent."""
        members = [p.metadata.name for p in self.pods()
                   if (p.metadata.labels or {}).get("ray.io/group") == name]
        if members:
            for pod in members:
                self._drain(pod)

            def empty(cluster: dict[str, Any], index: int, spec: dict[str, Any]) -> list[Any]:
                base = f"/spec/workerGroupSpecs/{index}"
                return [
                    _replace(f"{base}/replicas", 0),
                    _replace(f"{base}/minReplicas", 0),
                    {"op": "add", "path": f"{base}/scaleStrategy",
                     "value": {"workersToDelete": members}},
                ]

            self._patch_group(name, empty, f"empty worker group {name}", missing_ok=True)
            return

        def drop(cluster: dict[str, Any], index: int, spec: dict[str, Any]) -> list[Any]:
            return [{"op": "remove", "path": f"/spec/workerGroupSpecs/{index}"}]

        self._patch_group(name, drop, f"remove worker group {name}", missing_ok=True)

    # -- plumbing -------------------------------------------------------------------------

    def _patch_group(
        self,
        group: str,
        step: Callable[[dict[str, Any], int, dict[str, Any]], list[Any] | None],
        what: str,
        *,
        missing_ok: bool = False,
    ) -> None:
        """``_patch`` of one group: ``step`` builds the ops from the fresh object and the
        group's index, which the patch tests too (a group list reordered since the read
        fails the test instead of patching another group)."""

        def build(cluster: dict[str, Any]) -> list[Any] | None:
            specs = cluster["spec"].get("workerGroupSpecs") or []
            index = next((i for i, s in enumerate(specs) if s["groupName"] == group), None)
            if index is None:
                if missing_ok:
                    return None
                raise NotFoundError(f"worker group {group!r} is not in RayCluster {self._name}")
            ops = step(cluster, index, specs[index])
            if not ops:
                return None
            return [_test(f"/spec/workerGroupSpecs/{index}/groupName", group), *ops]

        self._patch(build, what)

    def _patch(self, build: Callable[[dict[str, Any]], list[Any] | None], what: str) -> None:
        """Read the RayCluster, let ``build`` make the ops from it (``None``: nothing to
        do), and patch them behind a test of the resourceVersion. A stale read or a
        transient failure anywhere in that is retried as a whole, under the one policy
        (so a read's retries do not multiply a patch's); an error ``build`` raises is not."""

        def attempt() -> None:
            cluster = self._read_cluster()
            ops = build(cluster)
            if not ops:
                return
            version = cluster["metadata"]["resourceVersion"]
            try:
                self._json_patch([_test("/metadata/resourceVersion", version), *ops], what)
            except ConflictError as exc:
                raise _StaleRead(str(exc)) from exc

        try:
            self._api.retrying(attempt, what, also_on=(_StaleRead,))
        except _StaleRead as exc:
            raise ConflictError(f"{what}: RayCluster {self._name} kept changing under us") from exc

    def _stale(self, read_version: str) -> bool:
        return str(self._read_cluster()["metadata"]["resourceVersion"]) != str(read_version)

    def _json_patch(self, patch: list[Any], what: str) -> None:
        """Apply ``patch`` (whose first op tests the resourceVersion); a refusal because the
        object moved on is raised as ``ConflictError``."""
        try:
            self._raw_patch(patch, what)
        except InvalidError as exc:
            if self._stale(patch[0]["value"]):
                raise ConflictError(f"{what}: RayCluster changed since read") from exc
            raise

    def _raw_patch(self, patch: list[Any], what: str) -> None:
        request(
            lambda: self._api.custom.patch_namespaced_custom_object(
                *RAY_API[:2], self._namespace, RAY_API[2], self._name, patch,
                _content_type="application/json-patch+json",
                _request_timeout=self._timeout,
            ),
            what,
        )

    def _drain(self, pod: str) -> bool:
        """Drain the Ray node of ``pod``. True if it may go (drained, or never joined Ray);
        False if Ray refused (it got work since the plan was made)."""
        if self._gcs is None:
            return True
        node = next(
            (n for n in self._ray_nodes() if n.instance_id == pod and n.alive), None
        )
        if node is None:
            return True
        try:
            accepted, why = self._gcs.drain(node.node_id, message="idle: ray-queue scale-down")
        except Exception as exc:
            raise TransientError(f"drain of {pod} failed: {exc}") from exc
        if not accepted:
            logger.info("Ray refused to drain; keeping it", extra={"pod": pod, "why": why})
        return accepted


def new_api_client(kubeconfig: str | None = None) -> Any:
    """An ``ApiClient`` from ``kubeconfig``, or the Pod's service account when ``None``."""
    from kubernetes import client, config

    # The Kubernetes client ships py.typed but leaves these unannotated.
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()


# -- the group spec, read ----------------------------------------------------------------


def group_shape(spec: Mapping[str, Any]) -> dict[str, int]:
    """What one host of the group offers, as Ray will see it (milli-units).

    Same precedence as Ray's KubeRay autoscaler: ``rayStartParams`` first, then the Ray
    container's limits (then requests); CPU rounded up to whole CPUs, as ``ray start``
    does with the value KubeRay passes.
    """
    params = {k: str(v) for k, v in (spec.get("rayStartParams") or {}).items()}
    container = _ray_container(spec)
    limits = (container.get("resources") or {}).get("limits") or {}
    requests = (container.get("resources") or {}).get("requests") or {}
    out: dict[str, int] = {}
    cpu = params.get("num-cpus") or limits.get("cpu") or requests.get("cpu")
    if cpu is not None:
        out["CPU"] = -(-parse_quantity(cpu) // 1000) * 1000
    gpus = params.get("num-gpus")
    if gpus is not None:
        out["GPU"] = parse_quantity(gpus)
    for key, ray_name in _ACCELERATOR_LIMITS.items():
        amount = limits.get(key) or requests.get(key)
        if amount is not None and ray_name not in out:
            out[ray_name] = parse_quantity(amount)
    memory = params.get("memory") or limits.get("memory") or requests.get("memory")
    if memory is not None:
        out["memory"] = parse_quantity(memory)
    for name, amount in custom_resources(params.get("resources")).items():
        out[name] = amount
    return {k: v for k, v in out.items() if v > 0}


def custom_resources(raw: str | None) -> dict[str, int]:
    """``rayStartParams.resources``: a JSON object, often wrapped once more in quotes
    (``'"{\\"widget\\": 2}"'``) because KubeRay pastes it into a shell command."""
    if not raw:
        return {}
    text = raw.strip()
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1].replace('\\"', '"')
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise PermanentError(f"rayStartParams.resources is not JSON: {raw!r}") from exc
    if not isinstance(parsed, dict):
        raise PermanentError(f"rayStartParams.resources must be an object: {raw!r}")
    return {str(k): round(float(v) * 1000) for k, v in parsed.items()}


def group_labels(spec: Mapping[str, Any]) -> dict[str, str]:
    """Ray node labels from ``rayStartParams.labels`` ("k=v,k2=v2"), plus the group."""
    params = spec.get("rayStartParams") or {}
    out = {"ray.io/node-group": str(spec.get("groupName", ""))}
    raw = str(params.get("labels", "") or "").strip().strip('"')
    for item in filter(None, (p.strip() for p in raw.split(","))):
        key, _, value = item.partition("=")
        out[key.strip()] = value.strip()
    return out


def gang_group_spec(base: Mapping[str, Any], group: GangGroup) -> dict[str, Any]:
    spec = copy.deepcopy(dict(base))
    spec["groupName"] = group.name
    spec["replicas"] = group.replicas
    spec["minReplicas"] = 0
    spec["maxReplicas"] = group.replicas
    spec.pop("scaleStrategy", None)
    spec.pop("suspend", None)
    template = spec.setdefault("template", {})
    meta = template.setdefault("metadata", {})
    annotations = meta.setdefault("annotations", {})
    annotations.update(
        {
            CONSUME_ANNOTATION: group.request,
            CLASS_ANNOTATION: group.provisioning_class,
            LEGACY_CONSUME_ANNOTATION: group.request,
            LEGACY_CLASS_ANNOTATION: group.provisioning_class,
            WORKLOAD_ANNOTATION: group.workload,
        }
    )
    labels = meta.setdefault("labels", {})
    labels.update({WORKLOAD_LABEL: label_value(group.workload), MANAGED_BY_LABEL: MANAGED_BY})
    return spec


def _ray_container(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    # KubeRay treats the first container as the Ray container.
    return containers[0] if containers else {}


def _test(path: str, value: Any) -> dict[str, Any]:
    return {"op": "test", "path": path, "value": value}


def _replace(path: str, value: Any) -> dict[str, Any]:
    return {"op": "replace", "path": path, "value": value}


# -- errors ------------------------------------------------------------------------------


def translate(exc: BaseException, what: str) -> ProviderError:
    """The typed error for a failed Kubernetes call; callers raise it ``from exc``."""
    from kubernetes.client.exceptions import ApiException

    if isinstance(exc, ApiException):
        status = exc.status or 0
        detail = _message(exc)
        if status == 409:
            return ConflictError(f"{what}: conflict: {detail}")
        if status == 422:
            return InvalidError(f"{what}: unprocessable: {detail}")
        if status == 404:
            return NotFoundError(f"{what}: not found: {detail}")
        if status in (0, 429) or status >= 500:
            return TransientError(f"{what}: server error {status}: {detail}")
        return PermanentError(f"{what}: refused ({status}): {detail}")
    # Connection refused or reset, timeouts: an API server restarting looks like this.
    return TransientError(f"{what}: {type(exc).__name__}: {exc}")


def api_retry_policy(attempts: int, deadline_s: float) -> RetryPolicy:
    """How Kubernetes calls are retried: from 50 ms, doubling to at most 2 s (an API server
    restart or a conflicting writer is over in seconds), jittered (``retry``)."""
    return RetryPolicy(Backoff(base_s=0.05, max_s=2.0), attempts=attempts, deadline_s=deadline_s)


def request(fn: Callable[[], T], what: str) -> T:
    """One API call, its failure raised as the typed ``ProviderError``; no retry."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return fn()
    except (ApiException, HTTPError, OSError) as exc:
        raise translate(exc, what) from exc


@dataclass(frozen=True)
class KubeApi:
    """The Kubernetes APIs the autoscaler calls, and how its calls are retried: under one
    ``RetryPolicy`` (``api_retry_policy``), the back-off's jitter drawn from ``rng`` (seed
    it for a repeatable run)."""

    custom: Any
    core: Any
    policy: RetryPolicy
    rng: random.Random

    @classmethod
    def connect(
        cls, api_client: Any, *, attempts: int, retry_deadline_s: float, rng: random.Random | None
    ) -> KubeApi:
        from kubernetes import client

        return cls(
            custom=client.CustomObjectsApi(api_client),
            core=client.CoreV1Api(api_client),
            policy=api_retry_policy(attempts, retry_deadline_s),
            rng=rng or random.Random(),
        )

    def retrying(
        self, fn: Callable[[], T], what: str, *, also_on: tuple[type[Exception], ...] = ()
    ) -> T:
        """``fn`` as a whole (single calls, no retries of their own), retried on transient
        errors and on ``also_on``."""
        return retry(fn, self.policy, retry_on=(TransientError, *also_on), what=what, rng=self.rng)

    def call(self, fn: Callable[[], T], what: str) -> T:
        """One API call (``request``), retried on transient failures."""
        return self.retrying(lambda: request(fn, what), what)


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, bytes | str) and body:
        try:
            parsed = json.loads(body)
        except ValueError:
            return str(body)[:300]
        if isinstance(parsed, dict):
            return str(parsed.get("message", parsed))[:300]
    return str(getattr(exc, "reason", exc))
