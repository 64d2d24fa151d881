"""``python -m ray_queue.capture install|uninstall|status``: the start-up line.

``install`` copies ``ray_queue_capture.pth`` into this interpreter's site-packages, so
that ``RAY_QUEUE_CAPTURE=1`` captures drivers that never import ray_queue. The line does
nothing when the variable is unset. Run it once per Python environment (an image build,
a node's setup); ``uninstall`` removes it.
"""

from __future__ import annotations

import argparse
import sys
import sysconfig
from pathlib import Path

PTH_NAME = "ray_queue_capture.pth"
SOURCE = Path(__file__).with_name(PTH_NAME)


def pth_path() -> Path:
    return Path(sysconfig.get_paths()["purelib"]) / PTH_NAME


def install() -> Path:
    """Write the start-up line (idempotent); returns where."""
    target = pth_path()
    text = SOURCE.read_text(encoding="utf-8")
    if not target.exists() or target.read_text(encoding="utf-8") != text:
        target.write_text(text, encoding="utf-8")
    return target


def uninstall() -> bool:
    target = pth_path()
    if target.exists():
        target.unlink()
        return True
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ray_queue.capture", description=__doc__)
    parser.add_argument("command", choices=["install", "uninstall", "status"])
    args = parser.parse_args(argv)
    if args.command == "install":
        print(f"installed {install()}")
    elif args.command == "uninstall":
        print(f"removed {pth_path()}" if uninstall() else f"not installed ({pth_path()})")
    else:
        installed = pth_path().exists()
        print(f"{'installed' if installed else 'not installed'}: {pth_path()}")
        return 0 if installed else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
