"""SecretSync objects → Policy: defaults, every field, and refusals that name the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from syncjob.config import BuildResource
from syncjob.errors import ConfigError
from syncjob.model import Ref
from syncjob.policy import InvalidPolicy, Policy, is_secretsync, policy_from
from syncjob.selector import is_dns_subdomain, selector_from_spec

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


REFUSALS = [
    ({"types": []}, "spec.types is empty; leave it out for the default kubernetes.io/dockerconfigjson, "
     "kubernetes.io/dockercfg"),
    ({"types": ["kubernetes.io/service-account-token"]},
     "spec.types: kubernetes.io/service-account-token is never synced (a token copy is a new identity)"),
    ({"types": ["not a type"]},
     "spec.types: 'not a type' is not a Secret type, e.g. Opaque or kubernetes.io/dockerconfigjson"),
    ({"types": "Opaque"}, "spec.types: expected a list of strings"),
    ({"sources": "x"}, "spec.sources: expected an object"),
    ({"sources": {"namespace": "Not_NS"}}, "spec.sources.namespace: 'Not_NS' is not a namespace name"),
    ({"sources": {"names": ["no-slash"]}},
     "spec.sources.names[0]: 'no-slash' is not NAMESPACE/NAME, e.g. build-service/registry-credentials"),
    ({"sources": {"names": [1]}}, "spec.sources.names: expected a list of strings"),
    ({"sources": {"selector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}},
     "spec.sources.selector.matchExpressions[0]: operator In needs at least one value"),
    ({"sources": {"selector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}}},
     "spec.sources.selector.matchExpressions[0]: operator 'Has' is not one of In, NotIn, Exists, DoesNotExist"),
    ({"targets": "x"}, "spec.targets: expected an object"),
    ({"targets": {"builds": ["kpack"]}}, "spec.targets.builds[0]: 'kpack' is not PLURAL.GROUP or PLURAL.VERSION.GROUP, "
     "e.g. builds.kpack.io or pipelineruns.v1.tekton.dev"),
    ({"targets": {"builds": []}}, "spec.targets.builds is empty: no way to choose targets. List build kinds, or set "
     "allNamespaces or namespaceSelector"),
    ({"targets": {"allNamespaces": "yes"}}, "spec.targets.allNamespaces: expected true or false"),
    ({"targets": {"allNamespaces": True, "namespaceSelector": {}}},
     "spec.targets: allNamespaces and namespaceSelector exclude each other; keep one"),
    ({"targets": {"allNamespaces": True, "builds": ["images.kpack.io"]}},
     "spec.targets.builds chooses targets by builds; allNamespaces and namespaceSelector choose them otherwise. "
     "Keep one way"),
    ({"targets": {"namespaceSelector": {"matchLabels": {"bad key": "x"}}}},
     "spec.targets.namespaceSelector.matchLabels: 'bad key' is not a valid label key (alphanumerics, '-', '_', '.', "
     "at most 63 characters, optional DNS prefix and '/')"),
    ({"targets": {"namespaceSelector": {"matchLabels": {"team": "not valid"}}}},
     "spec.targets.namespaceSelector.matchLabels[team]: 'not valid' is not a valid label value"),
    ({"targets": {"namespaceSelector": {"matchExpressions": [{"key": "t", "operator": "In", "values": ["a b"]}]}}},
     "spec.targets.namespaceSelector.matchExpressions[0]: 'a b' is not a valid label value"),
    ({"targets": {"namespaceSelector": {"matchExpressions": [{"key": "t", "operator": "Exists", "values": ["a"]}]}}},
     "spec.targets.namespaceSelector.matchExpressions[0]: operator Exists takes no values"),
    ({"targets": {"namespaceSelector": {"matchLabels": ["a"]}}},
     "spec.targets.namespaceSelector.matchLabels: expected a map of label keys to values"),
    ({"targets": {"namespaceSelector": {"matchExpressions": {}}}},
     "spec.targets.namespaceSelector.matchExpressions: expected a list"),
    ({"targets": {"namespaceSelector": {"matchExpressions": ["t"]}}},
     "spec.targets.namespaceSelector.matchExpressions[0]: expected key, operator and values"),
    ({"targets": {"namespaceSelector": {"matchExpressions": [{"key": "t", "operator": "In", "values": "a"}]}}},
     "spec.targets.namespaceSelector.matchExpressions[0].values: expected a list"),
    ({"targets": {"namespaceSelector": {"labels": {}}}},
     "spec.targets.namespaceSelector: unknown field(s) labels; use matchLabels, matchExpressions"),
    ({"targets": {"namespaceSelector": "team=a"}},
     "spec.targets.namespaceSelector: expected a label selector (matchLabels and/or matchExpressions)"),
    ({"sources": {"names": ["Bad_NS/x"]}},
     "spec.sources.names[0]: 'Bad_NS/x' is not NAMESPACE/NAME, e.g. build-service/registry-credentials"),
    ({"sources": {"names": ["ns/Bad_Name"]}},
     "spec.sources.names[0]: 'ns/Bad_Name' is not NAMESPACE/NAME, e.g. build-service/registry-credentials"),
    ({"targets": {"exclude": ["Team_A"]}},
     "spec.targets.exclude: 'Team_A' is not a namespace glob (lower-case letters, digits, '-', '*' and '?')"),
    ({"targets": {"include": "x"}}, "spec.targets.include: expected a list of strings"),
    ({"serviceAccounts": "x"}, "spec.serviceAccounts: expected an object"),
    ({"serviceAccounts": {"create": True}},
     "spec.serviceAccounts.create needs spec.serviceAccounts.patch (the names to create)"),
    ({"serviceAccounts": {"create": "yes", "patch": ["a"]}}, "spec.serviceAccounts.create: expected true or false"),
    ({"serviceAccounts": {"patch": ["Bad_Name"]}},
     "spec.serviceAccounts.patch: 'Bad_Name' is not a ServiceAccount name"),
    ({"serviceAccounts": {"patch": "builder"}}, "spec.serviceAccounts.patch: expected a list of strings"),
    ({"copyMetadata": "x"}, "spec.copyMetadata: expected an object"),
    ({"copyMetadata": {"labels": "team"}}, "spec.copyMetadata.labels: expected a list of strings"),
    ({"copyMetadata": {"annotations": [1]}}, "spec.copyMetadata.annotations: expected a list of strings"),
    ({"conflictPolicy": "Overwrite"}, "spec.conflictPolicy: 'Overwrite' is not one of Report, Fail"),
    ({"maxDelete": -1}, "spec.maxDelete: expected a whole number, 0 or more"),
    ({"maxDelete": True}, "spec.maxDelete: expected a whole number, 0 or more"),
    ({"maxDelete": "5"}, "spec.maxDelete: expected a whole number, 0 or more"),
    ({"unknownField": 1, "alsoUnknown": 2}, "spec: unknown field(s) alsoUnknown, unknownField"),
]  # fmt: skip


@pytest.mark.parametrize(("spec", "message"), REFUSALS, ids=[str(i) for i in range(len(REFUSALS))])
def test_what_the_job_refuses_it_says_exactly(spec: dict[str, Any], message: str) -> None:
    assert refusal(spec) == message


def test_a_spec_that_is_not_an_object_and_a_missing_name() -> None:
    assert policy_from({"metadata": {"name": "blue"}, "spec": "x"}) == InvalidPolicy("blue", "spec: expected an object")
    assert policy_from({"spec": {}}) == InvalidPolicy("<unnamed>", "metadata.name is missing")
    assert policy_from({"metadata": "x", "spec": {}}) == InvalidPolicy("<unnamed>", "metadata.name is missing")
    parsed = policy_from({"metadata": {"name": "blue", "generation": 4}, "spec": {}}, origin="file")
    assert isinstance(parsed, Policy) and (parsed.generation, parsed.origin) == (4, "file")


def test_what_a_secretsync_is() -> None:
    assert is_secretsync({"apiVersion": "syncjob.dev/v1alpha1", "kind": "SecretSync"})
    assert is_secretsync({"apiVersion": "syncjob.dev/v1beta1", "kind": "SecretSync"})
    assert not is_secretsync({"apiVersion": "example.com/v1", "kind": "SecretSync"})
    assert not is_secretsync({"apiVersion": "syncjob.dev/v1alpha1", "kind": "Secret"})
    assert not is_secretsync({"kind": "SecretSync"})


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
    assert not sel.matches({"team": "b", "builds": ""})  # a matchLabels value must be equal, not just present
    assert selector_from_spec({}, "x").matches({}) and selector_from_spec(None, "x").text == ""
    in_set = selector_from_spec({"matchExpressions": [{"key": "t", "operator": "In", "values": ["a", "b"]}]}, "x")
    assert in_set.text == "t in (a,b)" and in_set.matches({"t": "b"})
    assert not in_set.matches({"t": "c"}) and not in_set.matches({})


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


def test_more_of_what_the_schema_would_refuse() -> None:
    assert refusal({"targets": {"builds": "images.kpack.io"}}) == "spec.targets.builds: expected a list of strings"
    assert refusal({"targets": {"include": ["Bad_Glob"]}}) == (
        "spec.targets.include: 'Bad_Glob' is not a namespace glob (lower-case letters, digits, '-', '*' and '?')"
    )
    assert refusal({"targets": {"exclude": "x"}}) == "spec.targets.exclude: expected a list of strings"
    assert refusal({}, name="x" * 64) == (
        f"metadata.name {'x' * 64!r}: a SecretSync's name labels its copies, so it must be a valid label value "
        "(at most 63 lower-case letters, digits, '-' and '.')"
    )
    invalid = policy_from({"metadata": {"name": "bad", "generation": 3}, "spec": {"types": []}}, origin="file")
    assert isinstance(invalid, InvalidPolicy) and (invalid.generation, invalid.origin) == (3, "file")
    assert parsed({"maxDelete": 0}).max_delete == 0
    assert parsed({}).all_namespaces is False and parsed({"targets": {"allNamespaces": True}}).all_namespaces is True


def test_selector_edges_word_for_word() -> None:
    where = "spec.targets.namespaceSelector"
    none = selector_from_spec(None, where)
    assert (none.text, none.requirements, none.matches({"a": "b"})) == ("", (), True)

    def error(spec: object) -> str:
        with pytest.raises(ConfigError) as raised:
            selector_from_spec(spec, where)
        return str(raised.value)

    assert error({"a": 1, "b": 2}) == f"{where}: unknown field(s) a, b; use matchLabels, matchExpressions"
    assert error({"matchExpressions": [{"operator": "Exists"}]}) == (
        f"{where}.matchExpressions[0]: '' is not a valid label key (alphanumerics, '-', '_', '.', at most 63 "
        "characters, optional DNS prefix and '/')"
    )
    assert error({"matchExpressions": [{"key": "k"}]}) == (
        f"{where}.matchExpressions[0]: operator '' is not one of In, NotIn, Exists, DoesNotExist"
    )
    assert error({"matchExpressions": [{"key": "k", "operator": "NotIn"}]}) == (
        f"{where}.matchExpressions[0]: operator NotIn needs at least one value"
    )
    assert error({"matchExpressions": [{"key": "k", "operator": "DoesNotExist", "values": ["v"]}]}) == (
        f"{where}.matchExpressions[0]: operator DoesNotExist takes no values"
    )


def test_dns_name_lengths() -> None:
    label = "a" * 63
    longest = ".".join([label, label, label, "a" * 61])  # 253 characters
    assert len(longest) == 253 and is_dns_subdomain(longest)
    assert not is_dns_subdomain(longest + "a")
