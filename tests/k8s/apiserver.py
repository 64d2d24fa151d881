"""A real etcd + kube-apiserver on loopback, with certificates, tokens and a kubeconfig.

Why this exists: the autoscaler's optimistic-concurrency patches, the CRD schemas and the
Helm chart's RBAC can only be trusted against the real API server code. This module starts
one, configured like a small production control plane:

- TLS with a CA generated per run (openssl), serving certificate for 127.0.0.1/localhost;
- static bearer tokens (``--token-auth-file``): ``admin`` (group ``system:masters``) and
  ``tenant`` (no groups, so RBAC denies it everything not granted explicitly);
- ``--authorization-mode=RBAC`` (SubjectAccessReview works) and the default admission
  plugins, including ServiceAccount: with no controller-manager running, whoever creates a
  namespace must create its ``default`` ServiceAccount (``create_namespace`` does);
- service-account token signing keys, so projected service-account tokens are issued.

No controller-manager, scheduler or kubelet run: Pods stay Pending unless someone (the node
simulator) writes their status.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from benchmarks.ports import free_port
from tests.k8s.process import ManagedProcess, wait_for
from tests.k8s.toolchain import Tools

START_TIMEOUT_S = 90.0
"""etcd and the API server are ready in 5-15 s on 2 idle cores; a loaded CI box is slower."""


@dataclasses.dataclass(frozen=True, slots=True)
class ApiServer:
    """A running control plane. ``kubeconfig`` authenticates as ``admin``."""

    url: str
    kubeconfig: Path
    tenant_kubeconfig: Path
    ca_file: Path
    admin_token: str
    tenant_token: str
    workdir: Path
    etcd: ManagedProcess
    apiserver: ManagedProcess
    started_in_s: float

    def stop(self) -> None:
        self.apiserver.stop()
        self.etcd.stop()

    def new_api_client(self, *, tenant: bool = False) -> Any:
        """A ``kubernetes.client.ApiClient`` for this server (admin unless ``tenant``)."""
        from kubernetes import config

        path = self.tenant_kubeconfig if tenant else self.kubeconfig
        return config.new_client_from_config(config_file=str(path))  # type: ignore[no-untyped-call]


def _openssl(args: list[str], cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {proc.stderr.strip()}")


def generate_pki(pki: Path) -> None:
    """CA, serving certificate for 127.0.0.1/localhost, and service-account key pair."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is needed to generate the test API server's certificates")
    pki.mkdir(parents=True, exist_ok=True)
    _openssl(["genrsa", "-out", "ca.key", "2048"], pki)
    _openssl(
        [
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-days",
            "2",
            "-subj",
            "/CN=ray-queue-test-ca",
            "-out",
            "ca.crt",
        ],
        pki,
    )
    _openssl(["genrsa", "-out", "serving.key", "2048"], pki)
    _openssl(
        [
            "req",
            "-new",
            "-key",
            "serving.key",
            "-subj",
            "/CN=kube-apiserver",
            "-out",
            "serving.csr",
        ],
        pki,
    )
    (pki / "serving.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n"
    )
    _openssl(
        [
            "x509",
            "-req",
            "-in",
            "serving.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "serving.ext",
            "-out",
            "serving.crt",
        ],
        pki,
    )
    _openssl(["genrsa", "-out", "sa.key", "2048"], pki)
    _openssl(["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"], pki)


