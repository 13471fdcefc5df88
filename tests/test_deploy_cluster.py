"""k8s/cronjob.yaml and docs/install.md against the real control plane.

What is proven here:
- every object in the manifest is accepted by the API server (strict field validation, no
  warnings), and a server-side dry-run re-apply of each is clean;
- Pod Security (`restricted`) admits the CronJob's pod template, and refuses weakened copies;
- with a token of the manifest's ServiceAccount, bound only by the manifest's ClusterRole, a full
  run (create, update, garbage collection, and the documented uninstall run) succeeds, while that
  identity is denied what it has no business doing;
- the optional role, bound as the docs say, covers spec.serviceAccounts.patch and .create, and
  --events;
- the manifest's SYNCJOB_* settings are the ones the CLI reads, and parse;
- the commands in docs/install.md are the ones checked here.

The namespace `syncjob` is cluster-global on the session's shared control plane: the manifest is
applied once, by a module-scoped fixture, tolerating objects that already exist.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient

from syncjob import cli
from tests.controlplane.cluster import ControlPlane
from tests.factories import docker_config
from tests.sync_env import ROOT, SyncEnv, wait_for

MANIFEST = ROOT / "k8s" / "cronjob.yaml"
INSTALL_DOC = ROOT / "docs" / "install.md"
EXAMPLE_SNAPSHOT = ROOT / "examples" / "cluster.yaml"
NAMESPACE = "syncjob"
SERVICE_ACCOUNT = "syncjob"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
STRICT = ("fieldValidation", "Strict")
FIELD_MANAGER = "syncjob-deploy-test"
# The step of docs/install.md's uninstall that makes a SecretSync select no source.
UNINSTALL_PATCH = (
    "kubectl patch secretsync syncjob --type merge -p "
    """'{"spec":{"sources":{"selector":{"matchLabels":{"syncjob.dev/none":"true"}},"names":null}}}'"""
)

# What one run sends (syncjob/kube/read.py, apply.py), as (API group, resource) -> verbs.
EXPECTED_RULES = {
    ("syncjob.dev", "secretsyncs"): {"get", "list"},
    ("syncjob.dev", "secretsyncs/status"): {"patch"},
    ("", "namespaces"): {"list"},
    ("", "secrets"): {"get", "list", "create", "update", "delete"},
    ("kpack.io", "builds"): {"list"},
    ("kpack.io", "images"): {"list"},
}


# --- the manifest as data --------------------------------------------------------------------


def manifest_docs() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def one(kind: str, name: str = NAMESPACE) -> dict[str, Any]:
    (found,) = [d for d in manifest_docs() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def job_spec() -> dict[str, Any]:
    spec: dict[str, Any] = one("CronJob")["spec"]["jobTemplate"]["spec"]
    return spec


def pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = job_spec()["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    (only,) = pod_spec()["containers"]
    return dict(only)


def manifest_env() -> dict[str, str]:
    env = container()["env"]
    assert all(set(e) == {"name", "value"} for e in env), "settings are plain values (no valueFrom)"
    return {e["name"]: str(e["value"]) for e in env}


def commented_bindings() -> list[dict[str, Any]]:
    """The bindings the manifest ships commented out (the optional role's), uncommented."""
    lines = MANIFEST.read_text().splitlines()
    start = lines.index("# ---")
    assert all(line.startswith("#") for line in lines[start:]), "the commented block must end the file"
    text = "\n".join(re.sub(r"^# ?", "", line) for line in lines[start:])
    return [d for d in yaml.safe_load_all(text) if d]


def rules_of(role: dict[str, Any]) -> dict[tuple[str, str], set[str]]:
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    return granted


def pod_from_template(name: str) -> dict[str, Any]:
    template = job_spec()["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(template["metadata"]["labels"])},
        "spec": copy.deepcopy(template["spec"]),
    }


# --- docs/install.md as data -----------------------------------------------------------------


def install_doc() -> str:
    return INSTALL_DOC.read_text()


def shell_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL)


def kubectl_run_command() -> tuple[str, str, dict[str, Any]]:
    """(pod name, image, overrides) of the documented `kubectl run`."""
    commands = [b for b in shell_blocks(install_doc()) if "kubectl run " in b]
    assert len(commands) == 1, "docs/install.md should document one `kubectl run`"
    command = commands[0]
    name = re.search(r"kubectl run (\S+)", command)
    image = re.search(r"--image=(\S+)", command)
    overrides = re.search(r"--overrides='([^']*)'", command)
    assert name and image and overrides, command
    assert "--override-type=strategic" in command and "--restart=Never" in command and " -n syncjob" in command
    return name.group(1), image.group(1), json.loads(overrides.group(1))


