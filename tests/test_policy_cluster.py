"""SecretSync on the real API server: the intent every run, status and dry-run reads, the schema's
refusals, the status `kubectl get secretsyncs` shows, and the footguns flags used to be."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.factories import b64
from tests.sync_env import ROOT, RunResult, SyncEnv, install_crds, secretsync_crd, wait_for

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def opaque(token: str = "t0ken-value") -> dict[str, str]:
    return {"token": b64(token)}


def table(env: SyncEnv) -> dict[str, Any]:
    """What `kubectl get secretsyncs` receives: the server-side Table of the CRD's printer columns."""
    response = env.api.call_api(
        "/apis/syncjob.dev/v1alpha1/secretsyncs", "GET", header_params={"Accept": TABLE},
        auth_settings=["BearerToken"], _preload_content=False,
    )  # fmt: skip
    return dict(json.loads(response.data))


def row(env: SyncEnv, name: str) -> dict[str, Any]:
    doc = table(env)
    names = [c["name"] for c in doc["columnDefinitions"]]
    (cells,) = [r["cells"] for r in doc["rows"] if r["cells"][0] == name]
    return dict(zip(names, cells, strict=True))


def status_of(env: SyncEnv, *extra: str) -> RunResult:
    """`syncjob status -o json` in-process, for this env's SecretSync."""
    return env.run(*extra, command="status")


def test_a_flagless_one_off_run_plans_what_the_cronjob_plans(env: SyncEnv) -> None:
    """The footgun: with policy in flags, a plain `syncjob run` deleted every Opaque copy."""
    targets = [env.build_namespace(f"n{i}") for i in range(3)]
    env.put_source("git-token", type="Opaque", data=opaque())
    env.put_source()
    env.set_policy(types=["Opaque", "kubernetes.io/dockerconfigjson"])
    assert env.run().code == 0
    assert len(env.copies()) == 6
    env.only_my_policies()

    one_off = env.run_process(argv=["run", "--kubeconfig", str(env.cluster.kubeconfig), "-o", "json"])
    assert one_off.code == 0, one_off.stderr
    assert one_off.writes() == 0 and one_off.actions("delete") == []
    assert sorted(env.copies()) == sorted(f"{t}/{n}" for t in targets for n in ("git-token", "regcred"))


def test_status_and_run_agree_on_every_source(env: SyncEnv) -> None:
    env.build_namespace("a")
    env.build_namespace("b")
    env.put_source("git-token", type="Opaque", data=opaque())
    env.set_policy(types=["Opaque"])
    env.run()
    status = status_of(env)
    assert status.code == 0, status.stdout
    (source,) = status.doc["sources"]
    assert (source["name"], source["targets"], source["inSync"], source["policy"]) == ("git-token", 2, 2, env.prefix)
    assert env.run("--dry-run").writes() == 0 and env.run().actions("delete") == []


def test_the_abbreviation_footgun_is_refused_before_any_request(env: SyncEnv) -> None:
    """`--namespace team-a` was read as `--namespace-selector team-a` and planned to delete every copy."""
    a = env.build_namespace("a")
    env.put_source()
    env.run()
    refused = env.run_process("--namespace", a)
    assert refused.code == 2 and "unrecognized arguments: --namespace" in refused.stderr
    assert refused.stdout == ""
    assert list(env.copies()) == [f"{a}/regcred"]


def test_reapplying_the_install_manifest_keeps_the_policy(env: SyncEnv) -> None:
    env.set_policy(types=["Opaque"], targets={"exclude": ["never-*"]}, maxDelete=7)
    before = env.policy_object()
    dynamic = k8s.CustomObjectsApi(env.api)
    # `kubectl apply -f k8s/cronjob.yaml`, as server-side apply: the CRD is re-applied, the policy is not in it.
    crd = secretsync_crd()
    env.api.call_api(
        f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}", "PATCH",
        query_params=[("fieldManager", "kubectl"), ("force", "true")],
        header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"},
        body=crd, auth_settings=["BearerToken"], _preload_content=False,
    )  # fmt: skip
    after = dynamic.get_cluster_custom_object("syncjob.dev", "v1alpha1", "secretsyncs", env.prefix)
    assert after["spec"] == before["spec"]
    assert after["spec"]["types"] == ["Opaque"] and after["spec"]["maxDelete"] == 7


