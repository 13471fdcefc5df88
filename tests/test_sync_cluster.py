"""The sync engine end to end on the real control plane."""

from __future__ import annotations

import base64
import json

import pytest
from kubernetes import client as k8s

from tests.factories import b64, docker_config
from tests.sync_env import SyncEnv


def decoded(secret: k8s.V1Secret) -> dict[str, object]:
    return json.loads(base64.b64decode(secret.data[".dockerconfigjson"]))


def test_initial_sync_copies_only_data_type_and_syncjob_metadata(env: SyncEnv) -> None:
    a, b = env.build_namespace("a"), env.build_namespace("b", kind="builds")
    idle = env.namespace("idle")
    src = env.put_source(labels={**{"com.vmware.tanzu.buildservice.sync": "true"}, "argocd.argoproj.io/instance": "x"})
    # Give the source foreign metadata that must not travel.
    src.metadata.finalizers = ["example.com/keep"]
    src.metadata.annotations = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    src = env.core.replace_namespaced_secret("regcred", env.source_ns, src)

    result = env.run()
    assert result.code == 0, result.stderr
    assert sorted(env.copies()) == sorted([f"{a}/regcred", f"{b}/regcred"])
    assert env.secret(idle) is None
    copy = env.copies()[f"{a}/regcred"]
    assert copy.type == "kubernetes.io/dockerconfigjson"
    assert copy.data == src.data
    assert set(copy.metadata.labels) == {"app.kubernetes.io/managed-by", "syncjob.dev/instance"}
    assert copy.metadata.annotations["syncjob.dev/source-uid"] == src.metadata.uid
    assert copy.metadata.annotations["syncjob.dev/source-namespace"] == env.source_ns
    assert not copy.metadata.finalizers and not copy.metadata.owner_references
    assert "kubectl.kubernetes.io/last-applied-configuration" not in copy.metadata.annotations
    assert result.summary["actions"]["create"] == {"done": 2}

    src.metadata.finalizers = None  # let the namespace go when tests end
    env.core.replace_namespaced_secret("regcred", env.source_ns, src)


def test_steady_state_makes_no_writes_and_only_lists(env: SyncEnv) -> None:
    for i in range(3):
        env.build_namespace(f"n{i}")
    env.put_source()
    assert env.run().code == 0
    before = {k: s.metadata.resource_version for k, s in env.copies().items()}
    second = env.run()
    assert second.code == 0
    assert second.writes() == 0
    requests = second.summary["requests"]
    assert set(requests) <= {"get", "list", "discovery", "status", "total"}
    # GET its SecretSync; LIST sources, namespaces, 2 build kinds, copies; one discovery GET for every
    # build kind; one PATCH of the SecretSync's status. No write to any Secret.
    # (the two GETs: the SecretSync and the proof key).
    assert (requests["get"], requests["list"], requests["discovery"], requests["status"]) == (2, 5, 1, 1)
    assert {k: s.metadata.resource_version for k, s in env.copies().items()} == before


def test_source_edit_rolls_out_to_every_copy(env: SyncEnv) -> None:
    targets = [env.build_namespace(f"n{i}") for i in range(3)]
    env.put_source()
    env.run()
    env.put_source(data=docker_config(password="rotated"))
    result = env.run()
    assert result.code == 0
    assert result.summary["actions"]["update"] == {"done": 3}
    for ns in targets:
        secret = env.secret(ns)
        assert secret is not None
        assert decoded(secret)["auths"]["registry.example.com"]["auth"] == b64("robot:rotated")


def test_copy_deleted_by_hand_comes_back_and_edited_copy_is_repaired(env: SyncEnv) -> None:
    a, b = env.build_namespace("a"), env.build_namespace("b")
    env.put_source()
    env.run()
    env.core.delete_namespaced_secret("regcred", a)
    edited = env.secret(b)
    assert edited is not None
    edited.data = docker_config(password="tampered")
    edited.metadata.labels["extra"] = "someone"
    env.core.replace_namespaced_secret("regcred", b, edited)

    result = env.run()
    assert result.code == 0
    assert {(x["action"], x["namespace"]) for x in result.actions() if x["action"] != "leave"} == {
        ("create", a),
        ("update", b),
    }
    repaired = env.secret(b)
    assert repaired is not None
    assert decoded(repaired)["auths"]["registry.example.com"]["auth"] == b64("robot:s3cret")
    assert "extra" not in repaired.metadata.labels
    assert env.secret(a) is not None