def syncjob_commands() -> list[list[str]]:
    """Every `syncjob run ...` command line of the doc, shell-split, without the program name."""
    found = []
    for block in shell_blocks(install_doc()):
        for line in block.splitlines():
            if line.strip().startswith("syncjob run"):
                found.append(shlex.split(line.strip())[1:])
    return found


def strategic_merge(base: Any, patch: Any) -> Any:
    """kubectl's --override-type=strategic for the shapes used here: maps merge, `containers`
    and `volumes` merge by name, every other list is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            if key in ("containers", "volumes") and isinstance(value, list):
                by_name = {item["name"]: item for item in merged.get(key) or []}
                for item in value:
                    by_name[item["name"]] = strategic_merge(by_name.get(item["name"], {}), item)
                merged[key] = list(by_name.values())
            else:
                merged[key] = strategic_merge(merged.get(key), value)
        return merged
    return copy.deepcopy(patch)


def kubectl_run_pod() -> dict[str, Any]:
    """The Pod `kubectl run NAME --image=IMAGE --restart=Never -i --overrides=...` sends."""
    name, image, overrides = kubectl_run_command()
    generated = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"run": name}},
        "spec": {
            "containers": [{"name": name, "image": image, "stdin": True, "stdinOnce": True, "tty": False}],
            "restartPolicy": "Never",
            "dnsPolicy": "ClusterFirst",
        },
    }
    merged: dict[str, Any] = strategic_merge(generated, overrides)
    return merged


# --- talking to the API server ---------------------------------------------------------------


def warnings_of(response: Any) -> list[str]:
    raw = getattr(response, "urllib3_response", response)  # RESTResponse or urllib3's own
    return list(raw.headers.getlist("Warning"))


def send(dynamic: DynamicClient, verb: str, doc: dict[str, Any], **kwargs: Any) -> tuple[dict[str, Any], list[str]]:
    """create / server_side_apply one object, strict field validation; (answer, warnings)."""
    resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    response = getattr(dynamic, verb)(
        resource,
        body=doc,
        namespace=doc["metadata"].get("namespace"),
        query_params=[STRICT],
        serialize=False,
        **kwargs,
    )
    return json.loads(response.data), warnings_of(response)


def live(dynamic: DynamicClient, doc: dict[str, Any]) -> dict[str, Any]:
    resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
    found = dynamic.get(resource, name=doc["metadata"]["name"], namespace=doc["metadata"].get("namespace"))
    result: dict[str, Any] = found.to_dict()
    return result


def missing_fields(want: Any, have: Any, path: str = "") -> list[str]:
    """Where `have` lacks or differs from what `want` says (server defaults may add more)."""
    if isinstance(want, dict):
        if not isinstance(have, dict):
            return [path or "."]
        return [m for k, v in want.items() for m in missing_fields(v, have.get(k), f"{path}.{k}")]
    if isinstance(want, list):
        if not isinstance(have, list) or len(have) != len(want):
            return [path]
        return [
            m for i, (w, h) in enumerate(zip(want, have, strict=True)) for m in missing_fields(w, h, f"{path}[{i}]")
        ]
    return [] if want == have else [f"{path}: {want!r} != {have!r}"]


def forbidden(call: Callable[[], Any]) -> ApiException:
    with pytest.raises(ApiException) as info:
        call()
    assert info.value.status == 403, info.value.body
    return info.value


def self_review(api: k8s.ApiClient, verb: str, resource: str, group: str = "", namespace: str = "") -> bool:
    review = k8s.AuthorizationV1Api(api).create_self_subject_access_review(
        k8s.V1SelfSubjectAccessReview(
            spec=k8s.V1SelfSubjectAccessReviewSpec(
                resource_attributes=k8s.V1ResourceAttributes(
                    verb=verb, resource=resource, group=group, namespace=namespace or None
                )
            )
        )
    )
    return bool(review.status.allowed)


@pytest.fixture(scope="module")
def dynamic(cluster: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DynamicClient]:
    cache = tmp_path_factory.mktemp("discovery") / "cache.json"
    with cluster.admin_client() as api:
        yield DynamicClient(api, cache_file=str(cache))


@pytest.fixture(scope="module")
def deployed(cluster: ControlPlane, dynamic: DynamicClient) -> dict[tuple[str, str], list[str] | None]:
    """`kubectl apply -f k8s/cronjob.yaml`, once: (kind, name) -> warnings, or None if it existed."""
    outcome: dict[tuple[str, str], list[str] | None] = {}
    for doc in manifest_docs():
        key = (doc["kind"], doc["metadata"]["name"])
        try:
            _, outcome[key] = send(dynamic, "create", doc)
        except ApiException as e:
            if e.status != 409:
                raise AssertionError(f"{key} refused: HTTP {e.status} {e.body}") from e
            outcome[key] = None
    # RBAC reads bindings from an informer: wait until the ServiceAccount has what a run needs.
    with cluster.service_account_client(NAMESPACE, SERVICE_ACCOUNT) as api:

        def bound() -> bool:
            return all(self_review(api, verb, r, g) for (g, r), verbs in EXPECTED_RULES.items() for verb in verbs)

        wait_for(bound, "the manifest's ClusterRoleBinding to take effect")
    return outcome


@pytest.fixture
def sa_kubeconfig(cluster: ControlPlane, deployed: object) -> Path:
    """A kubeconfig holding a token of the manifest's ServiceAccount."""
    return cluster.service_account_kubeconfig(NAMESPACE, SERVICE_ACCOUNT, create=False)


