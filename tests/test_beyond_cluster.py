"""ServiceAccount imagePullSecrets, `syncjob status`, metadata policy and Events on the real API server."""

from __future__ import annotations

import contextlib
import io
import json

from kubernetes import client as k8s

from syncjob import cli
from syncjob.policy import InvalidPolicy
from tests.factories import b64, docker_config
from tests.leakscan import ALL_OUTPUTS
from tests.sync_env import SyncEnv, wait_for


def pull_secrets(env: SyncEnv, namespace: str, name: str = "builder") -> list[str]:
    account = env.core.read_namespaced_service_account(name, namespace)
    return [r.name for r in account.image_pull_secrets or []]


def service_account(env: SyncEnv, namespace: str, name: str = "builder", refs: list[str] | None = None) -> None:
    body = k8s.V1ServiceAccount(
        metadata=k8s.V1ObjectMeta(name=name),
        image_pull_secrets=[k8s.V1LocalObjectReference(name=r) for r in refs or []],
    )
    env.core.create_namespaced_service_account(namespace, body)


def test_service_accounts_get_the_copy_and_lose_only_what_syncjob_added(env: SyncEnv) -> None:
    a, b = env.build_namespace("a"), env.build_namespace("b")
    service_account(env, a, refs=["team-own"])
    service_account(env, b, refs=["regcred"])  # someone added the same name by hand before syncjob came
    env.put_source()
    env.set_policy(serviceAccounts={"patch": ["builder"]})
    result = env.run()
    assert result.code == 0, result.stderr
    assert pull_secrets(env, a) == ["team-own", "regcred"]
    assert pull_secrets(env, b) == ["regcred"]
    patched = [x for x in result.actions("patch") if x["resource"] == "ServiceAccount"]
    assert {x["namespace"] for x in patched} == {a}
    assert env.run().writes() == 0  # steady state

    env.core.delete_namespaced_secret("regcred", env.source_ns)  # GC: the copies go...
    result = env.run()
    assert result.code == 0
    assert env.copies() == {}
    assert pull_secrets(env, a) == ["team-own"]  # ...and the reference syncjob added goes with them
    assert pull_secrets(env, b) == ["regcred"]  # the one it did not add stays
    account = env.core.read_namespaced_service_account("builder", a)
    assert f"syncjob.dev/pull-secrets.{env.prefix}" not in (account.metadata.annotations or {})


def test_missing_service_account_is_reported_or_created_on_request(env: SyncEnv) -> None:
    a = env.build_namespace("a")
    env.put_source()
    env.set_policy(serviceAccounts={"patch": ["builder"]})
    result = env.run()
    assert result.code == 0
    (skip,) = [x for x in result.actions("skip") if x["resource"] == "ServiceAccount"]
    assert skip["namespace"] == a and "spec.serviceAccounts.create" in skip["reason"]
    env.set_policy(serviceAccounts={"patch": ["builder"], "create": True})
    result = env.run()
    assert result.code == 0, result.stderr
    assert pull_secrets(env, a) == ["regcred"]


def test_a_concurrent_change_to_the_service_account_is_not_clobbered(env: SyncEnv) -> None:
    """The patch carries the resourceVersion that was read: a change made in between is kept."""
    from syncjob.cli import resolve, settings_from
    from syncjob.kube.apply import Applier
    from syncjob.kube.read import ReadMemo
    from syncjob.runner import load_policies, make_kube, plan_policy

    a = env.build_namespace("a")
    service_account(env, a)
    env.put_source()
    env.set_policy(serviceAccounts={"patch": ["builder"]})
    args = cli.build_parser().parse_args(env.argv())
    settings = settings_from(resolve(args, {}))
    kube = make_kube(settings)
    ((policy, _),) = load_policies(settings, kube, None)
    assert not isinstance(policy, InvalidPolicy)
    _, planner, plan = plan_policy(policy, kube, None, ReadMemo())
    # Someone edits the ServiceAccount after syncjob read it and before it writes.
    env.core.patch_namespaced_service_account("builder", a, {"imagePullSecrets": [{"name": "late-addition"}]})
    results = Applier(kube, planner).apply(plan.actions)
    patched = [r for r in results if r.action.resource == "ServiceAccount"]
    assert [r.outcome.value for r in patched] == ["done"]
    assert "re-planned" in patched[0].action.reason
    assert pull_secrets(env, a) == ["late-addition", "regcred"]


