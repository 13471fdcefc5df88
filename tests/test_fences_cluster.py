"""k8s/fences.yaml on the real API server: only syncjob makes copies, and syncjob only makes copies.
Also: values never leave the process, even when an admission policy quotes them back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.controlplane.cluster import ControlPlane
from tests.factories import b64, seed
from tests.sync_env import ROOT, SyncEnv, install_crds, wait_for
from tests.test_deploy_cluster import NAMESPACE, SERVICE_ACCOUNT, deployed, dynamic, sa_kubeconfig  # noqa: F401

FENCES = ROOT / "k8s" / "fences.yaml"
LABELS = {"app.kubernetes.io/managed-by": "syncjob", "syncjob.dev/instance": "whatever"}
VAP = ("admissionregistration.k8s.io", "v1")
ANY_OBJECT = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def fence_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(FENCES.read_text()) if d]


def _plural(doc: dict[str, Any]) -> str:
    return "validatingadmissionpolicies" if doc["kind"] == "ValidatingAdmissionPolicy" else (
        "validatingadmissionpolicybindings"
    )  # fmt: skip


def _refused(call: Any) -> ApiException:
    with pytest.raises(ApiException) as raised:
        call()
    assert raised.value.status in (403, 422), raised.value.body
    return raised.value


@pytest.fixture
def fences(cluster: ControlPlane, deployed: object) -> Iterator[None]:  # noqa: F811
    """The shipped fences, on for one test, then off again (they are cluster-wide)."""
    with cluster.admin_client() as api:
        custom = k8s.CustomObjectsApi(api)
        for doc in fence_docs():
            custom.create_cluster_custom_object(*VAP, _plural(doc), doc)
        probe = cluster.new_namespace("fence-probe")

        def effective() -> bool:  # policies take effect when the server's informers see them
            body = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="probe", labels=LABELS))
            try:
                k8s.CoreV1Api(api).create_namespaced_secret(probe, body, dry_run="All")
            except ApiException as e:
                return e.status == 403
            return False

        wait_for(effective, "the fences to take effect")
        try:
            yield
        finally:
            for doc in reversed(fence_docs()):
                custom.delete_cluster_custom_object(*VAP, _plural(doc), doc["metadata"]["name"])


def tenant_core(env: SyncEnv, namespace: str) -> k8s.CoreV1Api:
    """A tenant ServiceAccount that may do anything with Secrets in its own namespace, and nothing else."""
    rbac = k8s.RbacAuthorizationV1Api(env.api)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "secrets-admin"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["*"]}],
    })  # fmt: skip
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "tenant"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "secrets-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": namespace}],
    })  # fmt: skip
    api = env.cluster.service_account_client(namespace, "tenant")
    core = k8s.CoreV1Api(api)
    wait_for(lambda: _can_list(core, namespace), "the tenant's Role to take effect")
    return core


def _can_list(core: k8s.CoreV1Api, namespace: str) -> bool:
    try:
        core.list_namespaced_secret(namespace)
        return True
    except ApiException:
        return False


def test_a_tenant_cannot_forge_a_copy(env: SyncEnv, sa_kubeconfig: Path, fences: None) -> None:  # noqa: F811
    a = env.build_namespace("a")
    env.put_source()
    assert env.run(kubeconfig=sa_kubeconfig).code == 0  # a real copy, made by the job's identity
    tenant = tenant_core(env, a)
    forged = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="forged", labels=LABELS), string_data={"k": "v"})
    error = _refused(lambda: tenant.create_namespaced_secret(a, forged))
    assert "ValidatingAdmissionPolicy 'syncjob-copies-are-syncjobs'" in error.body
    plain = tenant.create_namespaced_secret(a, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="plain")))
    error = _refused(lambda: tenant.patch_namespaced_secret("plain", a, {"metadata": {"labels": LABELS}}))
    assert "syncjob-copies-are-syncjobs" in error.body and plain.metadata.name == "plain"
    # Cluster admins are not exempt either.
    _refused(lambda: env.core.create_namespaced_secret(a, forged))
    # Deleting a copy stays possible for whoever RBAC allows; the next run makes it again.
    tenant.delete_namespaced_secret("regcred", a)
    assert env.run(kubeconfig=sa_kubeconfig).code == 0 and env.secret(a) is not None


def test_the_job_identity_writes_only_copies(
    env: SyncEnv,
    cluster: ControlPlane,
    fences: None,
) -> None:
    a = env.namespace("a")
    env.core.create_namespaced_secret(a, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="theirs")))
    env.set_policy(types=["kubernetes.io/dockerconfigjson"])
    with cluster.service_account_client(NAMESPACE, SERVICE_ACCOUNT, create=False) as api:
        job = k8s.CoreV1Api(api)
        token = k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(
                name="stolen", labels=LABELS, annotations={"kubernetes.io/service-account-token": "x"}
            ),
            type="kubernetes.io/service-account-token",
        )
        token.metadata.annotations = {"kubernetes.io/service-account.name": "default"}
        error = _refused(lambda: job.create_namespaced_secret("kube-system", token, dry_run="All"))
        assert "syncjob-writes-only-copies" in error.body and "service-account-token" in error.body
        unlabelled = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="mine"))
        assert "syncjob-writes-only-copies" in _refused(lambda: job.create_namespaced_secret(a, unlabelled)).body
        take_over = {"metadata": {"labels": LABELS}}
        _refused(lambda: job.replace_namespaced_secret("theirs", a, _with(env.secret(a, "theirs"), take_over)))
        _refused(lambda: job.delete_namespaced_secret("theirs", a))
        wrong_type = k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name="copy", labels={**LABELS, "syncjob.dev/instance": env.prefix}),
            type="Opaque",
        )
        error = _refused(lambda: job.create_namespaced_secret(a, wrong_type))
        assert "syncjob-copy-types" in error.body and "does not allow copies of type Opaque" in error.body
    assert env.secret(a, "theirs") is not None


def _with(secret: k8s.V1Secret | None, patch: dict[str, Any]) -> k8s.V1Secret:
    assert secret is not None
    secret.metadata.labels = patch["metadata"]["labels"]
    return secret


def test_normal_runs_pass_every_fence(env: SyncEnv, sa_kubeconfig: Path, fences: None) -> None:  # noqa: F811
    a, b = env.build_namespace("a"), env.build_namespace("b")
    env.put_source()
    env.put_source("git", type="Opaque", data={"token": b64("t0k3n")})
    env.set_policy(types=["kubernetes.io/dockerconfigjson", "Opaque"])
    for args in ((), ("--dry-run=server",)):
        result = env.run(*args, kubeconfig=sa_kubeconfig)
        assert result.code == 0, result.stderr
    assert sorted(env.copies()) == sorted(f"{ns}/{n}" for ns in (a, b) for n in ("regcred", "git"))
    env.put_source("git", type="Opaque", data={"token": b64("rotated")})
    env.remove_builds(b)
    env.add_build(env.namespace("c"))
    result = env.run(kubeconfig=sa_kubeconfig)
    assert result.code == 0, result.stderr
    assert {k: sum(v.values()) for k, v in result.summary["actions"].items()} == {
        "create": 2, "delete": 2, "update": 1, "leave": 1,
    }  # fmt: skip


# --- values never leave ------------------------------------------------------------------------


ECHO = """
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: NAME}
spec:
  failurePolicy: Fail
  matchConstraints:
    namespaceSelector: {matchLabels: {echo-test: NAME}}
    resourceRules:
      - {apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["secrets"]}
  validations:
    - expression: "false"
      messageExpression: >-
        'refused: raw=' + string(object.data['token']) + ' chunks=' + string(object.data['token']).substring(0, 4)
        + '|' + string(object.data['token']).substring(4) + ' config=' + string(object.data['config'])
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: NAME}
spec: {policyName: NAME, validationActions: ["Deny"]}
"""


def test_an_admission_policy_that_quotes_the_data_never_gets_it_out(env: SyncEnv, tmp_path: Path) -> None:
    """A policy's message can quote the object's data: short values, raw, base64 and cut in pieces.
    None of it may reach stdout, stderr, the Events, the SecretSync's status or the metrics."""
    password, token = "pw7", b64("hunter22")  # short; and one that is base64 text itself
    config = json.dumps({"auths": {"r.example.com": {"auth": b64(f"u:{password}")}}})
    seed(password, token, config)
    pieces = [token[:4], token[4:], password]
    name = f"{env.prefix}-echo"
    docs = list(yaml.safe_load_all(ECHO.replace("NAME", name)))
    for doc in docs:
        env.custom.create_cluster_custom_object(*VAP, _plural(doc), doc)
    try:
        targets = [env.namespace(f"t{i}", labels={"echo-test": name}) for i in range(3)]
        for ns in targets:
            env.add_build(ns)
        env.put_source("leaky", type="Opaque", data={"token": b64(token), "config": b64(config)})
        env.set_policy(types=["Opaque"])
        textfile = tmp_path / "syncjob.prom"

        probe = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="probe"), data={"token": b64("x"), "config": b64("y")})

        def echoing() -> bool:  # the policy takes effect when the server's informers see it
            try:
                env.core.create_namespaced_secret(targets[0], probe, dry_run="All")
            except ApiException as e:
                return name in (e.body or "")
            return False

        wait_for(echoing, "the echoing policy to take effect")
        result = env.run("--events", "--metrics-textfile", str(textfile))
        assert result.code == 1
        assert [a["result"] for a in result.actions("create")] == ["failed"] * 3
        error = result.actions("create")[0]["error"]
        assert f"ValidatingAdmissionPolicy '{name}'" in error and "HTTP 422 Invalid" in error
        events = env.core.list_namespaced_event(env.source_ns).items
        outputs = [
            result.stdout,
            result.stderr,
            json.dumps(env.policy_object().get("status")),
            textfile.read_text(),
            *(e.message or "" for e in events),
        ]
        for text in outputs:
            for value in (password, token, config, *pieces, b64(token), b64(config)):
                assert value not in text, (value, text[:200])
        assert any(e.reason == "SyncFailed" for e in events)
    finally:
        for doc in docs:
            env.custom.delete_cluster_custom_object(*VAP, _plural(doc), doc["metadata"]["name"])


