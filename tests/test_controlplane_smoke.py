"""The test control plane behaves like a real cluster in the ways syncjob relies on."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from kubernetes import client

from tests.controlplane.cluster import ControlPlane, pinned_versions

T = TypeVar("T")

HOLD_FINALIZER = "syncjob.dev/test-hold"


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1) -> T:
    """Call probe until it returns something other than None; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def api_error(call: Callable[[], Any]) -> client.ApiException:
    with pytest.raises(client.ApiException) as info:
        call()
    return info.value


def body_of(exc: client.ApiException) -> dict[str, Any]:
    try:
        parsed = json.loads(exc.body or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def secret(name: str, **fields: Any) -> client.V1Secret:
    return client.V1Secret(metadata=client.V1ObjectMeta(name=name), **fields)


def test_server_version_is_pinned_release(cluster: ControlPlane, admin_api: client.ApiClient) -> None:
    k8s_version, _ = pinned_versions()
    minor = ".".join(k8s_version.split(".")[:2])  # v1.37
    info = client.VersionApi(admin_api).get_code()
    assert not info.git_version.startswith("v0.0.0"), (
        f"kube-apiserver reports {info.git_version}: it was built without the version -ldflags "
        "(scripts/build-controlplane stamps k8s.io/component-base/version); rebuild it"
    )
    assert info.git_version.startswith(minor + "."), info.git_version
    assert info.git_version == k8s_version


def test_unbound_service_account_cannot_list_secrets(cluster: ControlPlane, ns: str) -> None:
    with cluster.service_account_client(ns, "nobody") as api:
        whoami = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())
        assert whoami.status.user_info.username == f"system:serviceaccount:{ns}:nobody"
        exc = api_error(lambda: client.CoreV1Api(api).list_namespaced_secret(ns))
    assert exc.status == 403, exc.body
    assert body_of(exc).get("reason") == "Forbidden"


def test_dockerconfigjson_secret_with_invalid_json_is_rejected(core: client.CoreV1Api, ns: str) -> None:
    bad = secret(
        "pull",
        type="kubernetes.io/dockerconfigjson",
        string_data={".dockerconfigjson": "{not json"},
    )
    exc = api_error(lambda: core.create_namespaced_secret(ns, bad))
    assert exc.status == 422, exc.body
    assert ".dockerconfigjson" in exc.body

    good = secret(
        "pull",
        type="kubernetes.io/dockerconfigjson",
        string_data={".dockerconfigjson": json.dumps({"auths": {}})},
    )
    core.create_namespaced_secret(ns, good)


def test_secret_type_is_immutable(core: client.CoreV1Api, ns: str) -> None:
    created = core.create_namespaced_secret(ns, secret("s", type="Opaque", string_data={"k": "v"}))
    changed = secret("s", type="syncjob.dev/other", string_data={"k": "v"})
    changed.metadata.resource_version = created.metadata.resource_version
    exc = api_error(lambda: core.replace_namespaced_secret("s", ns, changed))
    assert exc.status == 422, exc.body
    assert "immutable" in exc.body
    assert core.read_namespaced_secret("s", ns).type == "Opaque"


def test_creating_in_terminating_namespace_is_refused(cluster: ControlPlane, core: client.CoreV1Api) -> None:
    ns = cluster.new_namespace("term")
    core.create_namespaced_config_map(
        ns,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="hold", finalizers=[HOLD_FINALIZER])),
    )
    try:
        core.delete_namespace(ns)

        def terminating() -> bool | None:
            return True if core.read_namespace(ns).status.phase == "Terminating" else None

        wait_for(f"namespace {ns} to be Terminating", terminating)

        # NamespaceLifecycle reads namespaces from an informer; allow it to catch up.
        attempt = 0

        def refused() -> client.ApiException | None:
            nonlocal attempt
            attempt += 1
            try:
                core.create_namespaced_secret(ns, secret(f"late-{attempt}", string_data={"k": "v"}))
            except client.ApiException as exc:
                return exc
            return None

        exc = wait_for("secret creation to be refused", refused, timeout=10)
        assert exc.status == 403, exc.body
        body = body_of(exc)
        causes = (body.get("details") or {}).get("causes") or []
        assert any(cause.get("reason") == "NamespaceTerminating" for cause in causes) or (
            "because it is being terminated" in body.get("message", "")
        ), exc.body
    finally:
        core.patch_namespaced_config_map("hold", ns, {"metadata": {"finalizers": None}})
    assert core.read_namespaced_config_map("hold", ns).metadata.finalizers in (None, [])


def test_paginated_list_returns_every_secret_once(core: client.CoreV1Api, ns: str) -> None:
    expected = {f"s-{i:02d}" for i in range(25)}
    for name in sorted(expected):
        core.create_namespaced_secret(ns, secret(name, string_data={"k": name}))

    seen: list[str] = []
    pages = 0
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"limit": 7}
        if token:
            kwargs["_continue"] = token
        page = core.list_namespaced_secret(ns, **kwargs)
        pages += 1
        assert len(page.items) <= 7
        seen.extend(item.metadata.name for item in page.items)
        token = page.metadata._continue
        if not token:
            break
        assert pages < 10, "pagination does not terminate"

    assert pages == 4
    assert len(seen) == len(set(seen)), "duplicates across pages"
    assert set(seen) == expected


def _pod(name: str, *, privileged: bool) -> client.V1Pod:
    if privileged:
        security = client.V1SecurityContext(privileged=True)
        pod_security = None
    else:
        security = client.V1SecurityContext(
            allow_privilege_escalation=False,
            capabilities=client.V1Capabilities(drop=["ALL"]),
        )
        pod_security = client.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=65532,
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        )
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1PodSpec(
            security_context=pod_security,
            containers=[client.V1Container(name="c", image="registry.invalid/pause:1", security_context=security)],
        ),
    )


def test_pod_security_admission_enforces_restricted(cluster: ControlPlane, core: client.CoreV1Api) -> None:
    ns = cluster.new_namespace("psa", labels={"pod-security.kubernetes.io/enforce": "restricted"})
    # The ServiceAccount admission plugin needs the pod's SA to exist (no controller creates it).
    cluster.ensure_service_account(ns, "default")

    exc = api_error(lambda: core.create_namespaced_pod(ns, _pod("privileged", privileged=True)))
    assert exc.status == 403, exc.body
    assert "violates PodSecurity" in exc.body

    # The control: a pod meeting the restricted profile is admitted.
    core.create_namespaced_pod(ns, _pod("restricted", privileged=False))


def test_kubeconfig_files_authenticate(cluster: ControlPlane, ns: str) -> None:
    from kubernetes import config

    sa_kubeconfig = cluster.service_account_kubeconfig(ns, "cli")
    for path, username in ((cluster.kubeconfig, "admin"), (sa_kubeconfig, f"system:serviceaccount:{ns}:cli")):
        with config.new_client_from_config(config_file=str(path), context="syncjob-test") as api:
            review = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())
        assert review.status.user_info.username == username
