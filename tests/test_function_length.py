"""No function in ``ray_queue/`` or ``autoscaler/`` is longer than 60 lines unless a
comment right above it (above its decorators, if any) says why, starting ``# long:``.

Functions that outgrew the limit before this check existed, in code other engineers own,
are listed in ``NOT_YET_JUSTIFIED``; the test fails once one is fixed (so the entry goes)
or if a new one appears.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ray_queue", "autoscaler")
#: Generated code (protoc) is not ours to shape.
SKIP = ("ray_queue/grpc/gen/",)
MAX_LINES = 60
MARK = "# long:"

#: path:function → its owners have still to split it or say why it is long.
NOT_YET_JUSTIFIED: frozenset[str] = frozenset()


@functools.cache
def long_functions() -> tuple[tuple[str, int, int, bool], ...]:
    """(path:name, line, length, justified) of each function over ``MAX_LINES``."""
    return tuple(_long_functions())


def _long_functions() -> Iterator[tuple[str, int, int, bool]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(SKIP):
                continue
            source = path.read_text()
            lines = source.splitlines()
            for node in ast.walk(ast.parse(source, rel)):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                assert node.end_lineno is not None
                length = node.end_lineno - node.lineno + 1
                if length <= MAX_LINES:
                    continue
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                yield f"{rel}:{node.name}", node.lineno, length, _justified(lines, first)


def _justified(lines: list[str], first: int) -> bool:
    """Whether the comment block ending just above line ``first`` (1-based) starts with
    the mark."""
    i = first - 2
    block: list[str] = []
    while i >= 0 and lines[i].lstrip().startswith("#"):
        block.insert(0, lines[i].strip())
        i -= 1
    return bool(block) and block[0].startswith(MARK)


def test_long_functions_say_why() -> None:
    found = long_functions()
    unjustified = [
        f"{name} (line {line}, {length} lines)"
        for name, line, length, ok in found
        if not ok and name not in NOT_YET_JUSTIFIED
    ]
    assert not unjustified, (
        f"functions over {MAX_LINES} lines: split them, or say why in a comment starting "
        f"{MARK!r} right above the def: {unjustified}"
    )


def test_the_not_yet_justified_list_is_current() -> None:
    still = {name for name, _, _, ok in long_functions() if not ok}
    fixed = sorted(NOT_YET_JUSTIFIED - still)
    assert not fixed, f"no longer over the limit (or justified now): drop from the list: {fixed}"


def test_the_check_sees_a_long_function_and_its_comment() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    bare = f"def f():\n{body}\n"
    marked = f"# long: a table written out.\n@staticmethod\ndef f():\n{body}\n"
    for text, justified in ((bare, False), (marked, True)):
        tree = ast.parse(text)
        (fn,) = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]
        assert fn.end_lineno is not None and fn.end_lineno - fn.lineno + 1 > MAX_LINES
        first = min([fn.lineno, *(d.lineno for d in fn.decorator_list)])
        assert _justified(text.splitlines(), first) is justified
