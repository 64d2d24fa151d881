"""The head pod's manager process: ``python -m ray_queue.manager``.

It starts the QueueManager actor (or re-adopts the running one), applies the queue config
from a file, and — with ``--watch-config`` — re-applies it whenever the file changes
(a Kubernetes ConfigMap update), all or nothing: a rejected config is logged with every
problem and the running one stays. It exits when Ray goes away, so the container's
supervisor restarts the head instead of leaving Ray without its queue. The actor itself
serves gRPC and ``/metrics``; this process only tells it where.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ray

from ray_queue.access.principals import (
    TOKENS_ENV,
    TOKENS_FILE_ENV,
    AuthConfigError,
    admin_token,
    token_definitions,
)
from ray_queue.engine.config import QueueConfig
from ray_queue.engine.config_loader import load_config
from ray_queue.engine.errors import ConfigError
from ray_queue.logs import install
from ray_queue.manager.actor import (
    METRICS_HOST_ENV,
    METRICS_PORT_ENV,
    NAMESPACE,
    STATE_DIR_ENV,
    retention_s,
    start_manager,
)
from ray_queue.manager.handle import ManagerHandle, credential
from ray_queue.wire import CAPTURE_ENV, CAPTURE_PARENT_ENV, CAPTURE_PRIORITY_ENV, CAPTURE_QUEUE_ENV

logger = logging.getLogger("ray_queue.manager")

#: How long one ping may take before Ray is considered gone.
PING_TIMEOUT_S = 60.0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ray_queue.manager", description=__doc__.split("\n\n")[1]
    )
    parser.add_argument("--address", default="auto", help="Ray address (default: auto)")
    parser.add_argument("--config-file", type=Path, help="queue config (YAML, Kueue or ours)")
    parser.add_argument(
        "--watch-config", action="store_true", help="re-apply the config file when it changes"
    )
    parser.add_argument(
        "--metrics-port", type=_port_or_off, default="9090", help="/metrics port, or 'off'"
    )
    parser.add_argument(
        "--metrics-host",
        help="interface for /metrics (default: all with tokens configured, else loopback)",
    )
    parser.add_argument("--state-dir", help="where the manager keeps its SQLite store")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--poll-interval-s", type=float, default=2.0, help="how often to check Ray and the file"
    )
    return parser.parse_args(argv)


def _port_or_off(value: str) -> str:
    if value != "off" and not (value.isdigit() and int(value) < 65536):
        raise argparse.ArgumentTypeError(f"{value!r}: give a port number (0-65535) or 'off'")
    return value


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _load(path: Path) -> QueueConfig | None:
    try:
        return load_config(path)
    except ConfigError as e:
        logger.error(
            "config refused; the running config stays", extra={"path": str(path), "error": str(e)}
        )
    except OSError as e:
        logger.error(
            "cannot read config; the running config stays",
            extra={"path": str(path), "error": str(e)},
        )
    return None


def _apply(manager: Any, config: QueueConfig, path: Path) -> None:
    try:
        evicted = ray.get(manager.apply_config.remote(config), timeout=PING_TIMEOUT_S)
    except ConfigError as e:
        logger.error(
            "config refused; the running config stays", extra={"path": str(path), "error": str(e)}
        )
        return
    logger.info("config applied", extra={"path": str(path), "evicted_by_stop_policies": evicted})


def actor_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``RAY_QUEUE_*`` settings the actor's process gets through its ``runtime_env``,
    without secrets: Ray's state API shows a runtime_env to every job and its agent logs
    it. An inline token list (``$RAY_QUEUE_TOKENS``) is written to a file only this user
    can read, on this (the head) node, where the actor runs, and the actor gets its path."""
    env = {k: v for k, v in environ.items() if k.startswith("RAY_QUEUE_") and k != TOKENS_ENV}
    if environ.get(TOKENS_ENV) and not environ.get(TOKENS_FILE_ENV):
        folder = Path(tempfile.mkdtemp(prefix="ray-queue-tokens-"))  # mode 0700
        path = folder / "tokens.yaml"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(environ[TOKENS_ENV])
        env[TOKENS_FILE_ENV] = str(path)
    return env


def _own_admin_token() -> str | None:
    """This process applies the config file as admin: with tokens configured and no
    ``RAY_QUEUE_TOKEN(_FILE)`` given, it uses the first admin token they give in clear."""
    try:
        found = token_definitions()
        if found is None:
            return None
        text, origin = found
        return admin_token(text, origin=origin)
    except AuthConfigError:
        return None  # the actor logs it and refuses every call, saying why


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    install(args.log_level)
    try:
        retention_s(os.environ)
    except ValueError as e:
        print(f"ray-queue manager: {e}", file=sys.stderr)
        return 2
    # The manager is never captured, however its container asks drivers to be (the Helm
    # chart's `capture`): its ray.init would queue it behind itself. Capture reads these at
    # ray.init, and without them the actor's runtime_env does not carry them either.
    for name in (CAPTURE_ENV, CAPTURE_QUEUE_ENV, CAPTURE_PRIORITY_ENV, CAPTURE_PARENT_ENV):
        os.environ.pop(name, None)
    ray.init(address=args.address, namespace=NAMESPACE, log_to_driver=False)
    # The actor's process gets the serving settings explicitly: it may be started on a
    # node whose raylet did not inherit this container's environment.
    env = actor_env(os.environ)
    env[METRICS_PORT_ENV] = args.metrics_port
    if args.metrics_host:
        env[METRICS_HOST_ENV] = args.metrics_host
    if args.state_dir:
        env[STATE_DIR_ENV] = args.state_dir
    config = _load(args.config_file) if args.config_file else None
    if args.config_file and config is None and _digest(args.config_file) is not None:
        logger.error("starting with the stored (or default) config instead")
    actor = start_manager(config, state_path=args.state_dir, env=env)
    ray.get(actor.ping.remote(), timeout=PING_TIMEOUT_S)
    manager = ManagerHandle(actor, credential(None) or _own_admin_token())
    seen = _digest(args.config_file) if args.config_file else None
    if config is not None and args.config_file is not None:
        # An actor that already existed (a manager restart) keeps its stored config
        # unless told otherwise: the file is the source of truth.
        _apply(manager, config, args.config_file)
    logger.info("queue manager ready")
    while True:
        time.sleep(args.poll_interval_s)
        try:
            ray.get(manager.ping.remote(), timeout=PING_TIMEOUT_S)
        except Exception as e:
            logger.error("lost the queue manager or Ray; exiting", extra={"error": str(e)})
            return 1
        if not (args.watch_config and args.config_file):
            continue
        current = _digest(args.config_file)
        if current is None or current == seen:
            continue
        seen = current
        changed = _load(args.config_file)
        if changed is not None:
            _apply(manager, changed, args.config_file)


if __name__ == "__main__":
    sys.exit(main())
