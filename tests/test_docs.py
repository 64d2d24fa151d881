"""The repository stands alone: no citation of a document outside it, no broken doc link.

The contract lives in docs/contract.md. These tests fail if a file cites the old design
document that lived outside the repository, or points at the directory it lived in, and if
a relative Markdown link in the README or the docs names a file that does not exist.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

#: Built from parts so that this file does not match its own search.
FORBIDDEN = (
    "DESIGN" + ".md",
    "DESIGN" + " §",
    "../" + "shared",
    "/work/" + "shared",
)
#: Generated code: not ours to edit, and regenerated from protos/.
SKIPPED_PREFIXES = ("ray_queue/grpc/gen/",)

#: The Markdown files whose links must resolve.
LINKED_DOCS = ("README.md", "benchmarks/README.md", "docs/*.md")
#: ``[text](target)`` or ``![alt](target)``, with an optional ``"title"``.
LINK = re.compile(r'\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
#: ``http:``, ``https:``, ``mailto:`` and any other scheme.
EXTERNAL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def repository_files() -> list[str]:
    """Tracked files, plus new ones not yet added (but not ignored ones)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError) as e:
        pytest.skip(f"not a git checkout: {e}")
    return sorted({name for name in out.decode().split("\0") if name})


def read_text(path: Path) -> str | None:
    """The file's text, or ``None`` for a binary (or missing) file."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None  # deleted in the work tree, or a submodule
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def links_in(markdown: str) -> list[str]:
    """Link targets outside code blocks and inline code, where Markdown makes no links."""
    prose = FENCE.sub("", markdown)
    prose = INLINE_CODE.sub("code", prose)
    return [m.group(1) for m in LINK.finditer(prose)]


def linked_docs() -> list[Path]:
    found = {p for pattern in LINKED_DOCS for p in REPO_ROOT.glob(pattern)}
    return sorted(found)


def test_no_file_cites_a_document_outside_the_repository() -> None:
    offences = []
    for name in repository_files():
        if name.startswith(SKIPPED_PREFIXES):
            continue
        text = read_text(REPO_ROOT / name)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for needle in FORBIDDEN:
                if needle in line:
                    offences.append(f"{name}:{number}: {needle!r}: {line.strip()}")
    assert not offences, "cite docs/contract.md instead:\n" + "\n".join(offences)


def test_the_link_check_covers_the_readme_and_the_docs() -> None:
    docs = [p.relative_to(REPO_ROOT).as_posix() for p in linked_docs()]
    assert {"README.md", "benchmarks/README.md", "docs/contract.md"} <= set(docs)


def test_every_relative_markdown_link_points_to_a_file_in_the_repository() -> None:
    broken = []
    for doc in linked_docs():
        for target in links_in(doc.read_text(encoding="utf-8")):
            if target.startswith("#") or EXTERNAL.match(target):
                continue
            path = target.split("#", 1)[0].split("?", 1)[0]
            resolved = (doc.parent / path).resolve()
            where = doc.relative_to(REPO_ROOT).as_posix()
            if not resolved.is_relative_to(REPO_ROOT):
                broken.append(f"{where}: {target} (outside the repository)")
            elif not resolved.exists():
                broken.append(f"{where}: {target} (no such file)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_link_finder_sees_links_and_skips_code() -> None:
    markdown = (
        "See [the contract](docs/contract.md#1-concepts) and ![a plot](img/a.png).\n"
        "Not a link: `x[0](y)`.\n"
        "```python\nf = [a](b)\n```\n"
        '[titled](docs/x.md "Title") and [web](https://example.com).\n'
    )
    assert links_in(markdown) == [
        "docs/contract.md#1-concepts",
        "img/a.png",
        "docs/x.md",
        "https://example.com",
    ]
