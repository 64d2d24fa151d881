"""The checked-in generated code is exactly what the .proto files produce."""

from __future__ import annotations

from pathlib import Path

import pytest

from ray_queue.grpc import codegen


@pytest.mark.timeout(60)
def test_generated_code_is_current(tmp_path: Path) -> None:
    written = codegen.generate(tmp_path)
    names = sorted(p.name for p in written)
    checked_in = sorted(p.name for p in codegen.GEN_DIR.iterdir() if p.is_file())
    assert names == checked_in, "generated files differ from ray_queue/grpc/gen"
    stale = [p.name for p in written if p.read_text() != (codegen.GEN_DIR / p.name).read_text()]
    assert not stale, f"regenerate with `python -m ray_queue.grpc.codegen`: {stale} differ"


def test_every_proto_field_is_documented() -> None:
    """Every field and enum value has a comment: above it, on its line, or (for the first
    field) above its message."""
    undocumented = []
    for proto in codegen.PROTOS:
        lines = (codegen.PROTO_ROOT / codegen.PROTO_PACKAGE / proto).read_text().splitlines()
        for i, line in enumerate(lines):
            stripped = line.strip()
            is_field = (
                stripped.endswith(";")
                and "=" in stripped
                and not stripped.startswith(("//", "option", "syntax", "package", "import"))
            )
            if not is_field or stripped.startswith(("rpc ",)):
                continue
            previous = lines[i - 1].strip()
            block_start = previous.endswith("{")
            header = lines[i - 2].strip() if block_start else ""
            if "//" in stripped:
                continue
            if not (previous.startswith("//") or (block_start and header.startswith("//"))):
                undocumented.append(f"{proto}:{i + 1}: {stripped}")
    assert not undocumented, "\n".join(undocumented)
