"""A newcomer's path with no surprises: the quickstart runs as written, and what ray-queue
says when a newcomer gets something wrong points at the fix.

Every Python and shell block of docs/quickstart.md and of the README's "Quickstart"
section runs, in order, in one fresh driver process per document, against one local Ray
cluster of the shape the quickstart tells you to start (8 logical GPUs on a node that
carries both flavors' labels of examples/config/three-teams.yaml). A block that cannot
run here is skipped only when the document says so, with a reason, in a
``<!-- not-run: reason -->`` comment just above it; anything else — a block in an
unknown language, a marker with no block — fails. So the docs cannot drift from the
code again.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from benchmarks.ports import free_port
from tests.k8s.ray_nodes import _refresh_ray_auth_state

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = "examples/config/three-teams.yaml"
#: The node the quickstart's ``ray start`` makes: both flavors' labels, 8 GPUs.
NODE_LABELS = {"ray.io/accelerator-type": "A100", "ray.io/node-group": "cpu"}
NODE_CPUS, NODE_GPUS = 16, 8
#: Seconds a whole document may take: a driver starting, a hundred tasks, an actor, a
#: Ray job and a few CLI calls (each a Ray connection) on a busy 2-core machine.
DOC_TIMEOUT_S = 420

#: Fence languages that run, and how.
RUNS = {"python": "python", "py": "python", "sh": "shell", "bash": "shell", "shell": "shell"}
#: Fence languages that are data, not commands.
DATA = {"yaml", "yml", "json", "toml", "text"}
NOT_RUN = re.compile(r"^\s*<!--\s*not-run:(?P<reason>.*?)-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[\w+-]*)\s*$")


# -- reading the documents ---------------------------------------------------------------


class DocError(ValueError):
    """A document the test cannot run as it stands (it says where)."""


@dataclass(frozen=True, slots=True)
class Block:
    path: str
    #: 1-based line of the block's first line of code in ``path``.
    line: int
    lang: str
    code: str
    #: Why it does not run here (``<!-- not-run: reason -->``), or ``None``: it runs.
    not_run: str | None

    @property
    def kind(self) -> str | None:
        return RUNS.get(self.lang)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def code_blocks(markdown: str, path: str, *, first_line: int = 1) -> list[Block]:
    """Fenced blocks of ``markdown`` (whose first line is ``first_line`` of ``path``),
    each with the ``not-run`` reason given just above it."""
    blocks: list[Block] = []
    marker: tuple[int, str] | None = None
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        number = first_line + i
        line = lines[i]
        skip = NOT_RUN.match(line)
        fence = FENCE.match(line)
        if skip:
            reason = skip["reason"].strip()
            if not reason:
                raise DocError(f"{path}:{number}: a not-run marker must say why")
            marker = (number, reason)
        elif fence:
            lang = fence["lang"].lower()
            end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
            if end is None:
                raise DocError(f"{path}:{number}: unclosed code block")
            if lang not in RUNS and lang not in DATA:
                raise DocError(
                    f"{path}:{number}: a ```{lang} block: give it a language this test runs "
                    f"({', '.join(sorted(RUNS))}) or one it reads as data "
                    f"({', '.join(sorted(DATA))})"
                )
            code = "\n".join(lines[i + 1 : end]) + "\n"
            blocks.append(Block(path, number + 1, lang, code, marker[1] if marker else None))
            marker = None
            i = end
        elif line.strip() and marker is not None:
            raise DocError(f"{path}:{marker[0]}: a not-run marker with no code block under it")
        i += 1
    if marker is not None:
        raise DocError(f"{path}:{marker[0]}: a not-run marker with no code block under it")
    return blocks


def section(markdown: str, heading: str) -> tuple[str, int]:
    """The text of the ``## heading`` section and the line it starts on (1-based)."""
    lines = markdown.splitlines()
    start = lines.index(f"## {heading}")
    end = next((j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines))
    return "\n".join(lines[start:end]), start + 1


def quickstart_blocks() -> list[Block]:
    path = "docs/quickstart.md"
    return code_blocks((REPO_ROOT / path).read_text(encoding="utf-8"), path)


def readme_quickstart_blocks() -> list[Block]:
    text, first = section((REPO_ROOT / "README.md").read_text(encoding="utf-8"), "Quickstart")
    return code_blocks(text, "README.md", first_line=first)


# -- the reader itself (no Ray) ----------------------------------------------------------


