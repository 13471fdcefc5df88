"""A per-test world on the shared control plane: its own namespaces (one prefix), its own source
namespace and its own syncjob instance, so tests never see each other's copies."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from syncjob import cli
from tests.factories import docker_config
from tests.leakscan import ALL_OUTPUTS

ROOT = Path(__file__).resolve().parent.parent
KPACK_CRDS = ROOT / "tests" / "manifests" / "kpack-crds.yaml"
INSTALL_MANIFEST = ROOT / "k8s" / "cronjob.yaml"
SYNC_LABEL = {"com.vmware.tanzu.buildservice.sync": "true"}


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll until `condition()` is truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def install_crds(api: k8s.ApiClient, docs: list[dict[str, Any]]) -> None:
    """Create these CRDs (those that exist are left) and wait until every one is established."""
    ext = k8s.ApiextensionsV1Api(api)
    for doc in docs:
        try:
            ext.create_custom_resource_definition(doc)
        except ApiException as e:
            if e.status != 409:
                raise

    def established() -> bool:
        for doc in docs:
            crd = ext.read_custom_resource_definition(doc["metadata"]["name"])
            conditions = {c.type: c.status for c in (crd.status.conditions or [])}
            if conditions.get("Established") != "True":
                return False
        return True

    wait_for(established, "CRDs to be established")


def secretsync_crd() -> dict[str, Any]:
    """The CRD exactly as k8s/cronjob.yaml ships it."""
    docs = yaml.safe_load_all(INSTALL_MANIFEST.read_text())
    return next(d for d in docs if d and d.get("kind") == "CustomResourceDefinition")


def install_kpack_crds(api: k8s.ApiClient) -> None:
    install_crds(api, [d for d in yaml.safe_load_all(KPACK_CRDS.read_text()) if d])
    discovery = k8s.CustomObjectsApi(api)
    wait_for(lambda: _served(discovery), "kpack.io/v1alpha2 to be served")


def _served(api: k8s.CustomObjectsApi) -> bool:
    try:
        api.list_cluster_custom_object("kpack.io", "v1alpha2", "images", limit=1)
        return True
    except ApiException:
        return False


@dataclass
class RunResult:
    code: int
    stdout: str
    stderr: str

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    @property
    def summary(self) -> dict[str, Any]:
        return self.doc["summary"]

    def actions(self, kind: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.doc["actions"] if kind is None or a["action"] == kind]

    def writes(self) -> int:
        verbs = self.summary["requests"]
        return sum(verbs.get(v, 0) for v in ("create", "update", "delete", "patch"))


@dataclass
class SyncEnv:
    """Its own SecretSync (named after the prefix: the instance), source namespace and target namespaces."""

    cluster: Any
    prefix: str = field(default_factory=lambda: "s" + uuid.uuid4().hex[:7])
    outputs: list[str] = field(default_factory=list)  # everything every run printed, for leak scans

    def __post_init__(self) -> None:
        self.api = self.cluster.admin_client()
        self.core = k8s.CoreV1Api(self.api)
        self.custom = k8s.CustomObjectsApi(self.api)
        self.source_ns = self.namespace("admin")
        self.set_policy()

    # the SecretSync
    def base_spec(self) -> dict[str, Any]:
        return {"sources": {"namespace": self.source_ns}, "targets": {"include": [f"{self.prefix}-*"]}}

    def set_policy(self, name: str | None = None, **fields: Any) -> dict[str, Any]:
        """Create or replace a SecretSync (default: this env's) whose spec is the base spec with `fields`
        merged in (`sources` and `targets` key by key). Returns the object as the server stored it."""
        spec = self.base_spec()
        for key, value in fields.items():
            if key in ("sources", "targets") and isinstance(value, dict):
                spec[key] = {**spec[key], **value}
            else:
                spec[key] = value
        return self.put_policy({"metadata": {"name": name or self.prefix}, "spec": spec})

    def put_policy(self, obj: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": "syncjob.dev/v1alpha1", "kind": "SecretSync", **obj}
        name = body["metadata"]["name"]
        try:
            existing = self.custom.get_cluster_custom_object("syncjob.dev", "v1alpha1", "secretsyncs", name)
        except ApiException as e:
            if e.status != 404:
                raise
            return dict(self.custom.create_cluster_custom_object("syncjob.dev", "v1alpha1", "secretsyncs", body))
        body["metadata"] = {**body["metadata"], "resourceVersion": existing["metadata"]["resourceVersion"]}
        return dict(self.custom.replace_cluster_custom_object("syncjob.dev", "v1alpha1", "secretsyncs", name, body))

    def policy_object(self, name: str | None = None) -> dict[str, Any]:
        return dict(
            self.custom.get_cluster_custom_object("syncjob.dev", "v1alpha1", "secretsyncs", name or self.prefix)
        )

    def only_my_policies(self) -> None:
        """Delete every SecretSync that is not this env's (other tests' leftovers), for flagless runs."""
        items = self.custom.list_cluster_custom_object("syncjob.dev", "v1alpha1", "secretsyncs")["items"]
        for item in items:
            name = item["metadata"]["name"]
            if not name.startswith(self.prefix):
                self.custom.delete_cluster_custom_object("syncjob.dev", "v1alpha1", "secretsyncs", name)

    # namespaces and builds
    def namespace(
        self, suffix: str, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None
    ) -> str:
        name = f"{self.prefix}-{suffix}"
        meta = k8s.V1ObjectMeta(name=name, labels=labels, annotations=annotations)
        self.core.create_namespace(k8s.V1Namespace(metadata=meta))
        return name

    def build_namespace(self, suffix: str, kind: str = "images") -> str:
        name = self.namespace(suffix)
        self.add_build(name, kind)
        return name

    def add_build(self, namespace: str, plural: str = "images", name: str = "app") -> None:
        kind = {"images": "Image", "builds": "Build"}[plural]
        body = {"apiVersion": "kpack.io/v1alpha2", "kind": kind, "metadata": {"name": name}, "spec": {}}
        self.custom.create_namespaced_custom_object("kpack.io", "v1alpha2", namespace, plural, body)

    def remove_builds(self, namespace: str) -> None:
        for plural in ("images", "builds"):
            items = self.custom.list_namespaced_custom_object("kpack.io", "v1alpha2", namespace, plural)["items"]
            for item in items:
                name = item["metadata"]["name"]
                self.custom.delete_namespaced_custom_object("kpack.io", "v1alpha2", namespace, plural, name)

    # secrets
    def put_source(
        self,
        name: str = "regcred",
        *,
        data: dict[str, str] | None = None,
        type: str = "kubernetes.io/dockerconfigjson",
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        namespace: str | None = None,
    ) -> k8s.V1Secret:
        namespace = namespace or self.source_ns
        body = k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(
                name=name, labels=SYNC_LABEL if labels is None else labels, annotations=annotations
            ),
            type=type,
            data=data if data is not None else docker_config(),
        )
        try:
            existing = self.core.read_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status != 404:
                raise
            return self.core.create_namespaced_secret(namespace, body)
        body.metadata.resource_version = existing.metadata.resource_version
        return self.core.replace_namespaced_secret(name, namespace, body)

    def secret(self, namespace: str, name: str = "regcred") -> k8s.V1Secret | None:
        try:
            return self.core.read_namespaced_secret(name, namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def copies(self) -> dict[str, k8s.V1Secret]:
        """This env's copies, keyed by namespace/name."""
        selector = f"app.kubernetes.io/managed-by=syncjob,syncjob.dev/instance={self.prefix}"
        items = self.core.list_secret_for_all_namespaces(label_selector=selector).items
        return {f"{s.metadata.namespace}/{s.metadata.name}": s for s in items}

    # running syncjob
    def argv(self, *extra: str, command: str = "run", policy: str | None = None) -> list[str]:
        kubeconfig = str(self.cluster.kubeconfig)
        return [command, "--kubeconfig", kubeconfig, "--policy", policy or self.prefix, "-o", "json", *extra]

    def run(
        self, *extra: str, kubeconfig: Path | None = None, policy: str | None = None, command: str = "run"
    ) -> RunResult:
        """syncjob in-process (fast), stdout and stderr captured."""
        argv = self.argv(*extra, policy=policy, command=command)
        if kubeconfig is not None:
            argv[argv.index("--kubeconfig") + 1] = str(kubeconfig)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main(argv, environ={})
        result = RunResult(code, out.getvalue(), err.getvalue())
        self.outputs += [result.stdout, result.stderr]
        ALL_OUTPUTS.extend([result.stdout, result.stderr])
        return result

    def run_process(self, *extra: str, env: dict[str, str] | None = None, argv: list[str] | None = None) -> RunResult:
        """syncjob as a user runs it: a separate process."""
        proc = subprocess.run(
            [sys.executable, "-m", "syncjob", *(argv if argv is not None else self.argv(*extra))],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=ROOT,
            check=False,
        )
        result = RunResult(proc.returncode, proc.stdout, proc.stderr)
        self.outputs += [result.stdout, result.stderr]
        ALL_OUTPUTS.extend([result.stdout, result.stderr])
        return result


@pytest.fixture(scope="session")
def kpack(cluster: Any) -> None:
    """kpack's Build and Image kinds, installed once per session."""
    with cluster.admin_client() as api:
        install_kpack_crds(api)


@pytest.fixture(scope="session")
def secretsync_api(cluster: Any) -> None:
    """The SecretSync CRD from the install manifest, installed once per session."""
    with cluster.admin_client() as api:
        install_crds(api, [secretsync_crd()])
        custom = k8s.CustomObjectsApi(api)
        wait_for(lambda: _lists(custom, "syncjob.dev", "v1alpha1", "secretsyncs"), "secretsyncs to be served")


def _lists(api: k8s.CustomObjectsApi, group: str, version: str, plural: str) -> bool:
    try:
        api.list_cluster_custom_object(group, version, plural, limit=1)
        return True
    except ApiException:
        return False


@pytest.fixture
def env(cluster: Any, kpack: None, secretsync_api: None) -> SyncEnv:
    return SyncEnv(cluster)
