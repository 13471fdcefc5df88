"""Bad input gets a clear answer: the message names the object and the fix, the run goes on where
it can, and the exit code says partial (1) or unusable (2). README's troubleshooting table lists each."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from kubernetes import client as k8s

from tests.factories import b64, docker_config
from tests.sync_env import SyncEnv, wait_for


def bind(env: SyncEnv, subject_ns: str, subject: str, role: str, *, namespace: str | None = None) -> None:
    rbac = k8s.RbacAuthorizationV1Api(env.api)
    subjects = [k8s.RbacV1Subject(kind="ServiceAccount", name=subject, namespace=subject_ns)]
    ref = k8s.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role)
    name = f"{env.prefix}-{subject}-{namespace or 'cluster'}"
    if namespace:
        rbac.create_namespaced_role_binding(
            namespace, k8s.V1RoleBinding(metadata=k8s.V1ObjectMeta(name=name), subjects=subjects, role_ref=ref)
        )
    else:
        rbac.create_cluster_role_binding(
            k8s.V1ClusterRoleBinding(metadata=k8s.V1ObjectMeta(name=name), subjects=subjects, role_ref=ref)
        )


def cluster_role(env: SyncEnv, suffix: str, rules: list[k8s.V1PolicyRule]) -> str:
    name = f"{env.prefix}-{suffix}"
    k8s.RbacAuthorizationV1Api(env.api).create_cluster_role(
        k8s.V1ClusterRole(metadata=k8s.V1ObjectMeta(name=name), rules=rules)
    )
    return name


POLICY_RULES = [
    k8s.V1PolicyRule(api_groups=["syncjob.dev"], resources=["secretsyncs"], verbs=["get", "list"]),
    k8s.V1PolicyRule(api_groups=["syncjob.dev"], resources=["secretsyncs/status"], verbs=["patch"]),
]
READ_RULES = [
    *POLICY_RULES,
    k8s.V1PolicyRule(api_groups=[""], resources=["namespaces", "secrets"], verbs=["get", "list"]),
    k8s.V1PolicyRule(api_groups=["kpack.io"], resources=["builds", "images"], verbs=["get", "list"]),
]
WRITE_RULES = [k8s.V1PolicyRule(api_groups=[""], resources=["secrets"], verbs=["create", "update", "delete"])]


def test_forbidden_to_list_is_unusable_and_says_which_rule(env: SyncEnv) -> None:
    env.build_namespace("a")
    env.put_source()
    nobody = env.cluster.service_account_kubeconfig(env.source_ns, "nobody")
    result = env.run(kubeconfig=nobody)
    assert result.code == 2
    assert "forbidden" in result.stderr and "get and list on secretsyncs.syncjob.dev" in result.stderr
    # May read its SecretSync, not the Secrets: the policy is unusable (exit 2), and the message says which rule.
    bind(env, env.source_ns, "nobody", cluster_role(env, "policy-only", POLICY_RULES))
    # (RBAC takes effect when the server's informer sees the binding: poll, no sleep.)
    result = wait_for(lambda: (r := env.run(kubeconfig=nobody)).code == 2 and "on secrets" in r.stderr and r,
                      "the binding to take effect")  # fmt: skip
    assert "forbidden" in result.stderr
    assert "k8s/cronjob.yaml" in result.stderr
    ready = next(c for c in env.policy_object()["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ReadFailed")


def test_forbidden_to_write_one_namespace_fails_that_object_only(env: SyncEnv) -> None:
    a, b, locked = env.build_namespace("a"), env.build_namespace("b"), env.build_namespace("locked")
    env.put_source()
    bind(env, env.source_ns, "writer", cluster_role(env, "read", READ_RULES))
    write = cluster_role(env, "write", WRITE_RULES)
    for namespace in (a, b, env.source_ns):  # the source namespace: for the proof key
        bind(env, env.source_ns, "writer", write, namespace=namespace)
    kubeconfig = env.cluster.service_account_kubeconfig(env.source_ns, "writer")
    result = env.run(kubeconfig=kubeconfig)
    assert result.code == 1
    assert sorted(env.copies()) == sorted([f"{a}/regcred", f"{b}/regcred"])
    (failed,) = [x for x in result.actions() if x["result"] == "failed"]
    assert failed["namespace"] == locked
    assert "403" in failed["error"] and f"create Secret {locked}/regcred" in failed["error"]


def test_missing_kubeconfig_is_a_configuration_error(env: SyncEnv, tmp_path: Path) -> None:
    result = env.run(kubeconfig=tmp_path / "nope.yaml")
    assert result.code == 2
    assert "nope.yaml does not exist" in result.stderr and "--kubeconfig" in result.stderr


def test_api_server_down_is_unusable(env: SyncEnv, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    text = Path(env.cluster.kubeconfig).read_text().replace(env.cluster.server, f"https://127.0.0.1:{port}")
    down = tmp_path / "down.kubeconfig"
    down.write_text(text)
    result = env.run("--timeout", "3", kubeconfig=down)
    assert result.code == 2
    assert "cannot reach the API server" in result.stderr and f"127.0.0.1:{port}" in result.stderr


def test_every_bad_source_is_named_with_its_fix_and_the_rest_goes_on(env: SyncEnv) -> None:
    a = env.build_namespace("a")
    configs = {
        "creds-store": {"auths": {}, "credsStore": "desktop"},
        "empty-auths": {"auths": {}},
        "not-base64": {"auths": {"r.io": {"auth": "@@@"}}},
        "no-colon": {"auths": {"r.io": {"auth": b64("justauser")}}},
        "not-an-object": {"auths": ["r.io"]},  # the server itself refuses a top level that is not an object
    }
    for name, config in configs.items():
        env.put_source(name, data={".dockerconfigjson": b64(json.dumps(config))})
    env.put_source(
        "legacy-wrong-shape", type="kubernetes.io/dockercfg", data={".dockercfg": b64(json.dumps({"auths": {}}))}
    )
    env.put_source("good")
    result = env.run()
    assert result.code == 1
    problems = {p["source"].split("/")[1]: p["message"] for p in result.summary["problems"]}
    assert "credsStore" in problems["creds-store"] and "docker login" in problems["creds-store"]
    assert "empty 'auths'" in problems["empty-auths"]
    assert "not valid base64" in problems["not-base64"]
    assert "user:password" in problems["no-colon"]
    assert "'auths' is not a JSON object" in problems["not-an-object"]
    assert "kubernetes.io/dockerconfigjson" in problems["legacy-wrong-shape"]
    assert list(env.copies()) == [f"{a}/good"]  # the good source still went out


def test_mass_deletion_guard_holds_deletes_applies_the_rest_and_exits_1(env: SyncEnv) -> None:
    targets = [env.build_namespace(f"n{i:02d}") for i in range(12)]
    env.put_source("doomed")
    env.put_source("kept")
    assert env.run().code == 0
    env.core.delete_namespaced_secret("doomed", env.source_ns)
    env.put_source("kept", data=docker_config(password="rotated"))
    held = env.run()
    assert held.code == 1
    assert len(held.actions("hold")) == 12 and held.actions("delete") == []
    assert "mass-deletion guard" in held.stderr and "--max-delete 12" in held.stderr
    assert len(env.copies()) == 24  # nothing deleted...
    assert held.summary["actions"]["update"] == {"done": 12}  # ...but the rest was applied
    released = env.run("--max-delete", "12")
    assert released.code == 0
    assert sorted(env.copies()) == sorted(f"{t}/kept" for t in targets)
