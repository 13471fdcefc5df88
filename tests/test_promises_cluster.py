"""Promises a user would notice broken, each observed on the real API server at the moment it matters:
writes that race a change, namespaces that start terminating after the read, server dry-runs that
must not touch ServiceAccounts."""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s

from syncjob.kube.apply import Applier
from syncjob.kube.read import ReadMemo
from syncjob.model import Kind, Outcome
from syncjob.policy import Policy
from syncjob.runner import load_policies, make_kube, plan_policy
from tests.factories import b64, docker_config
from tests.sync_env import SyncEnv


def planned(env: SyncEnv, *flags: str) -> tuple[Any, Any, Any]:
    """Read and plan exactly as a run does; the caller changes the cluster, then applies."""
    from syncjob import cli

    settings = cli.settings_from(cli.resolve(cli.build_parser().parse_args(env.argv(*flags)), {}))
    kube = make_kube(settings)
    ((policy, _),) = load_policies(settings, kube, None)
    assert isinstance(policy, Policy)
    _, planner, plan = plan_policy(policy, kube, None, ReadMemo(), create_key=True)
    return kube, planner, plan


def test_a_delete_never_lands_on_a_secret_that_replaced_the_copy(env: SyncEnv) -> None:
    """Deletes carry uid and resourceVersion preconditions: someone else's Secret, made under the
    copy's name after the read, survives the run."""
    a = env.build_namespace("a")
    env.put_source()
    env.run()
    env.core.delete_namespaced_secret("regcred", env.source_ns)
    kube, planner, plan = planned(env)
    assert [a.kind for a in plan.actions] == [Kind.DELETE]
    env.core.delete_namespaced_secret("regcred", a)
    theirs = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="regcred"), type="Opaque", data={"x": b64("theirs")})
    env.core.create_namespaced_secret(a, theirs)
    (result,) = Applier(kube, planner).apply(plan.actions)
    assert result.outcome is not Outcome.FAILED and result.action.kind is not Kind.DELETE, result
    survivor = env.secret(a)
    assert survivor is not None and survivor.data == {"x": b64("theirs")}


def test_an_update_never_lands_on_a_copy_changed_since_the_read(env: SyncEnv) -> None:
    """Updates carry the resourceVersion read: a copy someone edited in between is re-read and planned
    again, never blindly overwritten with what the stale plan said."""
    a = env.build_namespace("a")
    env.put_source()
    env.run()
    env.put_source(data=docker_config(password="rotated"))
    kube, planner, plan = planned(env)
    assert [a.kind for a in plan.actions] == [Kind.UPDATE]
    env.core.patch_namespaced_secret("regcred", a, {"metadata": {"labels": {"edited": "yes"}}})
    (result,) = Applier(kube, planner).apply(plan.actions)
    assert result.outcome is Outcome.DONE and "re-planned" in result.action.reason, result


def test_a_namespace_that_starts_terminating_after_the_read_is_skipped(env: SyncEnv) -> None:
    """The write gets 403 NamespaceTerminating: a skip, reported, not a failure (exit 0)."""
    dying = env.build_namespace("dying")
    env.put_source()
    kube, planner, plan = planned(env)
    assert [(a.kind, a.namespace) for a in plan.actions] == [(Kind.CREATE, dying)]
    env.core.delete_namespace(dying)  # no namespace controller here: it stays Terminating
    (result,) = Applier(kube, planner).apply(plan.actions)
    assert (result.action.kind, result.outcome) == (Kind.SKIP, Outcome.REPORTED), result
    assert result.action.reason == "namespace is terminating"


def test_a_server_dry_run_leaves_service_accounts_as_they_are(env: SyncEnv) -> None:
    a = env.build_namespace("a")
    env.core.create_namespaced_service_account(a, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="builder")))
    env.put_source()
    env.set_policy(serviceAccounts={"patch": ["builder"]})
    before = env.core.read_namespaced_service_account("builder", a)
    result = env.run("--dry-run=server")
    assert result.code == 0, result.stderr
    (patch,) = [x for x in result.actions("patch") if x["resource"] == "ServiceAccount"]
    assert patch["result"] == "dry-run"
    after = env.core.read_namespaced_service_account("builder", a)
    assert after.metadata.resource_version == before.metadata.resource_version
    assert not after.image_pull_secrets and env.secret(a) is None
