"""API objects (JSON dicts, as the API server and dump files give them) → snapshot dataclasses, on
literal data: every field read from where Kubernetes puts it, and what an absent field means."""

from __future__ import annotations

import hashlib
import json

from syncjob.model import Copy, Namespace, Occupant, ServiceAccount, Source
from syncjob.objects import (
    copy_from,
    is_own_copy,
    is_syncjob_own,
    managed_selector,
    namespace_from,
    occupant_from,
    proof_key_from,
    service_account_from,
    source_from,
)

SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {
        "name": "regcred",
        "namespace": "team-a",
        "uid": "u-1",
        "resourceVersion": "42",
        "creationTimestamp": "2026-11-01T10:00:00Z",
        "labels": {"app.kubernetes.io/managed-by": "syncjob", "syncjob.dev/instance": "blue", "n": 7},
        "annotations": {"syncjob.dev/source-name": "regcred"},
    },
    "type": "kubernetes.io/dockerconfigjson",
    "data": {".dockerconfigjson": "e30="},
    "immutable": True,
}


def digest(secret_type: str, data: dict[str, str]) -> str:
    """sha256 over [type, sorted (key, base64 value) pairs] as compact JSON: the digest's definition."""
    canonical = json.dumps([secret_type, sorted(data.items())], separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def test_a_secret_as_a_source() -> None:
    assert source_from(SECRET) == Source(
        namespace="team-a",
        name="regcred",
        uid="u-1",
        type="kubernetes.io/dockerconfigjson",
        data={".dockerconfigjson": "e30="},
        labels={"app.kubernetes.io/managed-by": "syncjob", "syncjob.dev/instance": "blue", "n": "7"},
        annotations={"syncjob.dev/source-name": "regcred"},
        resource_version="42",
        creation_timestamp="2026-11-01T10:00:00Z",
    )
    assert dict(source_from(SECRET).data) == {".dockerconfigjson": "e30="}  # data is not part of ==


def test_a_secret_as_a_copy_keeps_a_digest_not_the_data() -> None:
    copy = copy_from(SECRET)
    assert copy == Copy(
        namespace="team-a",
        name="regcred",
        uid="u-1",
        resource_version="42",
        type="kubernetes.io/dockerconfigjson",
        digest=digest("kubernetes.io/dockerconfigjson", {".dockerconfigjson": "e30="}),
        labels={"app.kubernetes.io/managed-by": "syncjob", "syncjob.dev/instance": "blue", "n": "7"},
        annotations={"syncjob.dev/source-name": "regcred"},
        immutable=True,
    )
    assert not hasattr(copy, "data")


def test_absent_fields_have_kubernetes_meanings() -> None:
    bare = {"metadata": {"name": "x", "namespace": "ns"}}
    source = source_from(bare)
    assert (source.type, dict(source.data), dict(source.labels), source.uid) == ("Opaque", {}, {}, "")
    assert (source.resource_version, source.creation_timestamp, dict(source.annotations)) == ("", "", {})
    copy = copy_from(bare)
    assert (copy.type, copy.immutable, copy.digest) == ("Opaque", False, digest("Opaque", {}))
    assert copy_from({"metadata": None, "type": None, "data": None}).namespace == ""


def test_who_else_holds_a_name() -> None:
    assert occupant_from(SECRET) == Occupant("team-a", "regcred", "u-1", "syncjob", "blue")
    helm = {"metadata": {"name": "r", "namespace": "b", "uid": "u", "labels": {"app.kubernetes.io/managed-by": "Helm"}}}
    assert occupant_from(helm) == Occupant("b", "r", "u", "Helm", "")
    assert occupant_from({"metadata": {"name": "r", "namespace": "b"}}) == Occupant("b", "r", "", "", "")


def test_namespaces_and_their_phase() -> None:
    labelled = {"metadata": {"name": "team-a", "labels": {"t": "a"}, "annotations": {"x": "y"}}, "status": {}}
    assert namespace_from(labelled) == Namespace("team-a", "Active", {"t": "a"}, {"x": "y"})
    terminating = {"metadata": {"name": "b"}, "status": {"phase": "Terminating"}}
    assert namespace_from(terminating).terminating
    # A deletionTimestamp is enough, whatever the phase says (the phase lags behind).
    deleting = {"metadata": {"name": "c", "deletionTimestamp": "2026-11-01T10:00:00Z"}, "status": {"phase": "Active"}}
    assert namespace_from(deleting).phase == "Terminating"
    assert namespace_from({"metadata": {"name": "d"}}).phase == "Active"


def test_service_accounts_and_their_pull_secrets() -> None:
    account = {
        "metadata": {
            "name": "builder",
            "namespace": "team-a",
            "uid": "sa-1",
            "resourceVersion": "9",
            "annotations": {"syncjob.dev/pull-secrets.blue": "regcred,git"},
        },
        "imagePullSecrets": [{"name": "own"}, {"name": "regcred"}, "not-a-reference"],
    }
    parsed = service_account_from(account)
    assert parsed == ServiceAccount(
        "team-a", "builder", "sa-1", "9", ("own", "regcred"), {"syncjob.dev/pull-secrets.blue": "regcred,git"}
    )
    assert parsed.added_by("blue") == ("regcred", "git") and parsed.added_by("green") == ()
    assert service_account_from({"metadata": {"name": "a", "namespace": "b"}}).image_pull_secrets == ()


def test_what_counts_as_this_instances_labels() -> None:
    assert managed_selector("blue") == "app.kubernetes.io/managed-by=syncjob,syncjob.dev/instance=blue"
    assert is_own_copy(SECRET, "blue") and not is_own_copy(SECRET, "green")
    other_tool = {"metadata": {"labels": {"app.kubernetes.io/managed-by": "Helm", "syncjob.dev/instance": "blue"}}}
    assert not is_own_copy(other_tool, "blue")
    assert not is_own_copy({"metadata": {}}, "blue")
    assert is_syncjob_own(source_from(SECRET))
    assert not is_syncjob_own(source_from(other_tool))


def test_an_empty_object_decodes_to_empty_fields_not_none() -> None:
    """A dump may hold anything: a missing field is the empty string (never "None"), so it never matches."""
    empty = digest("Opaque", {})
    assert source_from({}) == Source("", "", "", "Opaque", {}, {}, {}, "", "")
    assert copy_from({}) == Copy("", "", "", "", "Opaque", empty, {}, {}, False)
    assert occupant_from({}) == Occupant("", "", "", "", "")
    assert namespace_from({}) == Namespace("", "Active", {}, {})
    assert service_account_from({"imagePullSecrets": [{}]}) == ServiceAccount("", "", "", "", ("",), {})


def test_a_proof_key_decodes_or_proves_nothing() -> None:
    assert proof_key_from({"data": {"key": "a2V5LWJ5dGVz"}}) == b"key-bytes"
    for damaged in ({"data": {"key": "not base64!"}}, {"data": {"key": ""}}, {"data": None}, {}):
        assert proof_key_from(damaged) is None
