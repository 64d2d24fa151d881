"""The real-Kubernetes-API test harness (see docs/testing.md) and the tests of it."""
