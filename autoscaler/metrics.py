"""The autoscaler's own Prometheus metrics, prefixed ``ray_queue_autoscaler_``.

Kept in their own registry (not prometheus-client's global one) so several loops in one
process — tests, the embedded mode next to the manager's metrics — never collide, and
served on a port of their own by the sidecar.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

PREFIX = "ray_queue_autoscaler_"


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.desired_replicas = Gauge(
            PREFIX + "desired_replicas", "Replicas the autoscaler wants per worker group.",
            ["group"], registry=r,
        )
        self.ready_replicas = Gauge(
            PREFIX + "ready_replicas", "Workers of the group that joined Ray.",
            ["group"], registry=r,
        )
        self.requests = Gauge(
            PREFIX + "provisioning_requests", "ProvisioningRequests by phase.",
            ["phase"], registry=r,
        )
        self.patch_seconds = Histogram(
            PREFIX + "patch_seconds", "Latency of one write to the cluster (patch or create).",
            ["action"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.pass_seconds = Histogram(
            PREFIX + "pass_seconds", "Duration of one reconcile pass.", registry=r,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.errors = Counter(
            PREFIX + "errors", "Failed passes and actions, by kind.", ["kind"], registry=r
        )
        self.actions = Counter(
            PREFIX + "actions", "Actions carried out, by kind.", ["kind"], registry=r
        )
        self.unplaceable = Gauge(
            PREFIX + "unplaceable_gangs",
            "Gangs no node of their group can hold, or past its maximum.", ["group"], registry=r,
        )
        #: Groups whose series the last ``set_groups`` showed.
        self._desired_groups: set[str] = set()
        self._ready_groups: set[str] = set()

    def set_groups(self, desired: Mapping[str, int], ready: Mapping[str, int]) -> None:
        """One pass's per-group gauges: ``ready`` names every group in the cluster,
        ``desired`` those the plan keeps. A group on its way out loses its desired series,
        and a group gone from the cluster loses all three; a last value left behind would
        show a removed per-gang group as short of replicas forever."""
        for gauge, values, shown in (
            (self.desired_replicas, desired, self._desired_groups),
            (self.ready_replicas, ready, self._ready_groups),
        ):
            for group in shown - set(values):
                gauge.remove(group)
            for group, value in values.items():
                gauge.labels(group=group).set(value)
        for group in self._ready_groups - set(ready):
            self.unplaceable.remove(group)
        self._desired_groups = set(desired)
        self._ready_groups = set(ready)

    def set_requests(self, phases: Mapping[str, int]) -> None:
        from autoscaler.requests import Phase

        for phase in Phase:
            self.requests.labels(phase=phase.value).set(phases.get(phase.value, 0))

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