# --- without fences: what syncjob can prove, and a guard no tenant can dilute or freeze -----------


def _forge(env: SyncEnv, namespace: str, name: str, annotations: dict[str, str] | None = None) -> None:
    labels = {"app.kubernetes.io/managed-by": "syncjob", "syncjob.dev/instance": env.prefix}
    meta = k8s.V1ObjectMeta(name=name, labels=labels, annotations=annotations)
    env.core.create_namespaced_secret(namespace, k8s.V1Secret(metadata=meta, string_data={"k": "v"}))


def test_forged_copies_cannot_dilute_the_guard(env: SyncEnv) -> None:
    """200 Secrets with syncjob's labels made by a tenant, then the sync label removed from the source by
    mistake: the 24 real copies stay (the run is held, exit 1), and the forgeries are reported, untouched."""
    targets = [env.build_namespace(f"n{i:02d}") for i in range(24)]
    tenant = env.namespace("tenant")
    for i in range(200):
        _forge(env, tenant, f"forged-{i:03d}")
    env.put_source()
    first = env.run()
    assert first.code == 0 and len(env.copies()) == 24 + 200
    assert any("200 Secrets carry the labels" in n for n in first.summary["notes"])
    env.put_source(labels={})  # the mistake
    held = env.run()
    assert held.code == 1 and held.actions("delete") == [] and len(held.actions("hold")) == 24
    assert sorted(k for k in env.copies() if k.endswith("/regcred")) == sorted(f"{t}/regcred" for t in targets)
    assert len(env.copies()) == 224  # the forgeries too: never deleted


