"""Node providers: where worker nodes come from (KubeRay on Kubernetes, or local Ray)."""