def test_kubectl_get_shows_the_outcome_of_a_run(env: SyncEnv) -> None:
    env.build_namespace("a")
    env.build_namespace("b")
    env.put_source()
    env.put_source("broken", data={".dockerconfigjson": b64(json.dumps({"auths": {}}))})
    before = row(env, env.prefix)
    assert before["Ready"] is None and before["Last Run"] is None  # no run yet: nothing claimed
    assert env.run().code == 1
    partial = row(env, env.prefix)
    columns = [c["name"] for c in table(env)["columnDefinitions"]]
    assert columns == ["Name", "Ready", "Sources", "Targets", "In-Sync", "Last Run", "Age", "Reason"]
    assert (partial["Ready"], partial["Sources"], partial["Targets"], partial["In-Sync"]) == ("False", 2, 4, 2)
    assert partial["Reason"] == "InvalidSource" and partial["Last Run"]
    obj = env.policy_object()
    status = obj["status"]
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    assert status["lastRun"]["exitCode"] == 1 and status["lastRun"]["result"] == "Partial"
    assert status["lastRun"]["actions"] == {"create": 2}
    assert status["lastRun"]["apiRequests"] >= 6
    broken = next(s for s in status["sources"] if s["name"] == "broken")
    assert "empty 'auths'" in broken["problem"] and broken["inSync"] == 0

    env.core.delete_namespaced_secret("broken", env.source_ns)
    assert env.run().code == 0
    ready = row(env, env.prefix)
    assert (ready["Ready"], ready["Sources"], ready["Targets"], ready["In-Sync"], ready["Reason"]) == (
        "True", 1, 2, 2, "InSync",
    )  # fmt: skip
    assert env.policy_object()["status"]["lastRun"]["actions"] == {}  # replaced whole, not merged with the last
    condition = env.policy_object()["status"]["conditions"][0]
    assert condition["type"] == "Ready" and condition["lastTransitionTime"]


def test_a_dry_run_and_status_write_no_status(env: SyncEnv) -> None:
    env.build_namespace("a")
    env.put_source()
    env.run("--dry-run")
    env.run("--dry-run=server")
    status_of(env)
    assert "status" not in env.policy_object()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"types": ["kubernetes.io/service-account-token"]}, "never synced"),
        ({"types": []}, "spec.types"),
        ({"targets": {"allNamespaces": True, "namespaceSelector": {"matchLabels": {"a": "b"}}}}, "exclude each other"),
        ({"targets": {"allNamespaces": True, "builds": ["images.kpack.io"]}}, "Keep one way"),
        ({"targets": {"exclude": ["Team_A"]}}, "spec.targets.exclude"),
        ({"targets": {"builds": ["kpack"]}}, "spec.targets.builds"),
        ({"sources": {"names": ["no-slash"]}}, "spec.sources.names"),
        ({"sources": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}}, "need values"),
        ({"serviceAccounts": {"create": True}}, "create needs patch"),
        ({"conflictPolicy": "Overwrite"}, "spec.conflictPolicy"),
        ({"maxDelete": -1}, "spec.maxDelete"),
    ],
)
def test_the_schema_refuses_at_apply(env: SyncEnv, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ApiException) as refused:
        env.set_policy(f"{env.prefix}-bad", **spec)
    assert refused.value.status == 422 and message in refused.value.body, refused.value.body


def test_the_schema_refuses_a_name_that_cannot_label_copies(env: SyncEnv) -> None:
    with pytest.raises(ApiException) as refused:
        env.put_policy({"metadata": {"name": f"{env.prefix}-{'x' * 60}"}, "spec": {}})
    assert refused.value.status == 422 and "at most 63 characters" in refused.value.body