def test_the_reader_takes_markers_and_line_numbers_from_the_document() -> None:
    doc = textwrap.dedent(
        """\
        # T
        ```python
        x = 1
        ```
        <!-- not-run: needs a GPU cloud -->
        ```sh
        helm install x
        ```
        ```yaml
        a: 1
        ```
        """
    )
    first, skipped, data = code_blocks(doc, "t.md")
    assert (first.line, first.kind, first.code, first.not_run) == (3, "python", "x = 1\n", None)
    assert (skipped.kind, skipped.not_run) == ("shell", "needs a GPU cloud")
    assert data.kind is None


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        pytest.param("<!-- not-run: why -->\ntext\n```sh\nx\n```\n", "no code block", id="stray"),
        pytest.param("<!-- not-run: why -->\n", "no code block", id="trailing"),
        pytest.param("<!-- not-run: -->\n```sh\nx\n```\n", "must say why", id="no-reason"),
        pytest.param("```\nx\n```\n", "give it a language", id="no-language"),
        pytest.param("```python\nx\n", "unclosed", id="unclosed"),
    ],
)
def test_the_reader_refuses_what_it_cannot_run_silently(doc: str, problem: str) -> None:
    with pytest.raises(DocError, match=problem):
        code_blocks(doc, "t.md")


def test_the_documents_parse_and_each_skip_says_why() -> None:
    for blocks in (quickstart_blocks(), readme_quickstart_blocks()):
        assert "python" in {b.kind for b in blocks if b.not_run is None}, blocks
        for block in blocks:
            if block.not_run is not None:
                assert len(block.not_run.split()) >= 3, f"{block.where}: say why it cannot run"
    # The README's quickstart uses the example config the quickstart page explains.
    assert any(EXAMPLE_CONFIG in b.code for b in readme_quickstart_blocks())


# -- running them on a real cluster ------------------------------------------------------

#: Runs the blocks in order in one driver; Python blocks share one namespace. Code is
#: compiled under the document's name, padded so tracebacks give the document's lines.
RUNNER = """
import json, subprocess, sys
blocks = json.load(open(sys.argv[1]))
namespace = {"__name__": "__main__"}
for b in blocks:
    print(f"--- {b['where']} ({b['kind']})", flush=True)
    if b["kind"] == "python":
        exec(compile("\\n" * (b["line"] - 1) + b["code"], b["path"], "exec"), namespace)
    else:
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", b["code"]])
        if done.returncode:
            sys.exit(f"{b['where']}: the shell block exited with {done.returncode}")
    sys.stdout.flush()
"""


def _with_venv_path(env: dict[str, str]) -> dict[str, str]:
    """As in an activated venv: ``python`` and ``ray-queue`` are this interpreter's."""
    out = dict(env)
    out["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return out


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """The quickstart's cluster: a small head, and the node its ``ray start`` describes.

    Started without Ray's token auth (``cluster_utils``), so drivers join with
    ``RAY_ADDRESS`` alone. This process connects too, to check what the docs leave.
    """
    import ray
    from ray.cluster_utils import Cluster

    with pytest.MonkeyPatch.context() as env:
        env.delenv("RAY_ADDRESS", raising=False)
        # A local ray.init() earlier in this process (Ray 2.60) leaves RAY_AUTH_MODE=token
        # set for good; this cluster is the docs' own, without it, as the drivers that
        # join it are.
        for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            env.delenv(key, raising=False)
        _refresh_ray_auth_state()
        # Ray's job server runs an entrypoint's ``python`` from the PATH it inherits.
        env.setenv("PATH", _with_venv_path(dict(os.environ))["PATH"])
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 2,
                "include_dashboard": True,
                # Another cluster on this machine may hold the default ports.
                "dashboard_port": free_port(),
                "dashboard_agent_listen_port": free_port(),
            },
        )
        try:
            cluster.add_node(num_cpus=NODE_CPUS, num_gpus=NODE_GPUS, labels=dict(NODE_LABELS))
            cluster.wait_for_nodes()
            ray.init(address=cluster.address, logging_level="ERROR")
            yield cluster
        finally:
            import ray_queue

            ray_queue.shutdown()
            ray.shutdown()
            cluster.shutdown()
    _refresh_ray_auth_state()


