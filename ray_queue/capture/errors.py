"""The errors of capture, under ray-queue's root error."""

from __future__ import annotations

from ray_queue.errors import RayQueueError


class CaptureError(RayQueueError):
    """Capture cannot do what was asked: Ray is not connected, the request uses a Ray
    option the queue cannot honour, or capture is misconfigured. The message says which."""


class UnsupportedRayVersion(CaptureError):
    """The installed Ray is not one capture knows how to intercept; run without capture
    or install a ray-queue release made for it."""