def test_unlabelled_or_deleted_source_takes_its_copies_with_it(env: SyncEnv) -> None:
    targets = [env.build_namespace(f"n{i}") for i in range(2)]
    env.put_source("one")
    env.put_source("two")
    env.run()
    assert len(env.copies()) == 4
    env.put_source("one", labels={})  # unlabel
    env.core.delete_namespaced_secret("two", env.source_ns)
    result = env.run()
    assert result.code == 0, result.stderr
    assert env.copies() == {}
    reasons = {x["reason"] for x in result.actions("delete")}
    assert reasons == {"source deleted, unlabelled or no longer selected"}
    assert all(env.secret(ns, "one") is None for ns in targets)


def test_a_selected_source_that_would_lose_every_copy_is_held(env: SyncEnv) -> None:
    """An exclude that catches every target (a typo) must not empty the cluster of a source still in use."""
    targets = [env.build_namespace(f"n{i}") for i in range(3)]
    env.put_source()
    env.run()
    env.set_policy(targets={"exclude": [f"{env.prefix}-n*"]})
    held = env.run()
    assert held.code == 1 and len(held.actions("hold")) == 3 and held.actions("delete") == []
    assert "is still selected, yet this run would delete every one of its 3 copies" in held.stderr
    assert sorted(env.copies()) == sorted(f"{t}/regcred" for t in targets)
    assert env.run("--max-delete", "3").code == 0 and env.copies() == {}


def test_namespaces_follow_their_builds(env: SyncEnv) -> None:
    a = env.build_namespace("a")
    env.put_source()
    env.run()
    env.remove_builds(a)
    late = env.namespace("late")
    env.add_build(late, "builds")
    result = env.run()
    assert result.code == 0
    assert list(env.copies()) == [f"{late}/regcred"]
    (delete,) = result.actions("delete")
    assert delete["namespace"] == a and "no builds" in delete["reason"]


def test_unmanaged_same_name_secret_is_reported_and_untouched(env: SyncEnv) -> None:
    a = env.build_namespace("a")
    theirs = env.core.create_namespaced_secret(
        a, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="regcred"), type="Opaque", data={"x": b64("mine")})
    )
    env.put_source()
    for first in (True, False):
        result = env.run()
        assert result.code == 0
        (conflict,) = result.actions("conflict")
        assert conflict["namespace"] == a and "not created by syncjob" in conflict["reason"]
        assert result.writes() == (1 if first else 0)  # the first run makes its proof key, nothing else
        assert result.actions("create") == []
    after = env.secret(a)
    assert after is not None and after.metadata.resource_version == theirs.metadata.resource_version


def test_type_change_is_a_recreate(env: SyncEnv) -> None:
    a = env.build_namespace("a")
    env.put_source()
    env.run()
    old_uid = env.copies()[f"{a}/regcred"].metadata.uid
    env.core.delete_namespaced_secret("regcred", env.source_ns)
    legacy = {".dockercfg": b64(json.dumps({"r.example.com": {"auth": b64("u:p")}}))}
    env.put_source(type="kubernetes.io/dockercfg", data=legacy)
    result = env.run()
    assert result.code == 0, result.stderr
    assert [x["action"] for x in result.actions() if x["namespace"] == a] == ["recreate"]
    copy = env.copies()[f"{a}/regcred"]
    assert copy.type == "kubernetes.io/dockercfg" and copy.metadata.uid != old_uid


