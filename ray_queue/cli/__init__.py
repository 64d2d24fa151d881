"""The ``ray-queue`` command line (console script ``ray_queue.cli:main``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (the console script passes it to exit)."""
    from ray_queue.cli.app import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