def write_kubeconfig(path: Path, *, url: str, ca_file: Path, token: str, user: str) -> None:
    """A kubeconfig (JSON is valid YAML) for one user; helm, the operator and the client read it."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "ray-queue-test",
                "cluster": {"server": url, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "ray-queue-test", "user": user}}],
        "current-context": user,
    }
    path.write_text(json.dumps(doc, indent=2))
    path.chmod(0o600)


def _ready(url: str, ca_file: Path, token: str) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca_file))
    req = urllib.request.Request(f"{url}/readyz", headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
        return bool(resp.status == 200 and resp.read().strip() == b"ok")


def _etcd_healthy(client_url: str) -> bool:
    with urllib.request.urlopen(f"{client_url}/health", timeout=5) as resp:
        return bool(json.loads(resp.read()).get("health") == "true")


def start_apiserver(tools: Tools, *, workdir: Path | None = None) -> ApiServer:
    """Start etcd and kube-apiserver; return once ``/readyz`` says ok. Caller must ``stop()``."""
    started = time.monotonic()
    work = workdir or Path(tempfile.mkdtemp(prefix="rq-k8s-"))
    pki = work / "pki"
    generate_pki(pki)

    admin_token = secrets.token_hex(16)
    tenant_token = secrets.token_hex(16)
    (pki / "tokens.csv").write_text(
        f'{admin_token},admin,uid-admin,"system:masters"\n{tenant_token},tenant,uid-tenant\n'
    )

    etcd_port, peer_port = free_port(), free_port()
    etcd_url = f"http://127.0.0.1:{etcd_port}"
    etcd = ManagedProcess(
        "etcd",
        [
            str(tools.etcd),
            "--name=rq-test",
            f"--data-dir={work / 'etcd-data'}",
            f"--listen-client-urls={etcd_url}",
            f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=rq-test=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync",  # test data: durability is not worth the disk latency
            "--log-level=warn",
        ],
        work / "etcd.log",
    )
    apiserver: ManagedProcess | None = None
    try:
        wait_for(
            lambda: etcd.check_alive() and _etcd_healthy(etcd_url),
            START_TIMEOUT_S,
            what="etcd /health",
        )
        port = free_port()
        url = f"https://127.0.0.1:{port}"
        apiserver = ManagedProcess(
            "kube-apiserver",
            [
                str(tools.kube_apiserver),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--allow-privileged=true",
                # The `kubernetes` Service's Endpoints may not point at loopback; with no
                # in-cluster clients there is nothing to reconcile.
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=1",
            ],
            work / "kube-apiserver.log",
        )
        ca_file = pki / "ca.crt"
        wait_for(
            lambda: (
                apiserver is not None
                and apiserver.check_alive()
                and _ready(url, ca_file, admin_token)
            ),
            START_TIMEOUT_S,
            what="kube-apiserver /readyz",
        )
    except BaseException as exc:
        if apiserver is not None:
            apiserver.stop()
        etcd.stop()
        logs = "\n".join(
            f"--- {p.name} ---\n{p.log_tail()}" for p in (etcd, apiserver) if p is not None
        )
        raise RuntimeError(f"the test control plane did not start: {exc}\n{logs}") from exc

    kubeconfig = work / "kubeconfig"
    tenant_kubeconfig = work / "kubeconfig-tenant"
    write_kubeconfig(kubeconfig, url=url, ca_file=ca_file, token=admin_token, user="admin")
    write_kubeconfig(tenant_kubeconfig, url=url, ca_file=ca_file, token=tenant_token, user="tenant")
    return ApiServer(
        url=url,
        kubeconfig=kubeconfig,
        tenant_kubeconfig=tenant_kubeconfig,
        ca_file=ca_file,
        admin_token=admin_token,
        tenant_token=tenant_token,
        workdir=work,
        etcd=etcd,
        apiserver=apiserver,
        started_in_s=time.monotonic() - started,
    )


def create_namespace(api_client: Any, name: str, *, timeout_s: float = 30.0) -> None:
    """Create ``name`` and its ``default`` ServiceAccount (no controller-manager runs)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        core.create_namespaced_service_account(
            name, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
        )
    except ApiException as exc:
        if exc.status != 409:
            raise
    wait_for(
        lambda: core.read_namespaced_service_account("default", name),
        timeout_s,
        what=f"ServiceAccount {name}/default",
    )


def delete_namespace(api_client: Any, name: str) -> None:
    """Delete ``name``'s objects and the namespace.

    Without a controller-manager the namespace controller never empties a terminating
    namespace, so the objects the harness knows about are deleted explicitly first and the
    namespace is finalized through the ``/finalize`` subresource, as the controller would.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    for group, version, plural in (
        ("ray.io", "v1", "rayclusters"),
        ("autoscaling.x-k8s.io", "v1", "provisioningrequests"),
    ):
        try:
            custom.delete_collection_namespaced_custom_object(group, version, name, plural)
        except ApiException as exc:
            if exc.status not in (404, 405):
                raise
    try:
        core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
        core.delete_namespace(name)
        ns = core.read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    if ns.spec is not None:
        ns.spec.finalizers = []
    try:
        core.replace_namespace_finalize(name, ns)
    except ApiException as exc:
        if exc.status != 404:
            raise
