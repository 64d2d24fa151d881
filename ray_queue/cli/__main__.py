"""``python -m ray_queue.cli`` runs the same command as ``ray-queue``."""

import sys

from ray_queue.cli import main

sys.exit(main())