def test_the_server_fills_in_the_defaults_the_job_would(env: SyncEnv) -> None:
    stored = env.put_policy({"metadata": {"name": f"{env.prefix}-defaults"}})
    assert stored["spec"] == {
        "sources": {
            "namespace": "build-service",
            "selector": {"matchLabels": {"com.vmware.tanzu.buildservice.sync": "true"}},
        },
        "types": ["kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg"],
        "conflictPolicy": "Report",
    }


def test_an_invalid_policy_exits_2_and_the_others_still_run(env: SyncEnv) -> None:
    a = env.build_namespace("a")
    env.put_source()
    broken = f"{env.prefix}-broken"
    env.set_policy(broken, targets={"builds": ["widgets.example.com"]})
    result = env.run_process(argv=[*env.argv(), "--policy", broken])
    assert result.code == 2
    assert list(env.copies()) == [f"{a}/regcred"]  # the good policy ran
    (failed,) = [p for p in result.summary["policies"] if p["exitCode"] == 2]
    assert failed["name"] == broken and "does not serve group 'example.com'" in failed["error"]
    assert f"SecretSync {broken}" in result.stderr
    ready = env.policy_object(broken)["status"]["conditions"][0]
    assert (ready["status"], ready["reason"]) == ("False", "Invalid") and "example.com" in ready["message"]


def test_no_secretsync_at_all_says_how_to_create_the_default(env: SyncEnv) -> None:
    env.only_my_policies()
    env.custom.delete_cluster_custom_object("syncjob.dev", "v1alpha1", "secretsyncs", env.prefix)
    argv = ["run", "--kubeconfig", str(env.cluster.kubeconfig), "-o", "json"]
    for command in ("run", "status"):
        result = env.run_process(argv=[command, *argv[1:]])
        assert result.code == 2 and result.stdout == ""
        assert "no SecretSync" in result.stderr and "kubectl apply -f k8s/policies/default.yaml" in result.stderr
    missing = env.run_process()  # --policy naming one that is not there
    assert missing.code == 2 and f"SecretSync '{env.prefix}' not found" in missing.stderr


def test_a_policy_file_plans_without_touching_the_cluster(env: SyncEnv, tmp_path: Path) -> None:
    a = env.build_namespace("a")
    b = env.build_namespace("b")
    env.put_source()
    local = tmp_path / "preview.yaml"
    local.write_text(yaml.safe_dump({
        "apiVersion": "syncjob.dev/v1alpha1", "kind": "SecretSync", "metadata": {"name": env.prefix},
        "spec": {**env.base_spec(), "targets": {"include": [f"{env.prefix}-*"], "exclude": [a]}},
    }))  # fmt: skip
    argv = ["run", "--kubeconfig", str(env.cluster.kubeconfig), "--policy-file", str(local), "-o", "json"]
    refused = env.run_process(argv=argv)  # a local policy never applies
    assert refused.code == 2 and "--dry-run" in refused.stderr
    env.run()
    preview = env.run_process(argv=[*argv, "--dry-run"])
    assert preview.code == 0, preview.stderr
    assert [(x["action"], x["namespace"], x["result"]) for x in preview.actions("delete")] == [(
        "delete", a, "planned"
    )]  # fmt: skip
    assert sorted(env.copies()) == [f"{a}/regcred", f"{b}/regcred"]