# --- the manifest on its own (no cluster) ------------------------------------------------------


def test_cluster_role_grants_exactly_what_a_run_needs() -> None:
    assert rules_of(one("ClusterRole")) == EXPECTED_RULES
    binding = one("ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "syncjob"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]
    # The optional grants exist, but nothing in the applied manifest binds them.
    applied_bindings = [d for d in manifest_docs() if d["kind"] in ("ClusterRoleBinding", "RoleBinding")]
    assert [b["roleRef"]["name"] for b in applied_bindings] == ["syncjob"]
    optional = rules_of(one("ClusterRole", "syncjob-optional"))
    assert optional == {("", "serviceaccounts"): {"get", "list", "patch", "create"}, ("", "events"): {"create"}}
    assert "cannot narrow `list`" in MANIFEST.read_text()


def test_the_install_manifest_holds_the_api_and_no_policy() -> None:
    """Re-applying it (the documented upgrade) must never reset a SecretSync: it holds none."""
    kinds = [d["kind"] for d in manifest_docs()]
    assert kinds[0] == "CustomResourceDefinition"  # the API first, so one apply installs it all
    assert "SecretSync" not in kinds
    crd = one("CustomResourceDefinition", "secretsyncs.syncjob.dev")["spec"]
    assert (crd["group"], crd["scope"], crd["names"]["kind"]) == ("syncjob.dev", "Cluster", "SecretSync")
    assert [v["name"] for v in crd["versions"]] == ["v1alpha1"]
    (default,) = yaml.safe_load_all((ROOT / "k8s" / "policies" / "default.yaml").read_text())
    assert (default["kind"], default["metadata"]["name"]) == ("SecretSync", "syncjob")


def test_namespace_and_service_account_are_locked_down() -> None:
    labels = one("Namespace")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    assert one("ServiceAccount")["automountServiceAccountToken"] is False
    assert {d["metadata"].get("namespace") for d in manifest_docs() if d["kind"] in ("ServiceAccount", "CronJob")} == {
        NAMESPACE
    }


def test_schedule_and_deadlines_fit_together() -> None:
    cronjob = one("CronJob")["spec"]
    assert cronjob["schedule"] == "*/10 * * * *"
    period = 600
    assert cronjob["concurrencyPolicy"] == "Forbid"
    assert 0 < cronjob["startingDeadlineSeconds"] < period
    assert cronjob["successfulJobsHistoryLimit"] >= 1 and cronjob["failedJobsHistoryLimit"] >= 1
    job = job_spec()
    assert job["activeDeadlineSeconds"] < period, "a stuck run must end before the next one is due"
    assert 0 < float(manifest_env()["SYNCJOB_TIMEOUT"]) < job["activeDeadlineSeconds"]
    assert job["backoffLimit"] == 2 and job["ttlSecondsAfterFinished"] > 0
    fail_on_config_error = {
        "action": "FailJob",
        "onExitCodes": {"containerName": container()["name"], "operator": "In", "values": [2]},
    }
    assert fail_on_config_error in job["podFailurePolicy"]["rules"]
    assert pod_spec()["restartPolicy"] == "Never"  # podFailurePolicy requires it


def test_pod_runs_as_the_restricted_profile_wants() -> None:
    spec, main = pod_spec(), container()
    assert spec["serviceAccountName"] == SERVICE_ACCOUNT and spec["automountServiceAccountToken"] is True
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert main["name"] == "syncjob" and main["args"] == ["run"] and "command" not in main
    assert main["image"] == "ghcr.io/syncjob/syncjob:0.1.0"
    assert main["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
    }
    assert {"requests", "limits"} <= set(main["resources"])
    assert main["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert [v["name"] for v in spec["volumes"] if "emptyDir" in v] == ["tmp"] == [v["name"] for v in spec["volumes"]]


def test_manifest_settings_are_known_to_the_cli() -> None:
    env = manifest_env()
    assert env, "the CronJob sets no SYNCJOB_* settings"
    not_settings = sorted(n for n in env if not n.startswith(cli.ENV_PREFIX))
    assert not not_settings, f"not SYNCJOB_* settings: {not_settings}"
    unknown = sorted(set(env) - cli.known_env_vars())
    assert not unknown, f"the CLI does not read {unknown}; it knows {sorted(cli.known_env_vars())}"
    for name in re.findall(r"#\s*- name: (SYNCJOB_\w+)", MANIFEST.read_text()):  # commented examples too
        assert name in cli.known_env_vars(), name


def run_with_manifest_env(*flags: str) -> subprocess.CompletedProcess[str]:
    """`syncjob run FLAGS -o json` in its own process, with exactly the manifest's environment."""
    return subprocess.run(
        [sys.executable, "-m", "syncjob", "run", *flags, "-o", "json"],
        capture_output=True,
        text=True,
        env=manifest_env(),
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_manifest_settings_parse_in_a_run() -> None:
    """The CLI, in its own process, with exactly the manifest's environment (plus a snapshot)."""
    proc = run_with_manifest_env("--snapshot", str(EXAMPLE_SNAPSHOT))
    assert proc.returncode != 2, proc.stderr
    assert "unknown_env_var" not in proc.stderr
    summary = json.loads(proc.stdout)["summary"]
    assert summary["mode"].startswith("dry-run")
    # The manifest's source namespace and selector find the example's sources.
    assert summary["sources"] >= 1


def test_install_doc_commands_match_the_manifest() -> None:
    doc = install_doc()
    container_name = container()["name"]
    for line in (
        "kubectl apply -f k8s/cronjob.yaml",
        "kubectl wait --for condition=established crd/secretsyncs.syncjob.dev",
        "kubectl apply -f k8s/fences.yaml",
        "kubectl apply -f k8s/policies/default.yaml",
        f"kubectl -n syncjob set image cronjob/syncjob {container_name}=REGISTRY/syncjob:TAG",
        "kubectl create job --from=cronjob/syncjob syncjob-manual-$(date +%s) -n syncjob",
        "syncjob run --dry-run --kubeconfig ~/.kube/config -o table",
        "kubectl delete -f k8s/cronjob.yaml",
        UNINSTALL_PATCH,
        "syncjob run --kubeconfig ~/.kube/config --max-delete 1000 -o table",
        "cannot narrow `list` by label",
    ):
        assert line in doc, f"docs/install.md lacks {line!r}"
    # The settings table says what the manifest sets.
    table = dict(re.findall(r"^\| `(SYNCJOB_\w+)` \| `([^`]*)` \|", doc, flags=re.MULTILINE))
    assert table == manifest_env()
    # The documented kubectl run pod: the CronJob's identity and security, and a dry-run.
    name, _, overrides = kubectl_run_command()
    spec = overrides["spec"]
    assert spec["serviceAccountName"] == pod_spec()["serviceAccountName"]
    assert spec["automountServiceAccountToken"] is True
    assert spec["securityContext"] == pod_spec()["securityContext"]
    (run_container,) = spec["containers"]
    assert run_container["name"] == name, "strategic merge finds kubectl run's container by the pod's name"
    assert run_container["securityContext"] == container()["securityContext"]
    assert "--dry-run" in run_container["args"]
    # Every syncjob command on the page is one the CLI accepts, settings included.
    commands = [run_container["args"], *syncjob_commands()]
    assert len(commands) >= 4
    for argv in commands:
        args = cli.build_parser().parse_args(argv)
        cli.settings_from(cli.resolve(args, {}))
    # The optional features the manifest and the doc name are real: a flag, and SecretSync fields.
    assert "--events" in {o.flag for o in cli.RUN_OPTIONS}
    for name in ("--events", "spec.serviceAccounts.patch", "spec.serviceAccounts.create"):
        assert name in doc and name in MANIFEST.read_text(), name
    # The optional role the doc tells you to bind is the manifest's.
    roles = re.findall(r"--(?:cluster)?role=(\S+)", doc)
    assert len(roles) == 1, roles
    for role in roles:
        assert role in {d["metadata"]["name"] for d in manifest_docs() if d["kind"] in ("ClusterRole", "Role")}


# --- 1. accepted by the API server -----------------------------------------------------------


def test_every_object_is_accepted_and_a_dry_run_reapply_is_clean(
    dynamic: DynamicClient, deployed: dict[tuple[str, str], list[str] | None]
) -> None:
    assert set(deployed) == {(d["kind"], d["metadata"]["name"]) for d in manifest_docs()}
    for key, warnings in deployed.items():
        assert not warnings, f"{key}: the API server warned: {warnings}"
    for doc in manifest_docs():
        key = (doc["kind"], doc["metadata"]["name"])
        # Nothing in the manifest was dropped or rewritten on the way in.
        assert missing_fields(doc, live(dynamic, doc)) == [], key
        # kubectl apply --server-side --dry-run=server
        answer, warnings = send(
            dynamic, "server_side_apply", doc, field_manager=FIELD_MANAGER, force_conflicts=True, dry_run="All"
        )
        assert not warnings, f"{key}: {warnings}"
        assert (answer["kind"], answer["metadata"]["name"]) == key


def test_the_no_warnings_check_has_teeth(dynamic: DynamicClient, deployed: object) -> None:
    """The control: a weakened CronJob in the syncjob namespace does draw a PodSecurity warning."""
    weak = copy.deepcopy(one("CronJob"))
    weak["metadata"]["name"] = "syncjob-weak"
    weak["spec"]["jobTemplate"]["spec"]["template"]["spec"]["securityContext"].pop("runAsNonRoot")
    _, warnings = send(dynamic, "create", weak, dry_run="All")
    assert any("PodSecurity" in w and "restricted" in w for w in warnings), warnings


def test_commented_out_bindings_are_valid(dynamic: DynamicClient, deployed: object) -> None:
    bindings = commented_bindings()
    assert {(b["kind"], b["roleRef"]["name"]) for b in bindings} == {("ClusterRoleBinding", "syncjob-optional")}
    for binding in bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]
        _, warnings = send(dynamic, "create", binding, dry_run="All")
        assert not warnings


def test_manual_job_from_the_cronjob_is_admitted(dynamic: DynamicClient, deployed: object) -> None:
    """What `kubectl create job --from=cronjob/syncjob NAME` sends, server dry-run."""
    cronjob = live(dynamic, one("CronJob"))
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "syncjob-manual-test",
            "namespace": NAMESPACE,
            "annotations": {"cronjob.kubernetes.io/instantiate": "manual"},
            "labels": dict(one("CronJob")["spec"]["jobTemplate"]["metadata"]["labels"]),
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "CronJob",
                    "name": "syncjob",
                    "uid": cronjob["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "spec": copy.deepcopy(one("CronJob")["spec"]["jobTemplate"]["spec"]),
    }
    answer, warnings = send(dynamic, "create", job, dry_run="All")
    assert not warnings
    assert missing_fields(job_spec(), answer["spec"]) == []


# --- 2. Pod Security admission ---------------------------------------------------------------


@pytest.fixture
def restricted_ns(cluster: ControlPlane, core: k8s.CoreV1Api) -> str:
    ns = cluster.new_namespace("psa", labels={"pod-security.kubernetes.io/enforce": "restricted"})
    account = copy.deepcopy(one("ServiceAccount"))
    account["metadata"]["namespace"] = ns
    core.create_namespaced_service_account(ns, account)
    return ns


def test_the_pod_template_is_admitted_under_restricted(core: k8s.CoreV1Api, restricted_ns: str) -> None:
    pod = core.create_namespaced_pod(restricted_ns, pod_from_template("syncjob"))
    assert pod.spec.service_account_name == SERVICE_ACCOUNT
    # The ServiceAccount does not automount; the pod asks for its token, and gets it.
    (main,) = pod.spec.containers
    assert TOKEN_PATH in {m.mount_path for m in main.volume_mounts}


def _no_run_as_non_root(pod: dict[str, Any]) -> None:
    pod["spec"]["securityContext"].pop("runAsNonRoot")


def _privilege_escalation(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = True


def _no_seccomp(pod: dict[str, Any]) -> None:
    pod["spec"]["securityContext"].pop("seccompProfile")


def _capabilities_kept(pod: dict[str, Any]) -> None:
    pod["spec"]["containers"][0]["securityContext"].pop("capabilities")


@pytest.mark.parametrize("weaken", [_no_run_as_non_root, _privilege_escalation, _no_seccomp, _capabilities_kept])
def test_a_weakened_pod_template_is_refused(
    core: k8s.CoreV1Api, restricted_ns: str, weaken: Callable[[dict[str, Any]], None]
) -> None:
    pod = pod_from_template("weak")
    weaken(pod)
    error = forbidden(lambda: core.create_namespaced_pod(restricted_ns, pod))
    assert "violates PodSecurity" in error.body and "restricted" in error.body


def test_the_documented_kubectl_run_pod_is_admitted(cluster: ControlPlane, deployed: object) -> None:
    pod = kubectl_run_pod()
    with cluster.admin_client() as api:
        response = k8s.CoreV1Api(api).create_namespaced_pod(NAMESPACE, pod, dry_run="All", _preload_content=False)
        answer = json.loads(response.data)
    assert not warnings_of(response)
    assert answer["spec"]["serviceAccountName"] == SERVICE_ACCOUNT
    (main,) = answer["spec"]["containers"]
    assert main["args"][:2] == ["run", "--dry-run"]
    assert TOKEN_PATH in {m["mountPath"] for m in main["volumeMounts"]}


# --- 3. the manifest's identity: enough, and no more ------------------------------------------


def test_a_full_run_with_the_manifest_identity(env: SyncEnv, sa_kubeconfig: Path) -> None:
    a, b = env.build_namespace("a"), env.build_namespace("b", kind="builds")
    env.put_source()
    env.put_source("extra", labels={})  # named in spec.sources.names: a GET, not the LIST by label
    env.set_policy(sources={"names": [f"{env.source_ns}/extra"]})

    first = env.run(kubeconfig=sa_kubeconfig)
    assert first.code == 0, first.stderr
    assert sorted(env.copies()) == sorted(f"{ns}/{name}" for ns in (a, b) for name in ("regcred", "extra"))
    assert first.summary["actions"]["create"] == {"done": 4}

    source = env.put_source(data=docker_config(password="rotated"))
    second = env.run(kubeconfig=sa_kubeconfig)
    assert second.code == 0, second.stderr
    assert second.summary["actions"]["update"] == {"done": 2}
    assert all(env.copies()[f"{ns}/regcred"].data == source.data for ns in (a, b))

    env.core.delete_namespaced_secret("regcred", env.source_ns)
    env.core.delete_namespaced_secret("extra", env.source_ns)
    env.set_policy()  # and `extra` is no longer named
    third = env.run(kubeconfig=sa_kubeconfig)
    assert third.code == 0, third.stderr
    assert third.summary["actions"]["delete"] == {"done": 4}
    assert env.copies() == {}
    # Each run wrote its SecretSync's status with the manifest's identity.
    status = env.policy_object()["status"]
    assert status["lastRun"]["exitCode"] == 0 and status["conditions"][0]["reason"] == "InSync"


def test_the_documented_uninstall_run_removes_every_copy(env: SyncEnv, sa_kubeconfig: Path) -> None:
    targets = [env.build_namespace(f"n{i}") for i in range(12)]
    env.put_source()
    assert env.run(kubeconfig=sa_kubeconfig).code == 0
    assert len(env.copies()) == 12
    # The patch docs/install.md gives, on this env's SecretSync.
    patch = json.loads(shlex.split(UNINSTALL_PATCH)[-1])
    env.custom.patch_cluster_custom_object("syncjob.dev", "v1alpha1", "secretsyncs", env.prefix, patch)
    # 12 deletes of 12 copies: the mass-deletion guard holds them...
    held = env.run(kubeconfig=sa_kubeconfig)
    assert held.code == 1 and len(env.copies()) == 12
    # ...until --max-delete allows them, as docs/install.md says.
    removed = env.run("--max-delete", "1000", kubeconfig=sa_kubeconfig)
    assert removed.code == 0, removed.stderr
    assert env.copies() == {}
    assert all(env.secret(ns) is None for ns in targets)


def test_the_manifest_identity_is_denied_everything_else(cluster: ControlPlane, ns: str, deployed: object) -> None:
    with cluster.service_account_client(NAMESPACE, SERVICE_ACCOUNT, create=False) as api:
        core = k8s.CoreV1Api(api)
        forbidden(core.list_pod_for_all_namespaces)
        forbidden(lambda: core.list_namespaced_pod(ns))
        forbidden(lambda: core.read_namespaced_config_map("anything", ns))
        forbidden(lambda: core.list_namespaced_config_map(ns))
        forbidden(lambda: core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=f"{ns}-new"))))
        # The optional roles are applied but not bound.
        account = k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="x"))
        forbidden(lambda: core.create_namespaced_service_account(ns, account))
        forbidden(lambda: core.patch_namespaced_service_account("x", ns, {"imagePullSecrets": []}))
        event = k8s.CoreV1Event(
            metadata=k8s.V1ObjectMeta(name="x"), involved_object=k8s.V1ObjectReference(name="x", namespace=ns)
        )
        forbidden(lambda: core.create_namespaced_event(ns, event))
        lease = k8s.V1Lease(metadata=k8s.V1ObjectMeta(name="syncjob"))
        forbidden(lambda: k8s.CoordinationV1Api(api).create_namespaced_lease(NAMESPACE, lease))
        # Verbs a run never uses, even on the kinds it may touch.
        for verb, resource, group in (
            ("update", "secretsyncs", "syncjob.dev"),  # the job reports on its intent, never edits it
            ("create", "secretsyncs", "syncjob.dev"),
            ("patch", "secrets", ""),
            ("get", "namespaces", ""),
            ("get", "images", "kpack.io"),
            ("watch", "secrets", ""),
            ("deletecollection", "secrets", ""),
            ("delete", "namespaces", ""),
            ("create", "images", "kpack.io"),
            ("create", "pods/exec", ""),
            ("impersonate", "serviceaccounts", ""),
            ("bind", "clusterroles", "rbac.authorization.k8s.io"),
        ):
            assert not self_review(api, verb, resource, group, ns), f"{verb} {resource} is allowed"
        # The price of `list secrets` (see the manifest's warning): every Secret is readable.
        with cluster.admin_client() as admin:
            k8s.CoreV1Api(admin).create_namespaced_secret(
                ns, k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="unrelated"), string_data={"k": "v"})
            )
        assert core.read_namespaced_secret("unrelated", ns).data == {"k": "dg=="}


def test_the_optional_role_covers_the_optional_features(cluster: ControlPlane, env: SyncEnv, deployed: object) -> None:
    """Bound as docs/install.md says - to a second identity, so the manifest's own stays unbound."""
    home = cluster.new_namespace("optional")
    account = "syncjob-full"
    cluster.ensure_service_account(home, account)
    with cluster.admin_client() as admin:
        for role in ("syncjob", "syncjob-optional"):
            k8s.RbacAuthorizationV1Api(admin).create_cluster_role_binding(
                {
                    "apiVersion": "rbac.authorization.k8s.io/v1",
                    "kind": "ClusterRoleBinding",
                    "metadata": {"name": f"{home}-{role}"},
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                    "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": home}],
                }
            )
    with cluster.service_account_client(home, account, create=False) as api:
        wait_for(
            lambda: self_review(api, "list", "secrets") and self_review(api, "create", "serviceaccounts"),
            "the optional role's binding to take effect",
        )
    kubeconfig = cluster.service_account_kubeconfig(home, account, create=False)
    a = env.build_namespace("a")
    env.put_source()
    env.set_policy(serviceAccounts={"patch": ["builder"], "create": True})

    result = env.run("--events", kubeconfig=kubeconfig)
    assert result.code == 0, result.stderr
    assert "event_failed" not in result.stderr
    builder = env.core.read_namespaced_service_account("builder", a)
    assert [ref.name for ref in builder.image_pull_secrets or []] == ["regcred"]
    events = env.core.list_namespaced_event(env.source_ns).items
    assert any(e.involved_object.name == "regcred" for e in events), events

    # The same features with the manifest's identity alone: refused, and said so.
    sa_kubeconfig = cluster.service_account_kubeconfig(NAMESPACE, SERVICE_ACCOUNT, create=False)
    refused = env.run(kubeconfig=sa_kubeconfig)
    assert refused.code == 2 and "forbidden" in refused.stderr.lower(), refused.stderr


# --- 4. the manifest's settings with the manifest's identity ---------------------------------


def test_manifest_settings_and_identity_plan_against_the_cluster(env: SyncEnv, sa_kubeconfig: Path) -> None:
    """The CronJob's run, as far as a test can make it: its env, its identity, every SecretSync, a dry-run."""
    env.build_namespace("a")
    env.put_source()
    env.only_my_policies()  # other tests' SecretSyncs are theirs to judge
    proc = run_with_manifest_env("--kubeconfig", str(sa_kubeconfig), "--dry-run")
    assert proc.returncode != 2, proc.stderr
    assert "unknown_env_var" not in proc.stderr and "forbidden" not in proc.stderr.lower()
    summary = json.loads(proc.stdout)["summary"]
    assert summary["mode"] == "dry-run (client)"
    assert summary["requests"]["list"] >= 5


def test_readme_gives_the_same_commands_as_the_install_guide() -> None:
    readme = (ROOT / "README.md").read_text()
    (run_block,) = [b for b in shell_blocks(install_doc()) if "kubectl run " in b]
    assert run_block in shell_blocks(readme), "README's kubectl run must be the one docs/install.md documents"
    for line in (
        "kubectl apply -f k8s/cronjob.yaml",
        "kubectl apply -f k8s/fences.yaml",
        "kubectl apply -f k8s/policies/default.yaml",
        "kubectl -n syncjob set image cronjob/syncjob syncjob=REGISTRY/syncjob:TAG",
        "kubectl create job --from=cronjob/syncjob syncjob-manual-$(date +%s) -n syncjob",
        "syncjob run --dry-run --kubeconfig ~/.kube/config -o table",
        "kubectl delete -f k8s/cronjob.yaml",
    ):
        assert line in readme, f"README.md lacks {line!r}"


_VERBS = {"POST": "create", "PUT": "update", "DELETE": "delete", "PATCH": "patch"}
_PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/[^/]+)?/(?P<resource>[a-z]+)"
                   r"(?:/(?P<name>[^/?]+))?(?:/(?P<sub>[a-z]+))?")  # fmt: skip


def rbac_request(method: str, path: str) -> tuple[str, str, str] | None:
    """(API group, resource[/subresource], verb) of a request, as RBAC sees it; None for discovery."""
    found = _PATH.match(path.split("?", maxsplit=1)[0])
    if found is None or (found["name"] is None and found["resource"] == "namespaces" and method != "GET"):
        return None
    resource = found["resource"] + (f"/{found['sub']}" if found["sub"] else "")
    if method == "GET":
        verb = "get" if found["name"] and found["resource"] != "namespaces" else "list"
    else:
        verb = _VERBS[method]
    return found["group"] or "", resource, verb


def test_every_verb_the_cluster_role_grants_is_one_a_run_uses(
    cluster: ControlPlane, env: SyncEnv, sa_kubeconfig: Path, tmp_path: Path
) -> None:
    """Runs as the manifest's identity, through a recording proxy: every (resource, verb) the ClusterRole
    grants shows up among the requests the runs sent, and no request needed more."""
    from tests.faultproxy import FaultProxy

    token = yaml.safe_load(sa_kubeconfig.read_text())["users"][0]["user"]["token"]
    a, b = env.build_namespace("a"), env.build_namespace("b", kind="builds")
    env.put_source()
    env.put_source("extra", labels={})
    env.set_policy(sources={"names": [f"{env.source_ns}/extra"]})
    env.only_my_policies()
    with FaultProxy(cluster) as proxy:
        config = yaml.safe_load(proxy.kubeconfig(tmp_path / "proxy.kubeconfig").read_text())
        config["users"][0]["user"]["token"] = token
        kubeconfig = tmp_path / "sa-proxy.kubeconfig"
        kubeconfig.write_text(json.dumps(config))
        argv = ["run", "--kubeconfig", str(kubeconfig), "-o", "json"]
        assert env.run_process(argv=argv).code == 0  # every SecretSync: LIST secretsyncs
        env.put_source(data=docker_config(password="rotated"))
        env.remove_builds(b)
        second = env.run(kubeconfig=kubeconfig)  # --policy NAME: GET the SecretSync
        assert second.code == 0, second.stderr
        assert second.summary["actions"]["update"] == {"done": 1} and second.summary["actions"]["delete"] == {"done": 2}
        used = {r for s in proxy.seen if (r := rbac_request(s.method, s.path)) is not None}
    granted = {(g, r, v) for (g, r), verbs in EXPECTED_RULES.items() for v in verbs}
    assert granted - used == set(), f"granted but never used: {sorted(granted - used)}"
    assert used - granted == set(), f"used but not granted: {sorted(used - granted)}"
    assert env.secret(a) is not None and env.secret(b) is None