def test_terminating_namespace_is_skipped(env: SyncEnv) -> None:
    dying = env.build_namespace("dying")
    # Hold the namespace in Terminating: a finalizer on an object inside it.
    env.core.create_namespaced_config_map(
        dying, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="hold", finalizers=["syncjob.dev/test-hold"]))
    )
    env.core.delete_namespace(dying)
    env.put_source()
    result = env.run()
    assert result.code == 0
    (skip,) = result.actions("skip")
    assert skip["namespace"] == dying and "terminating" in skip["reason"]
    assert env.copies() == {}
    env.core.patch_namespaced_config_map("hold", dying, {"metadata": {"finalizers": None}})


def test_invalid_source_is_refused_and_copies_keep_their_data(env: SyncEnv) -> None:
    a = env.build_namespace("a")
    env.put_source()
    env.run()
    good = env.copies()[f"{a}/regcred"]
    env.put_source(data={".dockerconfigjson": b64(json.dumps({"auths": {}, "credsStore": "desktop"}))})
    env.build_namespace("b")
    result = env.run()
    assert result.code == 1
    (problem,) = result.summary["problems"]
    assert "credsStore" in problem["message"] and problem["source"].endswith("/regcred")
    assert list(env.copies()) == [f"{a}/regcred"]
    assert env.copies()[f"{a}/regcred"].metadata.resource_version == good.metadata.resource_version


@pytest.mark.parametrize("mode", ["--dry-run", "--dry-run=server"])
def test_dry_runs_change_nothing(env: SyncEnv, mode: str) -> None:
    a, gone = env.build_namespace("a"), env.build_namespace("gone")
    env.put_source()
    env.run()
    env.put_source(data=docker_config(password="next"))
    env.remove_builds(gone)
    new = env.build_namespace("new")
    before = {k: s.metadata.resource_version for k, s in env.copies().items()}

    result = env.run(mode)
    assert result.code == 0, result.stderr
    expected = "planned" if mode == "--dry-run" else "dry-run"
    assert {(x["action"], x["result"]) for x in result.actions() if x["action"] != "leave"} == {
        ("create", expected),
        ("update", expected),
        ("delete", expected),
    }
    assert {k: s.metadata.resource_version for k, s in env.copies().items()} == before
    assert result.summary["mode"].startswith("dry-run")
    assert "DRY RUN" in result.stderr
    if mode == "--dry-run":
        assert result.writes() == 0
    # The copy planned for deletion is still there, the one planned for creation is not.
    assert env.secret(gone) is not None and env.secret(new) is None and env.secret(a) is not None


def test_two_instances_never_touch_each_others_copies(env: SyncEnv) -> None:
    a = env.build_namespace("a")
    env.put_source("blue-cred")
    env.run()
    # A second SecretSync (instance) over the same namespaces...
    green = f"{env.prefix}-green"
    env.set_policy(green, sources={"selector": {"matchLabels": {"nothing": "matches"}}})
    result = env.run(policy=green)
    assert result.code == 0
    assert result.writes() == 0
    assert list(env.copies()) == [f"{a}/blue-cred"]
    # ...and green, syncing the same source, finds blue's copy in the way: a conflict, not a takeover.
    env.set_policy(green)
    result = env.run(policy=green)
    (conflict,) = result.actions("conflict")
    assert "syncjob instance" in conflict["reason"]
    assert result.writes() == 0


def test_exit_codes(env: SyncEnv, tmp_path: object) -> None:
    env.build_namespace("a")
    env.put_source()
    assert env.run_process().code == 0
    # The server itself refuses malformed JSON (422), so break it one level down.
    broken = {"auths": {"registry.example.com": {"auth": "not base64!"}}}
    env.put_source("broken", data={".dockerconfigjson": b64(json.dumps(broken))})
    partial = env.run_process()
    assert partial.code == 1
    assert "/broken" in partial.stderr and "not valid base64" in partial.stderr
    bad_flag = env.run_process("--namespace", "a")
    assert bad_flag.code == 2 and "unrecognized arguments: --namespace" in bad_flag.stderr
    env.set_policy(targets={"builds": ["widgets.example.com"]})
    unknown_kind = env.run_process()
    assert unknown_kind.code == 2 and "does not serve" in unknown_kind.stderr
