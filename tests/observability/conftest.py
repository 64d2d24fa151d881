"""The Kubernetes harness fixtures (tests/k8s) made available to the dashboard test."""

from __future__ import annotations

from tests.k8s.conftest import (  # noqa: F401 - fixtures are found by name
    k8s_api,
    k8s_namespace,
    k8s_tools,
    kuberay_operator,
    node_simulator,
    ray_head,
)