def status(env: SyncEnv, *flags: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = env.argv(*flags, command="status")
    argv = [x for x in argv if x not in ("-o", "json")] if "json" not in flags else argv
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv, environ={})
    ALL_OUTPUTS.extend([out.getvalue(), err.getvalue()])
    return code, out.getvalue()


def test_status_shows_what_is_synced_where_and_gates_on_it(env: SyncEnv) -> None:
    a, b, c = env.build_namespace("a"), env.build_namespace("b"), env.build_namespace("c")
    env.put_source()
    env.run()
    env.core.delete_namespaced_secret("regcred", b)
    env.core.create_namespaced_secret(c, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="other"), type="Opaque"))
    env.put_source("broken", data={".dockerconfigjson": b64(json.dumps({"auths": {}, "credsStore": "desktop"}))})

    code, table = status(env)
    assert code == 1
    header, *rows = table.splitlines()
    assert header.split() == ["POLICY", "NAME", "NAMESPACE", "TYPE", "TARGETS", "IN", "SYNC", "AGE", "PROBLEMS"]
    regcred = next(r for r in rows if r.split()[1] == "regcred")
    assert regcred.split()[0] == env.prefix
    assert "3" in regcred.split() and "1 missing" in regcred
    assert "credsStore" in next(r for r in rows if r.split()[1] == "broken")

    code, detail = status(env, "--source", f"{env.source_ns}/regcred")
    assert code == 1
    assert f"{b}   missing" in detail and f"{a}   in sync" in detail

    code, doc = status(env, "-o", "json")
    parsed = json.loads(doc)
    assert parsed["inSync"] is False
    reg = next(s for s in parsed["sources"] if s["name"] == "regcred")
    assert reg["namespaces"][b]["state"] == "missing" and reg["inSync"] == 2

    env.core.delete_namespaced_secret("broken", env.source_ns)
    env.run()
    code, table = status(env)
    assert code == 0, table
    assert env.copies().keys() == {f"{n}/regcred" for n in (a, b, c)}


def test_metadata_policy_change_updates_existing_copies(env: SyncEnv) -> None:
    a = env.build_namespace("a")
    labels = {"com.vmware.tanzu.buildservice.sync": "true", "team": "platform", "helm.sh/chart": "x"}
    env.put_source(labels=labels)
    env.run()
    assert "team" not in env.copies()[f"{a}/regcred"].metadata.labels
    env.set_policy(copyMetadata={"labels": ["team", "helm.sh/*"]})
    result = env.run()
    assert result.summary["actions"]["update"] == {"done": 1}
    copied = env.copies()[f"{a}/regcred"].metadata.labels
    assert copied["team"] == "platform" and "helm.sh/chart" not in copied
    env.set_policy()  # the policy is dropped again: so is the label
    env.run()
    assert "team" not in env.copies()[f"{a}/regcred"].metadata.labels


def test_events_tell_the_story_on_the_source(env: SyncEnv) -> None:
    env.build_namespace("a")
    env.build_namespace("b")
    env.put_source()
    env.put_source("broken", data={".dockerconfigjson": b64(json.dumps({"auths": {}}))})
    assert env.run("--events").code == 1
    env.put_source(data=docker_config(password="rotated"))
    env.run("--events")

    def events_for(name: str) -> list[k8s.CoreV1Event]:
        selector = f"involvedObject.name={name},involvedObject.kind=Secret"
        return env.core.list_namespaced_event(env.source_ns, field_selector=selector).items

    synced = wait_for(lambda: len(events_for("regcred")) >= 2 and events_for("regcred"), "two events on regcred")
    env.run("--events")  # nothing changed for regcred: no new event on it
    assert len(events_for("regcred")) == 2
    assert [e.reason for e in synced] == ["Synced", "Synced"]
    assert {e.message.split(" (")[0] for e in synced} == {"copies: created 2", "copies: updated 2"}
    (failed, *_) = events_for("broken")
    assert failed.reason == "SyncFailed" and failed.type == "Warning" and "empty 'auths'" in failed.message