def test_build_kinds_resolve_their_version_per_resource(env: SyncEnv) -> None:
    """Tekton's customruns are served only at v1beta1 while tekton.dev prefers v1; Argo's Workflow only
    at v1alpha1. One discovery request finds each kind's version."""
    with env.cluster.admin_client() as api:
        docs = [d for f in ("tekton-crds.yaml", "argo-crds.yaml")
                for d in yaml.safe_load_all((ROOT / "tests" / "manifests" / f).read_text()) if d]  # fmt: skip
        install_crds(api, docs)
    kinds = {
        "pipelineruns": ("tekton.dev", "v1", "PipelineRun"),
        "customruns": ("tekton.dev", "v1beta1", "CustomRun"),
        "workflows": ("argoproj.io", "v1alpha1", "Workflow"),
    }
    namespaces = {plural: env.namespace(plural[:4]) for plural in kinds}
    idle = env.namespace("idle")
    for plural, (group, version, kind) in kinds.items():
        body = {"apiVersion": f"{group}/{version}", "kind": kind, "metadata": {"name": "run"}}
        path = (group, version, namespaces[plural], plural)
        wait_for(lambda p=path, b=body: _created(env, p, b), f"{plural} to be served")  # type: ignore[misc]
    env.put_source()
    env.set_policy(targets={"builds": ["pipelineruns.tekton.dev", "customruns.tekton.dev", "workflows.argoproj.io"]})
    result = env.run()
    assert result.code == 0, result.stderr
    assert sorted(env.copies()) == sorted(f"{ns}/regcred" for ns in namespaces.values())
    assert env.secret(idle) is None
    assert result.summary["requests"]["discovery"] == 1


def _created(env: SyncEnv, path: tuple[str, str, str, str], body: dict[str, Any]) -> bool:
    try:
        env.custom.create_namespaced_custom_object(*path, body)
        return True
    except ApiException as e:
        if e.status == 409:
            return True
        if e.status == 404:
            return False
        raise


def test_a_build_kind_the_identity_may_not_list_names_the_rule_to_add(env: SyncEnv) -> None:
    from tests.test_bad_input_cluster import READ_RULES, bind, cluster_role

    with env.cluster.admin_client() as api:
        docs = list(yaml.safe_load_all((ROOT / "tests" / "manifests" / "argo-crds.yaml").read_text()))
        install_crds(api, [d for d in docs if d])
    env.put_source()
    env.run()  # as admin: makes the proof key, which a reader may not
    env.set_policy(targets={"builds": ["workflows.argoproj.io"]})
    kubeconfig = env.cluster.service_account_kubeconfig(env.source_ns, "reader")
    bind(env, env.source_ns, "reader", cluster_role(env, "reader", READ_RULES))
    result = wait_for(lambda: (r := env.run(kubeconfig=kubeconfig)).code == 2 and "workflows" in r.stderr and r,
                      "the binding to take effect")  # fmt: skip
    assert "{apiGroups: [argoproj.io], resources: [workflows], verbs: [list]}" in result.stderr


def test_a_source_narrows_its_own_targets_with_annotations(env: SyncEnv) -> None:
    a1, a2, b1 = env.build_namespace("a1"), env.build_namespace("a2"), env.build_namespace("b1")
    env.put_source()
    env.put_source("only-a", annotations={"syncjob.dev/include": f"{env.prefix}-a*"})
    env.put_source("not-a2", annotations={"syncjob.dev/exclude": f"{env.prefix}-a2, {env.prefix}-zz?"})
    assert env.run().code == 0
    assert sorted(env.copies()) == sorted([
        f"{a1}/regcred", f"{a2}/regcred", f"{b1}/regcred",
        f"{a1}/only-a", f"{a2}/only-a",
        f"{a1}/not-a2", f"{b1}/not-a2",
    ])  # fmt: skip
    # Narrow only: an include that names a namespace outside the policy's targets does not widen them.
    outside = env.namespace("nobuilds")
    env.put_source("only-a", annotations={"syncjob.dev/include": f"{env.prefix}-a1,{outside}"})
    env.run()
    assert env.secret(outside, "only-a") is None and env.secret(a2, "only-a") is None
    # A bad annotation is that source's problem: reported, copies left as they are, the rest goes on.
    env.put_source("not-a2", annotations={"syncjob.dev/exclude": "Bad_Glob"})
    result = env.run()
    assert result.code == 1
    (problem,) = result.summary["problems"]
    assert problem["source"].endswith("/not-a2") and "syncjob.dev/exclude" in problem["message"]
    assert env.secret(a1, "not-a2") is not None and env.secret(b1, "not-a2") is not None


