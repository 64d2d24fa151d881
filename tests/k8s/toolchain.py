"""Builds and caches the real Kubernetes binaries the k8s tests run against.

Why this exists: the autoscaler and the Helm chart must be tested against a real API server,
a real KubeRay operator and a real ``helm``, yet this machine (and CI) reaches only package
registries. Every binary is therefore compiled from its published Go module through the Go
module proxy, once, into ``~/.cache/ray-queue-k8s/<tool>-<version>/`` outside the repository;
later runs find it there and start in seconds.

Each tool is built from a tiny throwaway Go module (in ``<cache>/src/<tool>-<version>/``) that
requires the tool's module at a pinned version. ``k8s.io/kubernetes`` additionally needs a
``replace`` line per staging module (its own go.mod points them at ``./staging/...``, which
does not exist in the published module), each pinned to the matching published ``v0.x`` tag.

Run ``python -m tests.k8s.toolchain`` to build whatever is missing (idempotent; it prints what
it built and how long it took). Builds run under ``nice -n 19`` and hold a file lock so two
test processes never build the same tool at once.

Kueue's own scheduler benchmark (its runner and ``minimalkueue``, for
``benchmarks.side_by_side``) is built the same way but only on request
(``python -m tests.k8s.toolchain --kueue``, or ``ensure_kueue_bench_tools``): the k8s tests do
not need it. Those two are compiled inside the published ``sigs.k8s.io/kueue`` module's own
directory, so Kueue's go.mod and go.sum pin every dependency exactly as Kueue's CI builds it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

KUBERNETES_VERSION = "v1.33.13"
"""kube-apiserver. 1.33 is what KubeRay v1.4's client libraries (k8s.io/* v0.33) target."""
STAGING_VERSION = "v0.33.13"
"""The published tag of every k8s.io staging module that matches KUBERNETES_VERSION."""
ETCD_VERSION = "v3.5.21"
"""etcd server: the 3.5 line Kubernetes 1.33 is tested with (Debian 12 only has 3.4)."""
KUBERAY_VERSION = "v1.4.2"
"""KubeRay operator and its CRDs (ray.io/v1 RayCluster, RayJob, RayService)."""
HELM_VERSION = "v3.19.0"
HELM_KUBE_VERSION = "v1.34.0"
"""The Kubernetes version helm assumes when no cluster is asked (``helm template``,
``helm lint``): helm's Makefile derives it from its k8s.io/client-go (v0.34 for helm 3.19)
and sets it with ``-ldflags -X``; built without them helm would claim v1.20 and refuse
charts whose ``kubeVersion`` asks for more. Part of the cache key, so a helm built without
it is never reused."""
CLUSTER_AUTOSCALER_APIS_VERSION = "v0.0.0-20240830133931-adfbe7e45277"
"""k8s.io/autoscaler/cluster-autoscaler/apis: the first published pseudo-version whose CRD
serves ProvisioningRequest autoscaling.x-k8s.io/v1 (the one Kueue pins)."""

KUEUE_VERSION = "v0.19.2"
"""Kueue whose scheduler benchmark runs beside ours (benchmarks.side_by_side); its go.mod asks
for Go >= 1.26."""

KUBERAY_MODULE = "github.com/ray-project/kuberay/ray-operator"
KUEUE_MODULE = "sigs.k8s.io/kueue"
KUEUE_RUNNER_PACKAGE = "./test/performance/scheduler/runner"
KUEUE_MINIMALKUEUE_PACKAGE = "./test/performance/scheduler/minimalkueue"
CLUSTER_AUTOSCALER_APIS_MODULE = "k8s.io/autoscaler/cluster-autoscaler/apis"

GO_MISSING_HINT = (
    "the Kubernetes test harness builds kube-apiserver, etcd, helm and the KubeRay operator "
    "from their Go modules, so it needs a Go toolchain >= 1.24 on PATH (a Go release from "
    "the Go website unpacked into /usr/local/go, or a distribution package of that version) "
    "and access to the Go module proxy; then run `python -m tests.k8s.toolchain` (or "
    "`make k8s-tools`) once: about 15 minutes on 2 cores, seconds afterwards"
)


class ToolchainUnavailable(RuntimeError):
    """A tool could not be found or built; the message says which and how to get it."""


@dataclasses.dataclass(frozen=True, slots=True)
class Tools:
    """Absolute paths of the built binaries."""

    etcd: Path
    kube_apiserver: Path
    helm: Path
    kuberay_operator: Path


