"""Ports for the servers the tests and benchmarks start: free now, and out of the way of
the ports the kernel hands out on its own.

A port found by binding port 0 comes from the kernel's ephemeral range (32768-60999 on
Linux) and is given back the moment it is found: in the seconds before the server that
wanted it binds, any process that binds port 0 or connects out may be handed the same
one, and a Ray cluster starts many such processes. A head's dashboard agent found its
port taken that way and served no Ray jobs for a whole test module. These ports come
from below that range and above Ray's worker ports (10002-19999 by default), where
nothing is handed out unasked.
"""

from __future__ import annotations

import random
import socket

LOW, HIGH = 20_000, 32_000
_pick = random.Random()  # its own: a test that seeds the global one must not matter here


def free_port() -> int:
    """A TCP port no server on this machine listens on, outside the ephemeral range."""
    for _ in range(200):
        port = _pick.randrange(LOW, HIGH)
        with socket.socket() as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
            return port
    raise OSError(f"no free TCP port in [{LOW}, {HIGH})")