def test_a_namespace_holding_a_named_source_stays_a_target_for_the_others(env: SyncEnv) -> None:
    team = env.build_namespace("team")
    other = env.build_namespace("other")
    env.put_source()
    env.put_source("team-token", namespace=team, type="Opaque", data=opaque(), labels={})
    env.set_policy(sources={"names": [f"{team}/team-token"]}, types=["Opaque", "kubernetes.io/dockerconfigjson"])
    assert env.run().code == 0
    assert sorted(env.copies()) == sorted([f"{team}/regcred", f"{other}/regcred", f"{other}/team-token"])


def _planned_writes(result: RunResult) -> int:
    return sum(1 for a in result.actions() if a["result"] == "planned")


def test_status_in_sync_means_a_run_writes_nothing_across_scenarios(env: SyncEnv) -> None:
    """The property: whenever `status` exits 0, the same SecretSync's run plans no write; and whenever
    a run plans a write, `status` says so. Checked before and after each change a user makes."""
    a, b = env.build_namespace("a"), env.build_namespace("b")
    c = env.namespace("c")
    env.core.create_namespaced_service_account(b, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="builder")))
    steps: list[tuple[str, Any]] = [
        ("a source appears", env.put_source),
        ("a second source, Opaque, not enabled", lambda: env.put_source("git", type="Opaque", data=opaque())),
        ("Opaque enabled in the policy", lambda: env.set_policy(types=["Opaque", "kubernetes.io/dockerconfigjson"])),
        ("a namespace starts building", lambda: env.add_build(c)),
        ("a copy is edited by hand", lambda: env.core.patch_namespaced_secret("regcred", a, {"data": opaque("x")})),
        ("a copy is deleted by hand", lambda: env.core.delete_namespaced_secret("git", b)),
        ("a source is rotated", lambda: env.put_source(data={".dockerconfigjson": b64('{"auths":{"r.io":{"auth":"'
                                                                                          + b64("u:p2") + '"}}}')})),
        ("ServiceAccounts join the policy", lambda: env.set_policy(
            types=["Opaque", "kubernetes.io/dockerconfigjson"], serviceAccounts={"patch": ["builder"]})),
        ("a namespace opts out", lambda: env.core.patch_namespace(
            c, {"metadata": {"annotations": {"syncjob.dev/ignore": "true"}}})),
        ("a source narrows itself", lambda: env.put_source("git", type="Opaque", data=opaque(),
                                                           annotations={"syncjob.dev/exclude": a})),
        ("a source breaks", lambda: env.put_source("regcred", data={".dockerconfigjson": b64('{"auths":{}}')})),
        ("a source loses its label", lambda: env.put_source("git", type="Opaque", data=opaque(), labels={})),
    ]  # fmt: skip
    seen_dirty = 0
    for what, change in steps:
        change()
        for _ in range(2):  # before the run that follows the change, and after it
            status = status_of(env)
            plan = env.run("--dry-run")
            writes = _planned_writes(plan)
            assert (status.code == 0) == (writes == 0) or (status.code == 1 and writes == 0 and plan.code == 1), (
                what, status.code, writes, status.stdout,
            )  # fmt: skip
            seen_dirty += writes > 0
            applied = env.run()
            assert applied.code in (0, 1), (what, applied.stderr)
    assert seen_dirty >= 8  # the scenarios did change things


def test_a_missing_source_namespace_is_nothing_to_do_until_a_copy_is_needed(env: SyncEnv) -> None:
    """No source namespace (a fresh install): nothing to sync, exit 0. A named source elsewhere would need
    a copy that could never be proven (the key lives in the source namespace): exit 2, saying so."""
    env.build_namespace("a")
    missing = f"{env.prefix}-nowhere"
    env.set_policy(sources={"namespace": missing})
    empty = env.run()
    assert empty.code == 0, empty.stderr
    assert empty.actions() == [] and env.copies() == {}
    env.put_source("named", labels={})
    env.set_policy(sources={"namespace": missing, "names": [f"{env.source_ns}/named"]})
    refused = env.run()
    assert refused.code == 2 and env.copies() == {}
    assert f"spec.sources.namespace {missing} does not exist" in refused.stderr