@dataclasses.dataclass(frozen=True, slots=True)
class _Tool:
    name: str
    version: str
    build: Callable[[Path, Path], None]
    """build(work_dir, output_binary): compile the tool into output_binary."""


def cache_root() -> Path:
    """Where binaries live; RAY_QUEUE_K8S_CACHE overrides ``~/.cache/ray-queue-k8s``."""
    override = os.environ.get("RAY_QUEUE_K8S_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "ray-queue-k8s"


def go_binary() -> str | None:
    """The ``go`` command, or None when no Go toolchain is installed."""
    return shutil.which("go")


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Never let a go.mod's `toolchain` line download another Go; the local one is new enough.
    env["GOTOOLCHAIN"] = "local"
    env["GOFLAGS"] = (env.get("GOFLAGS", "") + " -buildvcs=false -mod=mod").strip()
    env.setdefault("CGO_ENABLED", "0")
    return env


def _run_go(
    args: list[str], cwd: Path, log: Path, env_overrides: dict[str, str] | None = None
) -> str:
    go = go_binary()
    if go is None:
        raise ToolchainUnavailable(GO_MISSING_HINT)
    cmd = ["nice", "-n", "19", go, *args]
    env = _go_env() | (env_overrides or {})
    with log.open("a") as log_file:
        log_file.write(f"$ {' '.join(cmd)}\n")
        log_file.flush()
        proc = subprocess.run(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=log_file, text=True
        )
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise ToolchainUnavailable(
            f"`go {' '.join(args)}` failed in {cwd} (exit {proc.returncode}):\n{tail}"
        )
    return proc.stdout


def module_dir(module: str, version: str) -> Path:
    """Download ``module@version`` into the Go module cache and return its directory."""
    scratch = cache_root() / "src"
    scratch.mkdir(parents=True, exist_ok=True)
    log = scratch / "download.log"
    out = _run_go(["mod", "download", "-json", f"{module}@{version}"], scratch, log)
    info = json.loads(out)
    if "Error" in info:
        raise ToolchainUnavailable(f"go mod download {module}@{version}: {info['Error']}")
    return Path(info["Dir"])


def _module_go_mod(module: str, version: str, cwd: Path, log: Path) -> str:
    out = _run_go(["mod", "download", "-json", f"{module}@{version}"], cwd, log)
    info = json.loads(out)
    if "Error" in info:
        raise ToolchainUnavailable(f"go mod download {module}@{version}: {info['Error']}")
    return Path(info["GoMod"]).read_text()


def _write_module(work: Path, requires: dict[str, str], replaces: dict[str, str], pkg: str) -> None:
    """A throwaway main module that requires ``requires`` and blank-imports ``pkg``."""
    lines = ["module raqueue.local/k8sbuild", "", "go 1.24.0", "", "require ("]
    lines += [f"\t{mod} {ver}" for mod, ver in sorted(requires.items())]
    lines.append(")")
    if replaces:
        lines += ["", "replace ("]
        lines += [f"\t{mod} => {mod} {ver}" for mod, ver in sorted(replaces.items())]
        lines.append(")")
    (work / "go.mod").write_text("\n".join(lines) + "\n")
    (work / "tools.go").write_text(f'//go:build tools\n\npackage k8sbuild\n\nimport _ "{pkg}"\n')


def _build_package(work: Path, pkg: str, output: Path, ldflags: str = "-s -w") -> None:
    log = work / "build.log"
    _run_go(["mod", "tidy", "-e"], work, log)
    _run_go(["build", "-trimpath", f"-ldflags={ldflags}", "-o", str(output), pkg], work, log)


def _build_kube_apiserver(work: Path, output: Path) -> None:
    log = work / "build.log"
    go_mod = _module_go_mod("k8s.io/kubernetes", KUBERNETES_VERSION, work, log)
    staging: dict[str, str] = {}
    for line in go_mod.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "=>" and parts[2].startswith("./staging/"):
            staging[parts[0]] = STAGING_VERSION
    if not staging:
        raise ToolchainUnavailable("k8s.io/kubernetes go.mod lists no staging replace lines")
    pkg = "k8s.io/kubernetes/cmd/kube-apiserver"
    _write_module(work, {"k8s.io/kubernetes": KUBERNETES_VERSION}, staging, pkg)
    # The version shown by /version and `kube-apiserver --version`.
    ldflags = "-s -w " + " ".join(
        f"-X k8s.io/component-base/version.{key}={value}"
        for key, value in (
            ("gitVersion", KUBERNETES_VERSION),
            ("gitMajor", KUBERNETES_VERSION[1:].split(".")[0]),
            ("gitMinor", KUBERNETES_VERSION.split(".")[1]),
        )
    )
    _build_package(work, pkg, output, ldflags)


def _build_etcd(work: Path, output: Path) -> None:
    # The server module's main.go is the etcd binary; its go.mod `replace`s point at sibling
    # directories of the etcd repository and are ignored for a dependency, so MVS picks the
    # published api/client/pkg/raft modules of the same version.
    pkg = "go.etcd.io/etcd/server/v3"
    _write_module(work, {pkg: ETCD_VERSION}, {}, pkg)
    _build_package(work, pkg, output)


def _build_helm(work: Path, output: Path) -> None:
    pkg = "helm.sh/helm/v3/cmd/helm"
    _write_module(work, {"helm.sh/helm/v3": HELM_VERSION}, {}, pkg)
    major, minor = HELM_KUBE_VERSION[1:].split(".")[:2]
    # What helm's own Makefile passes (see HELM_KUBE_VERSION), so this helm renders
    # exactly as a released one does.
    ldflags = f"-s -w -X helm.sh/helm/v3/internal/version.version={HELM_VERSION}" + "".join(
        f" -X helm.sh/helm/v3/pkg/{pkg_name}.k8sVersion{key}={value}"
        for pkg_name in ("chartutil", "lint/rules")
        for key, value in (("Major", major), ("Minor", minor))
    )
    _build_package(work, pkg, output, ldflags)


def _build_kuberay(work: Path, output: Path) -> None:
    _write_module(work, {KUBERAY_MODULE: KUBERAY_VERSION}, {}, KUBERAY_MODULE)
    _build_package(work, KUBERAY_MODULE, output)


_TOOLS: tuple[_Tool, ...] = (
    _Tool("etcd", ETCD_VERSION, _build_etcd),
    _Tool("kube-apiserver", KUBERNETES_VERSION, _build_kube_apiserver),
    _Tool("helm", f"{HELM_VERSION}-kube{HELM_KUBE_VERSION}", _build_helm),
    _Tool("kuberay-operator", KUBERAY_VERSION, _build_kuberay),
)


def binary_path(name: str, version: str) -> Path:
    return cache_root() / f"{name}-{version}" / name


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / ".build.lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _ensure(tool: _Tool, report: Callable[[str], None]) -> Path:
    target = binary_path(tool.name, tool.version)
    if target.exists():
        return target
    work = cache_root() / "src" / f"{tool.name}-{tool.version}"
    work.mkdir(parents=True, exist_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    report(f"building {tool.name} {tool.version} (log: {work / 'build.log'}) ...")
    started = time.monotonic()
    tool.build(work, partial)
    partial.replace(target)  # atomic: a half-written binary is never picked up
    report(f"built {tool.name} {tool.version} in {time.monotonic() - started:.0f} s -> {target}")
    return target


def ensure_tools(report: Callable[[str], None] = lambda _msg: None) -> Tools:
    """Return every tool's path, building the missing ones first. Idempotent.

    Raises ToolchainUnavailable when a tool is missing and cannot be built.
    """
    paths: dict[str, Path] = {}
    missing = [t for t in _TOOLS if not binary_path(t.name, t.version).exists()]
    if missing and go_binary() is None:
        names = ", ".join(t.name for t in missing)
        raise ToolchainUnavailable(f"missing {names}: {GO_MISSING_HINT}")
    with _build_lock():
        for tool in _TOOLS:
            paths[tool.name] = _ensure(tool, report)
        # The CRDs are read from the module cache at test time; fetch them with the tools.
        module_dir(KUBERAY_MODULE, KUBERAY_VERSION)
        module_dir(CLUSTER_AUTOSCALER_APIS_MODULE, CLUSTER_AUTOSCALER_APIS_VERSION)
    return Tools(
        etcd=paths["etcd"],
        kube_apiserver=paths["kube-apiserver"],
        helm=paths["helm"],
        kuberay_operator=paths["kuberay-operator"],
    )


# -- Kueue's scheduler benchmark (benchmarks.side_by_side) ---------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class KueueBenchTools:
    """Kueue's benchmark runner, its minimalkueue, and what the runner needs around them."""

    runner: Path
    minimalkueue: Path
    project_dir: Path
    """The published module's directory (read-only, in the Go module cache): the runner's
    ``PROJECT_DIR`` and working directory, holding ``config/components/crd/bases`` and the
    generator configs under ``test/performance/scheduler/configs``."""
    kubebuilder_assets: Path
    """A directory with ``etcd`` and ``kube-apiserver`` (links to this toolchain's builds):
    the runner's envtest starts its own control plane from ``KUBEBUILDER_ASSETS``."""
    etcd_version: str = ETCD_VERSION
    kube_apiserver_version: str = KUBERNETES_VERSION
    kueue_version: str = KUEUE_VERSION


def _build_in_module(package: str) -> Callable[[Path, Path], None]:
    """build(work_dir, output) for ``package`` (relative to Kueue's module root), compiled in
    the module's own directory with its own go.mod and go.sum, which are never modified."""

    def build(work: Path, output: Path) -> None:
        project = module_dir(KUEUE_MODULE, KUEUE_VERSION)
        # -mod=readonly: the module cache is read-only, and Kueue's go.sum is complete.
        env = {"GOFLAGS": "-buildvcs=false -mod=readonly"}
        args = ["build", "-trimpath", "-ldflags=-s -w", "-o", str(output), package]
        _run_go(args, project, work / "build.log", env)

    return build


_KUEUE_TOOLS: tuple[_Tool, ...] = (
    _Tool("kueue-perf-runner", KUEUE_VERSION, _build_in_module(KUEUE_RUNNER_PACKAGE)),
    _Tool("minimalkueue", KUEUE_VERSION, _build_in_module(KUEUE_MINIMALKUEUE_PACKAGE)),
)


def kueue_bench_missing() -> str | None:
    """Why Kueue's benchmark cannot run here without a build, or None when every binary it
    needs is in the cache. Starts no build and reaches no network."""
    wanted = [*_TOOLS[:2], *_KUEUE_TOOLS]  # etcd, kube-apiserver, the runner, minimalkueue
    missing = [t.name for t in wanted if not binary_path(t.name, t.version).exists()]
    if missing:
        return (
            f"{', '.join(missing)} not built in {cache_root()}: run "
            "`python -m tests.k8s.toolchain --kueue` (needs Go >= 1.26 and the Go module proxy)"
        )
    if go_binary() is None:
        return f"no `go` on PATH to locate {KUEUE_MODULE}@{KUEUE_VERSION} in its module cache"
    return None


def ensure_kueue_bench_tools(report: Callable[[str], None] = lambda _msg: None) -> KueueBenchTools:
    """Kueue's runner and minimalkueue (and etcd and kube-apiserver), building what is missing.

    Idempotent. Raises ToolchainUnavailable when something is missing and cannot be built.
    """
    if go_binary() is None:
        raise ToolchainUnavailable(GO_MISSING_HINT)
    with _build_lock():
        etcd = _ensure(_TOOLS[0], report)
        apiserver = _ensure(_TOOLS[1], report)
        runner = _ensure(_KUEUE_TOOLS[0], report)
        minimalkueue = _ensure(_KUEUE_TOOLS[1], report)
        project = module_dir(KUEUE_MODULE, KUEUE_VERSION)
        assets = cache_root() / f"kubebuilder-assets-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}"
        assets.mkdir(parents=True, exist_ok=True)
        for name, target in (("etcd", etcd), ("kube-apiserver", apiserver)):
            link = assets / name
            if not link.exists():
                link.symlink_to(target)
    crds = project / "config" / "components" / "crd" / "bases"
    if not crds.is_dir():
        raise ToolchainUnavailable(f"{KUEUE_MODULE}@{KUEUE_VERSION} has no {crds}")
    return KueueBenchTools(
        runner=runner, minimalkueue=minimalkueue, project_dir=project, kubebuilder_assets=assets
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.k8s.toolchain",
        description="Build the Kubernetes binaries the k8s tests run against (cached).",
    )
    parser.add_argument(
        "--kueue",
        action="store_true",
        help=f"also build Kueue {KUEUE_VERSION}'s scheduler benchmark runner and minimalkueue "
        "(for benchmarks.side_by_side)",
    )
    args = parser.parse_args(argv)
    started = time.monotonic()

    def report(msg: str) -> None:
        print(f"[k8s-tools] {msg}", flush=True)

    try:
        tools: Tools | KueueBenchTools = ensure_tools(report)
        for field in dataclasses.fields(tools):
            report(f"{field.name}: {getattr(tools, field.name)}")
        if args.kueue:
            tools = ensure_kueue_bench_tools(report)
            for field in dataclasses.fields(tools):
                report(f"{field.name}: {getattr(tools, field.name)}")
    except ToolchainUnavailable as exc:
        print(f"[k8s-tools] FAILED: {exc}", file=sys.stderr)
        return 1
    report(f"ready in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