def run_blocks(blocks: list[Block], cluster: Any, tmp_path: Path) -> str:
    """Run the runnable blocks in one fresh driver process; its output, or a failure
    that names the block."""
    runnable = [b for b in blocks if b.kind is not None and b.not_run is None]
    spec = tmp_path / "blocks.json"
    spec.write_text(
        json.dumps(
            [
                {"path": b.path, "line": b.line, "kind": b.kind, "code": b.code, "where": b.where}
                for b in runnable
            ]
        )
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RAY_QUEUE_ADDRESS", "RAY_QUEUE_TOKEN", "RAY_AUTH_"))
    }
    env = _with_venv_path(env) | {"RAY_ADDRESS": cluster.address, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "driver.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(spec)],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its shell blocks' children are stopped with it
        )
        try:
            code = process.wait(timeout=DOC_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = None
    text = log.read_text(errors="replace")
    if code != 0:
        what = "timed out" if code is None else f"exited with {code}"
        pytest.fail(f"the document's code {what}; its driver said:\n{text[-6000:]}")
    return text


def settled(timeout_s: float = 120.0) -> None:
    """Wait until nothing the documents queued is left holding or waiting for quota (a
    job queued from the shell may still be running when its driver exits)."""
    import ray

    from ray_queue.manager.actor import find_manager
    from tests.ray.harness import wait_for

    manager = find_manager()
    assert manager is not None, "the documents' ray_queue.init did not start the manager"

    def live() -> list[str]:
        statuses = ray.get(manager.workloads.remote(), timeout=60)
        return [f"{s.spec.id} {s.state.value}" for s in statuses if not s.state.is_terminal]

    wait_for(lambda: not live(), timeout_s=timeout_s, interval_s=0.5)


@pytest.mark.ray
@pytest.mark.timeout(DOC_TIMEOUT_S + 180)
def test_the_quickstart_runs_as_written(cluster: Any, tmp_path: Path) -> None:
    said = run_blocks(quickstart_blocks(), cluster, tmp_path)
    # What the page says the code prints.
    assert "[0, 1, 2, 3, 4, 5, 6, 7]" in said, said
    assert re.search(r"^42$", said, re.MULTILINE), said
    # The messages the page quotes.
    assert (
        "waiting: insufficient unused quota for GPU in flavor a100: request 2, available 0" in said
    ), said
    assert (
        "can never be admitted to ClusterQueue research: GPU in flavor a100: request 100 "
        "exceeds the most the ClusterQueue can ever get there (4, borrowing included); "
        "flavor cpu has no GPU quota. Ask for less, or raise the quota." in said
    ), said
    assert "FINISHED rq-jo-" in said, said
    settled()


@pytest.mark.ray
@pytest.mark.timeout(DOC_TIMEOUT_S + 180)
def test_the_readme_quickstart_runs_as_written(cluster: Any, tmp_path: Path) -> None:
    said = run_blocks(readme_quickstart_blocks(), cluster, tmp_path)
    assert "config is valid (dry run" in said, said
    settled()


# -- what a newcomer's mistakes are told -------------------------------------------------


@pytest.fixture(scope="module")
def driver(cluster: Any) -> Iterator[None]:
    """This process as a driver of the example config (the cluster's own teardown shuts
    its client down)."""
    import ray_queue

    ray_queue.init(queue="training", config=str(REPO_ROOT / EXAMPLE_CONFIG))
    yield


def square(x: int) -> int:
    return x * x


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_ray_get_on_a_queued_task_says_to_use_ray_queue_get(driver: None) -> None:
    import ray

    import ray_queue

    handle = ray_queue.remote(num_cpus=1)(square).remote(3)
    # Ray's own checks print the handle's type (one handle) or the handle (a list).
    with pytest.raises(ValueError, match=r"use ray_queue\.get\(\)"):
        ray.get(handle)
    with pytest.raises(TypeError, match=r"use ray_queue\.get\(\)"):
        ray.get([handle])
    assert ray_queue.get(handle, timeout=120) == 9
    assert ray.get(handle.object_ref(timeout=0)) == 9


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_a_failed_job_says_which_ray_job_and_why_in_rays_words(driver: None) -> None:
    import ray_queue
    from ray_queue.engine.model import WorkloadState

    job = ray_queue.submit_job(
        "python -c 'import sys; sys.exit(3)'", queue="training", entrypoint_num_cpus=1
    )
    status = job.wait(timeout_seconds=240)  # the placement groups' name works here too
    assert status.state is WorkloadState.FAILED, status.message
    submission_id = job.submission_id()
    assert submission_id is not None and f"Ray job {submission_id} FAILED" in status.message
    assert "exit code 3" in status.message, status.message
    assert job.status().message == status.message


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_waits_take_either_timeout_name(driver: None) -> None:
    import ray_queue

    with ray_queue.placement_group([{"GPU": 1}], name="either-timeout") as pg:
        assert pg.wait(timeout_s=60)
        assert pg.wait(timeout_seconds=60)
        with pytest.raises(TypeError, match="not both"):
            pg.wait(timeout_seconds=1, timeout_s=1)


def test_one_timeout_takes_either_name_once() -> None:
    from ray_queue.client.placement_group import UNSET, one_timeout

    assert one_timeout(UNSET, UNSET, default=30.0) == 30.0
    assert one_timeout(5, UNSET, default=30.0) == 5.0
    assert one_timeout(UNSET, None, default=30.0) is None
    with pytest.raises(TypeError, match="not both"):
        one_timeout(1, 2, default=None)
    with pytest.raises(TypeError, match="number of seconds"):
        one_timeout("10", UNSET, default=None)


def test_the_demo_header_never_says_91s_of_a_60s_stream() -> None:
    from ray_queue.demo import _title

    assert _title(12.4, 60) == "ray-queue — 12s of a 60s stream of submissions"
    assert "91s: stream of 60s done, draining" in _title(91, 60)
