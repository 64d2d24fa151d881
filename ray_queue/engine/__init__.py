"""The pure scheduling engine: Kueue's admission model, no Ray, gRPC or Kubernetes."""

from ray_queue.engine.clock import Clock, ManualClock, SystemClock
from ray_queue.engine.config import QueueConfig
from ray_queue.engine.engine import Engine

__all__ = ["Clock", "Engine", "ManualClock", "QueueConfig", "SystemClock"]