def test_forged_copies_in_one_namespace_cannot_freeze_garbage_collection(env: SyncEnv) -> None:
    """15 forged 'copies' with owner annotations in a namespace without builds must not hold an admin's
    legitimate opt-out elsewhere."""
    targets = [env.build_namespace(f"n{i}") for i in range(4)]
    env.put_source()
    env.run()
    copy = env.copies()[f"{targets[0]}/regcred"]
    tenant = env.namespace("tenant")
    owner = {k: v for k, v in copy.metadata.annotations.items() if k.startswith("syncjob.dev/source-")}
    for i in range(15):
        _forge(env, tenant, f"regcred-{i}", {**owner, "syncjob.dev/proof": "0" * 64})
    _forge(env, tenant, "regcred", dict(copy.metadata.annotations))  # a real copy's metadata, moved
    env.core.patch_namespace(targets[0], {"metadata": {"annotations": {"syncjob.dev/ignore": "true"}}})
    result = env.run()
    assert result.code == 0, result.stderr
    assert [(a["namespace"], a["result"]) for a in result.actions("delete")] == [(targets[0], "done")]
    assert len([k for k in env.copies() if k.startswith(f"{tenant}/")]) == 16


def test_copies_are_kept_when_the_build_kinds_are_emptied(env: SyncEnv) -> None:
    """A reinstall of the build operator: 8 copies, then no build anywhere for a while. Under the count
    rules, and held. The build kind is this test's own, so that it can be emptied cluster-wide."""
    group = f"{env.prefix}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"pipelines.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": "Pipeline", "plural": "pipelines", "singular": "pipeline", "listKind": "PipelineList"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": ANY_OBJECT}}],
        },
    }  # fmt: skip
    install_crds(env.api, [crd])
    targets = [env.namespace(f"n{i}") for i in range(8)]
    body = {"apiVersion": f"{group}/v1", "kind": "Pipeline", "metadata": {"name": "p"}}
    for ns in targets:
        wait_for(lambda ns=ns: _made(env, group, ns, body), "the build kind to be served")  # type: ignore[misc]
    env.put_source()
    env.set_policy(targets={"builds": [f"pipelines.{group}"]})
    assert env.run().code == 0 and len(env.copies()) == 8
    for ns in targets:
        env.custom.delete_namespaced_custom_object(group, "v1", ns, "pipelines", "p")
    held = env.run()
    assert held.code == 1 and len(held.actions("hold")) == 8
    assert any("no namespace holds a build" in n for n in held.summary["notes"])
    assert len(env.copies()) == 8


def _made(env: SyncEnv, group: str, namespace: str, body: dict[str, Any]) -> bool:
    try:
        env.custom.create_namespaced_custom_object(group, "v1", namespace, "pipelines", body)
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise
