"""SecretSync objects → Policy: defaults, every field, and refusals that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from syncjob.config import BuildResource
from syncjob.model import Ref
from syncjob.policy import InvalidPolicy, Policy, policy_from
from syncjob.selector import selector_from_spec

ROOT = Path(__file__).resolve().parent.parent


def secretsync(spec: dict[str, Any] | None = None, name: str = "blue") -> dict[str, Any]:
    return {"apiVersion": "syncjob.dev/v1alpha1", "kind": "SecretSync", "metadata": {"name": name}, "spec": spec}


def parsed(spec: dict[str, Any] | None = None, name: str = "blue") -> Policy:
    policy = policy_from(secretsync(spec, name))
    assert isinstance(policy, Policy), policy
    return policy


def refusal(spec: dict[str, Any], name: str = "blue") -> str:
    policy = policy_from(secretsync(spec, name))
    assert isinstance(policy, InvalidPolicy), policy
    return policy.message


def test_an_empty_spec_is_the_tanzu_build_service_convention() -> None:
    p = parsed(None)
    assert p.instance == "blue"
    assert p.source_namespace == "build-service"
    assert p.source_selector.text == "com.vmware.tanzu.buildservice.sync=true"
    assert p.types == ("kubernetes.io/dockerconfigjson", "kubernetes.io/dockercfg")
    assert p.build_resources == (BuildResource("builds", "kpack.io"), BuildResource("images", "kpack.io"))
    assert p.by_builds and not p.all_namespaces and p.namespace_selector is None
    assert (p.include, p.exclude, p.sources, p.max_delete, p.conflict_policy) == ((), (), (), None, "Report")
    assert p.excluded == ("kube-system", "kube-public", "kube-node-lease")


def test_every_field() -> None:
    p = parsed(
        {
            "sources": {
                "namespace": "creds",
                "selector": {"matchExpressions": [{"key": "kind", "operator": "In", "values": ["git", "oci"]}]},
                "names": ["team-05/team-token"],
            },
            "types": ["Opaque"],
            "targets": {
                "namespaceSelector": {"matchLabels": {"builds": "yes"}},
                "include": ["t-*"],
                "exclude": ["t-?"],
            },
            "serviceAccounts": {"patch": ["builder"], "create": True},
            "copyMetadata": {"labels": ["team"], "annotations": ["note/*"]},
            "conflictPolicy": "Fail",
            "maxDelete": 3,
        }
    )
    assert p.source_namespace == "creds" and p.source_selector.text == "kind in (git,oci)"
    assert p.sources == (Ref("team-05", "team-token"),)
    assert p.types == ("Opaque",)
    assert p.namespace_selector is not None and p.namespace_selector.text == "builds=yes"
    assert not p.by_builds and p.build_resources == ()
    assert (p.include, p.exclude) == (("t-*",), ("t-?",))
    assert (p.patch_service_accounts, p.create_service_accounts) == (("builder",), True)
    assert (p.copy_labels, p.copy_annotations, p.conflict_policy, p.max_delete) == (("team",), ("note/*",), "Fail", 3)


def test_an_empty_source_selector_selects_every_secret_but_a_missing_one_is_the_default() -> None:
    assert parsed({"sources": {"selector": {}}}).source_selector.text == ""
    assert parsed({"sources": {"namespace": "x"}}).source_selector.text == "com.vmware.tanzu.buildservice.sync=true"


def test_build_kinds_with_and_without_a_version() -> None:
    p = parsed({"targets": {"builds": ["customruns.tekton.dev", "workflows.v1alpha1.argoproj.io"]}})
    assert p.build_resources == (
        BuildResource("customruns", "tekton.dev"),
        BuildResource("workflows", "argoproj.io", "v1alpha1"),
    )


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ({"types": []}, "spec.types is empty"),
        ({"types": ["kubernetes.io/service-account-token"]}, "never synced"),
        ({"types": ["not a type"]}, "spec.types"),
        ({"sources": {"namespace": "Not_NS"}}, "spec.sources.namespace"),
        ({"sources": {"names": ["no-slash"]}}, "spec.sources.names[0]"),
        ({"sources": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}}, "needs at least one"),
        ({"sources": {"selector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}}}, "operator 'Has'"),
        ({"targets": {"builds": ["kpack"]}}, "spec.targets.builds[0]"),
        ({"targets": {"builds": []}}, "no way to choose targets"),
        ({"targets": {"allNamespaces": True, "namespaceSelector": {}}}, "exclude each other"),
        ({"targets": {"allNamespaces": True, "builds": ["images.kpack.io"]}}, "Keep one way"),
        ({"targets": {"exclude": ["Team_A"]}}, "spec.targets.exclude"),
        ({"serviceAccounts": {"create": True}}, "spec.serviceAccounts.create needs"),
        ({"conflictPolicy": "Overwrite"}, "spec.conflictPolicy"),
        ({"maxDelete": -1}, "spec.maxDelete"),
        ({"unknownField": 1}, "unknownField"),
    ],
)
def test_what_the_job_refuses_names_the_field(spec: dict[str, Any], fragment: str) -> None:
    assert fragment in refusal(spec)


def test_the_name_must_be_a_label_value() -> None:
    assert "metadata.name" in refusal({}, name="x" * 64)


def test_selector_from_spec_matches_like_the_api_server() -> None:
    sel = selector_from_spec(
        {
            "matchLabels": {"team": "a"},
            "matchExpressions": [
                {"key": "tier", "operator": "NotIn", "values": ["prod"]},
                {"key": "builds", "operator": "Exists"},
                {"key": "skip", "operator": "DoesNotExist"},
            ],
        },
        "spec.targets.namespaceSelector",
    )
    assert sel.text == "team=a,tier notin (prod),builds,!skip"
    assert sel.matches({"team": "a", "builds": ""})
    assert sel.matches({"team": "a", "builds": "", "tier": "dev"})
    assert not sel.matches({"team": "a", "builds": "", "tier": "prod"})
    assert not sel.matches({"team": "a", "builds": "", "skip": "1"})
    assert not sel.matches({"team": "a"})


def _crd() -> dict[str, Any]:
    docs = yaml.safe_load_all((ROOT / "k8s" / "cronjob.yaml").read_text())
    return next(d for d in docs if d and d.get("kind") == "CustomResourceDefinition")


def test_the_crd_defaults_are_the_ones_the_job_applies() -> None:
    """A policy file (no server-side defaulting) and a cluster object (defaulted) must plan the same."""
    (version,) = _crd()["spec"]["versions"]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    defaulted = {
        "sources": {
            "namespace": spec["sources"]["properties"]["namespace"]["default"],
            "selector": spec["sources"]["properties"]["selector"]["default"],
        },
        "types": spec["types"]["default"],
        "conflictPolicy": spec["conflictPolicy"]["default"],
    }
    assert parsed(defaulted) == parsed({})


def test_the_default_policy_file_is_the_default() -> None:
    (doc,) = yaml.safe_load_all((ROOT / "k8s" / "policies" / "default.yaml").read_text())
    assert doc["metadata"]["name"] == "syncjob"
    assert policy_from(doc) == parsed({}, name="syncjob")


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "policies").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_policy_parses(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        assert isinstance(policy_from(doc), Policy), path
