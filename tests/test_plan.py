"""The planner on plain data: every action kind, with its reason."""

from __future__ import annotations

from dataclasses import replace

import pytest

from syncjob.config import BuildResource
from syncjob.model import (
    IGNORE_ANNOTATION,
    Action,
    Copy,
    Kind,
    Occupant,
    Plan,
    Ref,
    ServiceAccount,
    Snapshot,
    Source,
    SourceProblem,
    frozen_map,
)
from syncjob.plan import Planner, copy_body, judge_sources, plan
from syncjob.policy import Policy
from syncjob.select import SourceScope, TargetDecision, decide_all, gone, source_scope
from tests.factories import PROOF_KEY, b64, cluster, copy_of, docker_config, ns, occupant, policy, proof_for, source


def kinds(p: Plan) -> dict[tuple[str, str], Kind]:
    return {(a.namespace, a.name): a.kind for a in p.actions}


def test_creates_a_copy_in_every_build_namespace_and_nowhere_else() -> None:
    src = source()
    snap = cluster([src], ["team-a", "team-b", "idle", "kube-system"], builds=["team-a", "team-b", "kube-system"])
    result = kinds(plan(snap, policy()))
    assert result == {("team-a", "regcred"): Kind.CREATE, ("team-b", "regcred"): Kind.CREATE}


def test_in_sync_copy_is_left() -> None:
    src = source()
    snap = cluster([src], ["team-a"], ["team-a"], copies=[copy_of(src, "team-a")])
    (action,) = plan(snap, policy()).actions
    assert (action.kind, action.reason) == (Kind.LEAVE, "in sync")


def test_source_edit_updates_with_the_listed_resource_version() -> None:
    old = source(data=docker_config(password="old-pw-3f9a"))
    new = source(data=docker_config(password="new-pw-7c1e"))
    snap = cluster([new], ["team-a"], ["team-a"], copies=[copy_of(old, "team-a")])
    (action,) = plan(snap, policy()).actions
    assert action.kind is Kind.UPDATE
    assert action.expected_resource_version == "7"
    assert action.expected_uid == "copy-team-a-regcred"


def test_hand_edited_copy_is_repaired() -> None:
    src = source()
    edited = copy_of(src, "team-a", digest="sha256:someone-else")
    relabelled = copy_of(src, "team-b", labels={**copy_of(src, "team-b").labels, "extra": "x"})
    snap = cluster([src], ["team-a", "team-b"], ["team-a", "team-b"], copies=[edited, relabelled])
    actions = {a.namespace: a for a in plan(snap, policy()).actions}
    assert actions["team-a"].kind is Kind.UPDATE and "data" in actions["team-a"].reason
    assert actions["team-b"].kind is Kind.UPDATE and "labels" in actions["team-b"].reason


def test_type_change_and_immutable_copy_are_recreated() -> None:
    src = source(type="kubernetes.io/dockercfg", data={".dockercfg": b64('{"r.io": {"auth": "' + b64("u:p") + '"}}')})
    old_type = copy_of(src, "team-a", type="kubernetes.io/dockerconfigjson")
    frozen = copy_of(src, "team-b", immutable=True, digest="sha256:old")
    snap = cluster([src], ["team-a", "team-b"], ["team-a", "team-b"], copies=[old_type, frozen])
    assert kinds(plan(snap, policy())) == {("team-a", "regcred"): Kind.RECREATE, ("team-b", "regcred"): Kind.RECREATE}


def test_deleted_or_unlabelled_source_deletes_its_copies_with_preconditions() -> None:
    gone = source()
    snap = cluster([], ["team-a"], ["team-a"], copies=[copy_of(gone, "team-a")])
    (action,) = plan(snap, policy()).actions
    assert action.kind is Kind.DELETE
    assert "source deleted" in action.reason
    assert (action.expected_uid, action.expected_resource_version) == ("copy-team-a-regcred", "7")


def test_namespace_without_builds_loses_its_copy() -> None:
    src = source()
    snap = cluster([src], ["team-a", "team-b"], ["team-b"], copies=[copy_of(src, "team-a"), copy_of(src, "team-b")])
    action = next(a for a in plan(snap, policy()).actions if a.namespace == "team-a")
    assert action.kind is Kind.DELETE and "no builds" in action.reason


def test_unmanaged_same_name_secret_is_a_conflict_and_never_written() -> None:
    src = source()
    snap = cluster([src], ["team-a"], ["team-a"], occupants=[occupant("team-a", managed_by="Helm")])
    (action,) = plan(snap, policy()).actions
    assert action.kind is Kind.CONFLICT and "Helm" in action.reason
    assert not action.kind.writes


def test_other_instance_copy_is_a_conflict() -> None:
    src = source()
    snap = cluster([src], ["team-a"], ["team-a"], occupants=[occupant("team-a", managed_by="syncjob", instance="blue")])
    (action,) = plan(snap, policy("green")).actions
    assert action.kind is Kind.CONFLICT and "'blue'" in action.reason


def test_labelled_secrets_that_cannot_be_proven_are_only_reported() -> None:
    src = source()
    no_annotations = copy_of(src, "team-a", annotations={})
    real = copy_of(src, "team-b")
    moved = copy_of(src, "team-c", annotations=real.annotations)  # a real copy's metadata, elsewhere
    unproven = [no_annotations, moved]
    # Where a copy is wanted, an unproven one is in the way (a conflict); elsewhere it is only counted.
    p = plan(cluster([src], ["team-a", "team-b", "team-c"], ["team-a", "team-b"], copies=[*unproven, real]), policy())
    assert kinds(p) == {("team-a", "regcred"): Kind.CONFLICT, ("team-b", "regcred"): Kind.LEAVE}
    assert p.unproven == (Ref("team-a", "regcred"), Ref("team-c", "regcred"))
    assert "2 Secrets carry the labels" in p.notes[0] and "team-c/regcred" in p.notes[0]
    # Without the source, the real copy goes and the unproven ones stay.
    p = plan(cluster([], ["team-a", "team-b", "team-c"], ["team-a", "team-b"], copies=[*unproven, real]), policy())
    assert kinds(p) == {("team-b", "regcred"): Kind.DELETE}


def test_two_sources_with_one_name_are_a_conflict() -> None:
    a, b = source(namespace="build-service"), source(namespace="other-admin")
    snap = cluster([a, b], ["team-a", "other-admin"], ["team-a"])
    settings = policy(sources=(Ref("other-admin", "regcred"),))
    (action,) = plan(snap, settings).actions
    assert action.kind is Kind.CONFLICT and "same name" in action.reason


def test_terminating_namespace_is_skipped_not_written() -> None:
    src = source()
    snap = cluster([src], [ns("dying", phase="Terminating")], ["dying"], copies=[])
    (action,) = plan(snap, policy()).actions
    assert action.kind is Kind.SKIP and "terminating" in action.reason


def test_invalid_source_makes_no_copies_and_leaves_existing_ones() -> None:
    good = source()
    broken = source(data={".dockerconfigjson": b64('{"credsStore": "desktop"}')})
    snap = cluster([broken], ["team-a", "team-b", "idle"], ["team-a", "team-b"], copies=[copy_of(good, "team-a"),
                   copy_of(good, "idle")])  # fmt: skip
    p = plan(snap, policy())
    assert kinds(p) == {("team-a", "regcred"): Kind.LEAVE, ("idle", "regcred"): Kind.LEAVE}
    (problem,) = p.problems
    assert problem.fatal and "credsStore" in problem.message


def test_disabled_type_is_reported_not_synced() -> None:
    opaque = source(type="Opaque", data={"token": b64("t")})
    p = plan(cluster([opaque], ["team-a"], ["team-a"]), policy())
    assert p.actions == ()
    assert not p.problems[0].fatal and "spec.types" in p.problems[0].message
    p2 = plan(cluster([opaque], ["team-a"], ["team-a"]), policy(types=("Opaque",)))
    assert kinds(p2) == {("team-a", "regcred"): Kind.CREATE}


def test_selection_modes_globs_and_opt_out() -> None:
    src = source()
    namespaces = [
        ns("team-a", labels={"builds": "yes"}),
        ns("team-b", labels={"builds": "yes"}),
        ns("team-x", labels={"builds": "yes"}, annotations={IGNORE_ANNOTATION: "true"}),
        ns("other"),
        ns("kube-public", labels={"builds": "yes"}),
    ]
    snap = cluster([src], namespaces, builds=[])
    by_selector = {
        a.namespace for a in plan(snap, policy(namespace_selector={"matchLabels": {"builds": "yes"}})).actions
    }
    assert by_selector == {"team-a", "team-b"}
    everything = {a.namespace for a in plan(snap, policy(all_namespaces=True, exclude=("team-?",))).actions}
    assert everything == {"other"}
    included = {a.namespace for a in plan(snap, policy(all_namespaces=True, include=("team-*",))).actions}
    assert included == {"team-a", "team-b"}


def test_copy_body_carries_only_data_type_and_syncjob_metadata() -> None:
    src = source(
        labels={"com.vmware.tanzu.buildservice.sync": "true", "argocd.argoproj.io/instance": "x", "team": "a"},
        annotations={"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "n"},
    )
    body = copy_body(src, policy(copy_labels=("*",), copy_annotations=("*",)), "team-a")
    assert set(body) == {"apiVersion", "kind", "metadata", "type", "data"}
    assert set(body["metadata"]) == {"name", "namespace", "labels", "annotations"}
    labels, annotations = body["metadata"]["labels"], body["metadata"]["annotations"]
    assert "argocd.argoproj.io/instance" not in labels and labels["team"] == "a"
    assert "kubectl.kubernetes.io/last-applied-configuration" not in annotations and annotations["note"] == "n"
    plain = copy_body(src, policy(), "team-a")["metadata"]["labels"]
    assert set(plain) == {"app.kubernetes.io/managed-by", "syncjob.dev/instance"}


def test_mass_deletion_guard_holds_every_delete() -> None:
    src = source()
    names = [f"team-{i}" for i in range(20)]
    copies = [copy_of(src, n) for n in names]
    snap = cluster([], names, names, copies=copies)  # the source vanished: 20 deletes of 20 copies
    p = plan(snap, policy())
    assert {a.kind for a in p.actions} == {Kind.HOLD}
    assert "--max-delete 20" in p.notes[0]
    assert {a.kind for a in plan(snap, policy(max_delete=20)).actions} == {Kind.DELETE}
    small = cluster([], names[:10], names[:10], copies=copies[:10])
    assert {a.kind for a in plan(small, policy()).actions} == {Kind.DELETE}


def test_build_resource_parsing() -> None:
    assert BuildResource.parse("builds.kpack.io") == BuildResource("builds", "kpack.io")
    assert BuildResource.parse("builds.v1alpha2.kpack.io") == BuildResource("builds", "kpack.io", "v1alpha2")
    assert str(BuildResource.parse("pipelineruns.tekton.dev")) == "pipelineruns.tekton.dev"


def forged(namespace: str, name: str = "regcred", owner: Source | None = None) -> Copy:
    """A Secret a tenant labelled as a copy: the labels and owner annotations, without a valid proof."""
    owner = owner or source()
    return Copy(namespace, name, f"forged-{namespace}-{name}", "1", owner.type, "sha256:x",
                frozen_map({"app.kubernetes.io/managed-by": "syncjob", "syncjob.dev/instance": "syncjob"}),
                frozen_map({"syncjob.dev/source-namespace": owner.namespace, "syncjob.dev/source-name": name,
                            "syncjob.dev/source-uid": owner.uid, "syncjob.dev/proof": "0" * 64}))  # fmt: skip


def test_forged_copies_neither_dilute_nor_trip_the_guard() -> None:
    src = source()
    teams = [f"team-{i:02d}" for i in range(24)]
    real = [copy_of(src, t) for t in teams]
    forgeries = [forged(f"tenant-{i:03d}") for i in range(200)]
    namespaces = [*teams, *(f.namespace for f in forgeries)]
    # The source is gone: 24 deletes of 24 provable copies are held, however many forgeries there are.
    gone = plan(cluster([], namespaces, teams, copies=[*real, *forgeries]), policy())
    assert {a.kind for a in gone.actions} == {Kind.HOLD} and len(gone.actions) == 24
    # 15 forgeries in a namespace without builds do not hold an admin's legitimate opt-out elsewhere.
    tenant = [forged("tenant", f"x{i}", source(f"x{i}")) for i in range(15)]
    opted = [ns(t, annotations={IGNORE_ANNOTATION: "true"}) if t == "team-00" else t for t in teams]
    opt_out = plan(cluster([src], [*opted, "tenant"], teams, copies=[*real, *tenant]), policy())
    assert [(a.kind, a.namespace) for a in opt_out.actions if a.kind.writes or a.kind is Kind.HOLD] == [
        (Kind.DELETE, "team-00")
    ]
    assert len(opt_out.unproven) == 15


def test_every_copy_of_a_source_that_is_still_selected_is_held_whatever_the_count() -> None:
    """A source still selected that would lose every copy and want none: its targets went away by mistake
    (an exclude too wide, an annotation matching nothing). A deleted or unlabelled source takes its copies."""
    src = source()
    builds = ["team-a", "team-b", "team-c"]
    copies = [copy_of(src, t) for t in builds]
    too_wide = plan(cluster([src], builds, builds, copies=copies), policy(exclude=("team-*",)))
    assert {a.kind for a in too_wide.actions} == {Kind.HOLD}
    assert "still selected" in too_wide.notes[-1] and "--max-delete 3" in too_wide.notes[-1]
    released = plan(cluster([src], builds, builds, copies=copies), policy(exclude=("team-*",)), release=3)
    assert {a.kind for a in released.actions} == {Kind.DELETE}
    # Moving: every old copy goes, but the source wants a new target: not held.
    moved = plan(cluster([src], [*builds, "new"], ["new"], copies=copies), policy())
    assert sorted((a.kind.value, a.namespace) for a in moved.actions) == [
        ("create", "new"), ("delete", "team-a"), ("delete", "team-b"), ("delete", "team-c"),
    ]  # fmt: skip
    # Deleted or unlabelled (the snapshot no longer lists it), or its type left spec.types: the copies go.
    assert {a.kind for a in plan(cluster([], builds, builds, copies=copies), policy()).actions} == {Kind.DELETE}
    disabled = plan(cluster([src], builds, builds, copies=copies), policy(types=("Opaque",)))
    assert {a.kind for a in disabled.actions} == {Kind.DELETE}


def test_copies_are_kept_when_every_build_vanishes() -> None:
    """A kpack reinstall empties the build kinds for a while: 8 copies must not go with them."""
    src = source()
    teams = [f"team-{i}" for i in range(8)]
    copies = [copy_of(src, t) for t in teams]
    emptied = plan(cluster([src], teams, [], copies=copies), policy())
    assert {a.kind for a in emptied.actions} == {Kind.HOLD}
    assert "no namespace holds a build" in emptied.notes[-1]
    one_left = plan(cluster([src], teams, ["team-0"], copies=copies), policy())
    assert sorted(a.namespace for a in one_left.actions if a.kind is Kind.DELETE) == teams[1:]


@pytest.mark.parametrize(("deletes", "held"), [(10, False), (11, True)])
def test_the_count_rule_needs_more_than_10_deletes(deletes: int, held: bool) -> None:
    src = source()
    teams = [f"team-{i:02d}" for i in range(12)]
    builds = teams[deletes:] or ["elsewhere"]
    p = plan(cluster([src], [*teams, "elsewhere"], builds, copies=[copy_of(src, t) for t in teams]), policy())
    assert any(a.kind is Kind.HOLD for a in p.actions) is held


@pytest.mark.parametrize(("copies", "held"), [(44, False), (43, True)])
def test_the_count_rule_needs_more_than_a_quarter_of_the_copies(copies: int, held: bool) -> None:
    """11 deletes: held over 43 copies (25.6 %), applied over 44 (exactly 25 %)."""
    src = source()
    teams = [f"team-{i:02d}" for i in range(copies)]
    p = plan(cluster([src], teams, teams[11:], copies=[copy_of(src, t) for t in teams]), policy())
    assert sum(a.kind is Kind.DELETE for a in p.actions) == (0 if held else 11)
    assert sum(a.kind is Kind.HOLD for a in p.actions) == (11 if held else 0)


NEVER_COPIED_KEYS = {
    "argocd.argoproj.io/instance": "x",
    "argocd.argoproj.io/tracking-id": "x",
    "helm.sh/chart": "x",
    "meta.helm.sh/release-name": "x",
    "app.kubernetes.io/instance": "x",  # Argo CD's default tracking label: it would prune the copies
    "app.kubernetes.io/managed-by": "Helm",
    "kubectl.kubernetes.io/last-applied-configuration": "{}",
    "syncjob.dev/include": "team-*",
}


def test_metadata_of_other_tools_never_travels_even_when_allowed() -> None:
    src = source(labels={**NEVER_COPIED_KEYS, "team": "a"}, annotations={**NEVER_COPIED_KEYS, "note": "n"})
    body = copy_body(src, policy(copy_labels=("*",), copy_annotations=("*",)), "team-a")
    assert body["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "syncjob",
        "syncjob.dev/instance": "syncjob",
        "team": "a",
    }
    assert set(body["metadata"]["annotations"]) == {
        "note",
        "syncjob.dev/source-namespace",
        "syncjob.dev/source-name",
        "syncjob.dev/source-uid",
        "syncjob.dev/source-digest",
    }


def test_a_copy_without_its_source_uid_is_not_owned() -> None:
    """Even with a proof made for an empty uid: the owner is the namespace, name and uid, all three."""
    src = source()
    bare = copy_of(src, "team-a")
    annotations = {k: v for k, v in bare.annotations.items() if k != "syncjob.dev/source-uid"}
    annotations["syncjob.dev/proof"] = proof_for("team-a", "regcred", "build-service", "regcred", "")
    no_uid = replace(bare, annotations=frozen_map(annotations))
    p = plan(cluster([], ["team-a", "team-b"], ["team-a", "team-b"], copies=[no_uid]), policy())
    assert p.actions == () and p.unproven == (Ref("team-a", "regcred"),)


@pytest.mark.parametrize("system", ["kube-system", "kube-public", "kube-node-lease"])
def test_system_namespaces_are_never_targets(system: str) -> None:
    src = source()
    p = plan(cluster([src], [system, "team-a"], [system, "team-a"]), policy(all_namespaces=True))
    assert kinds(p) == {("team-a", "regcred"): Kind.CREATE}


def test_the_whole_body_of_a_copy() -> None:
    src = source(labels={"team": "a"}, annotations={"note": "n"})
    body = copy_body(src, policy("blue"), "team-a", "17", key=PROOF_KEY)
    assert body == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "regcred",
            "namespace": "team-a",
            "resourceVersion": "17",
            "labels": {"app.kubernetes.io/managed-by": "syncjob", "syncjob.dev/instance": "blue"},
            "annotations": {
                "syncjob.dev/source-namespace": "build-service",
                "syncjob.dev/source-name": "regcred",
                "syncjob.dev/source-uid": "uid-build-service-regcred",
                "syncjob.dev/source-digest": src.digest,
                "syncjob.dev/proof": proof_for("team-a", "regcred", "build-service", "regcred", src.uid, "blue"),
            },
        },
        "type": "kubernetes.io/dockerconfigjson",
        "data": dict(src.data),
    }
    assert "resourceVersion" not in copy_body(src, policy(), "team-a")["metadata"]  # a create carries none


def test_a_held_delete_keeps_its_key_reason_and_source() -> None:
    src = source()
    teams = [f"team-{i:02d}" for i in range(12)]
    p = plan(cluster([], teams, teams, copies=[copy_of(src, t) for t in teams]), policy())
    held = next(a for a in p.actions if a.namespace == "team-00")
    assert (held.kind, held.name, held.source) == (Kind.HOLD, "regcred", src.ref)
    assert held.reason == "held by the mass-deletion guard: source deleted, unlabelled or no longer selected"
    assert p.notes[0].startswith("mass-deletion guard: this run would delete 12 of the 12 copies of build-service/")


def test_what_each_source_wants_and_a_namespace_the_snapshot_lacks() -> None:
    a, b = source(), source("only-a", annotations={"syncjob.dev/include": "team-a"})
    namespaces = ["team-a", "team-b", ns("team-c", phase="Terminating")]
    planner = Planner(cluster([a, b], namespaces, ["team-a", "team-b", "team-c"]), policy())
    assert planner.wanted_counts() == {a.ref: 2, b.ref: 1}  # terminating namespaces are not counted
    gone_ns = planner.decision("deleted-meanwhile")
    assert (gone_ns.target, gone_ns.reason) == (False, "namespace not found or not selected")


def test_a_service_account_planned_again_after_a_conflict() -> None:
    planner = Planner(cluster([source()], ["team-a"], ["team-a"]), policy(patch_service_accounts=("builder",)))
    creates = planner.plan().actions
    fresh = ServiceAccount("team-a", "builder", "sa-uid", "9", ("late-addition",))
    action = planner.replan_account(fresh, creates)
    assert action is not None and action.kind is Kind.PATCH
    assert (action.pull_secrets, action.added, action.expected_resource_version) == (
        ("late-addition", "regcred"), ("regcred",), "9",
    )  # fmt: skip
    assert planner.replan_account(replace(fresh, image_pull_secrets=("regcred",)), ()) is None


def test_every_action_says_why_in_words() -> None:
    """The reasons users read in the table and the logs, word for word."""
    src = source()
    other = source(namespace="other-admin")
    cfg = source(type="kubernetes.io/dockercfg", data={".dockercfg": b64('{"r.io": {"auth": "' + b64("u:p") + '"}}')})
    broken = source(data={".dockerconfigjson": b64('{"auths": {}}')})
    narrowed = source(annotations={"syncjob.dev/exclude": "team-b"})

    def reason(snap_sources: list[Source], copy: Copy | None, **conf: object) -> tuple[Kind, str, Ref | None]:
        snap = cluster(snap_sources, ["team-a", "team-b"], ["team-a", "team-b"], copies=[copy] if copy else [])
        action = next(a for a in plan(snap, policy(**conf), release=99).actions if a.namespace == "team-b")
        return action.kind, action.reason, action.source

    assert reason([src, other], None, sources=(other.ref,)) == (
        Kind.CONFLICT, "sources build-service/regcred and other-admin/regcred would land on the same name; rename one",
        None,
    )  # fmt: skip
    assert reason([src], None) == (Kind.CREATE, "copy missing", src.ref)
    assert reason([broken], copy_of(src, "team-b")) == (Kind.LEAVE, "source is invalid; copy left as it is", src.ref)
    assert reason([cfg], copy_of(src, "team-b")) == (
        Kind.RECREATE, "type changed from kubernetes.io/dockerconfigjson to kubernetes.io/dockercfg", src.ref,
    )  # fmt: skip
    assert reason([src], copy_of(src, "team-b", immutable=True)) == (
        Kind.RECREATE, "copy was made immutable; syncjob copies are not", src.ref,
    )  # fmt: skip
    assert reason([src], copy_of(src, "team-b", digest="sha256:old")) == (
        Kind.UPDATE, "data differs from the source", src.ref,
    )  # fmt: skip
    assert reason([src], copy_of(src, "team-b", labels=frozen_map({"x": "y"}))) == (
        Kind.UPDATE, "labels drifted", src.ref,
    )  # fmt: skip
    drifted = copy_of(src, "team-b")
    drifted = replace(drifted, annotations=frozen_map({**drifted.annotations, "extra": "1"}))
    assert reason([src], drifted) == (Kind.UPDATE, "annotations drifted", src.ref)
    assert reason([src], copy_of(src, "team-b")) == (Kind.LEAVE, "in sync", src.ref)
    assert reason([], copy_of(src, "team-b")) == (
        Kind.DELETE, "source deleted, unlabelled or no longer selected", src.ref,
    )  # fmt: skip
    assert reason([src], copy_of(src, "team-b"), types=("Opaque",)) == (
        Kind.DELETE, "source type kubernetes.io/dockerconfigjson is not enabled in spec.types", src.ref,
    )  # fmt: skip
    assert reason([narrowed], copy_of(src, "team-b")) == (
        Kind.DELETE, "the source's syncjob.dev/include or syncjob.dev/exclude annotation leaves this namespace out",
        src.ref,
    )  # fmt: skip
    broken_owner = plan(cluster([broken], ["team-c"], [], copies=[copy_of(src, "team-c")]), policy()).actions
    assert [(a.kind, a.reason, a.source) for a in broken_owner] == [
        (Kind.LEAVE, "source is invalid; copy left as it is", src.ref)
    ]


def test_who_is_in_the_way_in_words() -> None:
    src = source()

    def conflict(occ: Occupant | None = None, copies: list[Copy] | None = None) -> str:
        snap = cluster([src], ["team-a"], ["team-a"], copies=copies, occupants=[occ] if occ else [])
        (action,) = plan(snap, policy()).actions
        assert (action.kind, action.source) == (Kind.CONFLICT, src.ref)
        return action.reason

    prefix = "a Secret with this name exists and "
    assert conflict(occupant("team-a")) == prefix + "it was not created by syncjob; left untouched"
    assert conflict(occupant("team-a", managed_by="Helm")) == prefix + "it is managed by 'Helm'; left untouched"
    assert conflict(occupant("team-a", "regcred", "syncjob", "blue")) == (
        prefix + "it belongs to syncjob instance 'blue'; left untouched"
    )
    assert (
        conflict(occupant("team-a", "regcred", "syncjob", "")) == prefix + "it is managed by 'syncjob'; left untouched"
    )
    assert conflict(copies=[copy_of(src, "team-a", annotations={})]) == (
        prefix + "it carries this SecretSync's labels but cannot be proven to be its copy (made by hand, forged, or "
        "its proof was edited); delete it or remove its syncjob labels; left untouched"
    )


def test_the_note_on_unproven_secrets_names_five_and_counts_the_rest() -> None:
    src = source()
    fakes = [copy_of(src, f"t{i}", annotations={}) for i in range(7)]
    (note,) = plan(cluster([], [f"t{i}" for i in range(7)], [], copies=fakes), policy()).notes
    assert note == (
        "7 Secrets carry the labels of SecretSync 'syncjob' but cannot be proven to be its copies (t0/regcred, "
        "t1/regcred, t2/regcred, t3/regcred, t4/regcred and 2 more): they are never updated, deleted or counted by "
        "the mass-deletion guard. Delete them or remove their syncjob labels"
    )
    (five,) = plan(cluster([], ["a"], [], copies=fakes[:5]), policy()).notes
    assert "t4/regcred): they" in five and "more" not in five


def test_every_target_decision_with_its_reason() -> None:
    namespaces = [
        ns("build-service"),
        ns("kube-node-lease"),
        ns("skip-me"),
        ns("outside"),
        ns("team-opted", annotations={IGNORE_ANNOTATION: "True"}),
        ns("team-unlabelled"),
        ns("team-nobuilds", labels={"builds": "yes"}),
        ns("team-dying", phase="Terminating", labels={"builds": "yes"}),
        ns("team-ok", labels={"builds": "yes"}),
    ]
    snap = Snapshot(namespaces=tuple(namespaces), build_namespaces=frozenset({"team-dying", "team-ok", "outside"}))
    by_builds = decide_all(snap, policy(include=("team-*", "build-*", "kube-*"), exclude=("skip-*",)))
    assert by_builds == {
        "build-service": TargetDecision("build-service", False, reason="namespace holds sources"),
        "kube-node-lease": TargetDecision("kube-node-lease", False, reason="namespace excluded"),
        "skip-me": TargetDecision("skip-me", False, reason="namespace excluded"),
        "outside": TargetDecision("outside", False, reason="namespace not in spec.targets.include"),
        "team-opted": TargetDecision("team-opted", False, reason="namespace opted out (syncjob.dev/ignore)"),
        "team-unlabelled": TargetDecision("team-unlabelled", False, reason="namespace has no builds"),
        "team-nobuilds": TargetDecision("team-nobuilds", False, reason="namespace has no builds"),
        "team-dying": TargetDecision("team-dying", True, terminating=True, reason="namespace is terminating"),
        "team-ok": TargetDecision("team-ok", True),
    }
    by_labels = decide_all(snap, policy(namespace_selector={"matchLabels": {"builds": "yes"}}))
    assert by_labels["team-unlabelled"] == TargetDecision(
        "team-unlabelled", False, reason="namespace does not match spec.targets.namespaceSelector"
    )
    assert by_labels["team-nobuilds"] == TargetDecision("team-nobuilds", True)
    assert gone("x") == TargetDecision("x", False, reason="namespace not found or not selected")


def test_what_sources_are_judged_and_told() -> None:
    good, opaque = source(), source("a-token", type="Opaque", data={"t": b64("x")})  # sorts first: judged first
    broken = source("broken", data={".dockerconfigjson": b64('{"auths": {}}')}, annotations={
        "syncjob.dev/include": "Bad_Glob"})  # fmt: skip
    snap = replace(cluster([good, opaque, broken], [], []), missing_sources=(Ref("team-05", "gone"),))
    verdicts = judge_sources(snap, policy())
    assert set(verdicts.eligible) == {good.ref, broken.ref} and set(verdicts.invalid) == {broken.ref}
    assert verdicts.problems == (
        SourceProblem(
            opaque.ref, "type Opaque is not enabled; add it to the SecretSync's spec.types to sync it", fatal=False
        ),
        SourceProblem(
            broken.ref,
            "has an empty 'auths'; recreate it from a plain config file: `DOCKER_CONFIG=$(mktemp -d) docker login "
            "REGISTRY`, then `kubectl create secret docker-registry` from that file, or `syncjob create-source`; "
            "annotation syncjob.dev/include: 'Bad_Glob' is not a namespace glob (lower-case letters, digits, '-', '*' "
            "and '?'); write comma-separated globs, e.g. 'team-*,ci-?'. Its existing copies are left as they are",
        ),
        SourceProblem(Ref("team-05", "gone"), "not found; fix it or drop it from the SecretSync's spec.sources.names"),
    )
    assert verdicts.scopes == {good.ref: SourceScope()}


def test_scopes_from_annotations() -> None:
    scoped = source(annotations={"syncjob.dev/include": " team-*, ci-? ", "syncjob.dev/exclude": "team-b"})
    scope = source_scope(scoped)
    assert scope == SourceScope(("team-*", "ci-?"), ("team-b",))
    assert [scope.allows(n) for n in ("team-a", "team-b", "ci-1", "ci-10", "other")] == [
        True, False, True, False, False,
    ]  # fmt: skip
    assert SourceScope(exclude=("x",)).allows("y") and not SourceScope(exclude=("x",)).allows("x")


def test_every_guard_note_word_for_word() -> None:
    src, two = source(), source("two")
    teams = [f"team-{i:02d}" for i in range(12)]
    copies = [copy_of(s, t) for s in (src, two) for t in teams]

    def notes(snap: Snapshot, conf: Policy | None = None, release: int | None = None) -> tuple[str, ...]:
        return plan(snap, conf or policy(), release=release).notes

    gone_both = cluster([], teams, teams, copies=copies)
    assert notes(gone_both, release=23) == (
        "mass-deletion guard: this run would delete 24 copies, over --max-delete 23; no copy was deleted. "
        "If that is intended, rerun once with --max-delete 24",
    )
    assert notes(gone_both, policy(max_delete=23)) == (
        "mass-deletion guard: this run would delete 24 copies, over spec.maxDelete 23; no copy was deleted. "
        "If that is intended, rerun once with --max-delete 24",
    )
    per_source = notes(cluster([two], teams, teams, copies=copies))
    assert per_source == (
        "mass-deletion guard: this run would delete 12 of the 12 copies of build-service/regcred; none was deleted. "
        "If that is intended, rerun once with --max-delete 12; otherwise check the SecretSync 'syncjob': spec.targets",
    )
    narrowed = notes(cluster([src], teams[:2], teams[:2], copies=[copy_of(src, t) for t in teams[:2]]),
                     policy(exclude=("team-*",)))  # fmt: skip
    assert narrowed == (
        "mass-deletion guard: source build-service/regcred is still selected, yet this run would delete every "
        "one of its 2 copies (its targets all went away: check spec.targets and the source's syncjob.dev/include "
        "and syncjob.dev/exclude annotations); none was deleted. If that is intended, rerun once with --max-delete 2",
    )
    emptied = notes(cluster([src], teams[:2], [], copies=[copy_of(src, t) for t in teams[:2]]))
    assert emptied == (
        "mass-deletion guard: no namespace holds a build (builds.kpack.io, images.kpack.io): the build kinds look "
        "emptied or reinstalled, so the 2 copies in namespaces without builds are kept. If every build is really "
        "gone, rerun once with --max-delete 2",
    )
    many = [copy_of(source(f"s{i}"), t) for i in range(6) for t in teams[:2]]  # 12 copies, 2 per source
    overall = notes(cluster([], teams, teams, copies=many))
    assert overall == (
        "mass-deletion guard: this run would delete 12 copies (more than 10 and more than 25 % of 12 managed "
        "copies); no copy was deleted. If that is intended (e.g. sources were retired), rerun once with "
        "--max-delete 12; otherwise check the SecretSync 'syncjob': spec.sources and spec.targets",
    )


def test_a_per_source_hold_keeps_only_that_sources_copies() -> None:
    src, small = source(), source("small")
    teams = [f"team-{i:02d}" for i in range(40)]
    copies = [copy_of(src, t) for t in teams[:12]] + [copy_of(small, t) for t in teams[:2]]
    builds = teams[12:]  # src loses 12 of 12 copies; small loses 2 of 2
    p = plan(cluster([src, small], teams, builds, copies=copies), policy())
    kinds_by_source = {(a.source, a.kind) for a in p.actions if a.kind in (Kind.DELETE, Kind.HOLD)}
    assert kinds_by_source == {(src.ref, Kind.HOLD), (small.ref, Kind.DELETE)}


def test_a_fresh_read_that_finds_an_unproven_secret_plans_a_conflict() -> None:
    src = source()
    planner = Planner(cluster([src], ["team-a", ns("dying", phase="Terminating")], ["team-a", "dying"]), policy())
    fake = copy_of(src, "team-a", annotations={})
    action = planner.replan(Ref("team-a", "regcred"), fake, None)
    assert action is not None and (action.kind, action.source) == (Kind.CONFLICT, src.ref)
    assert "cannot be proven to be its copy" in action.reason
    skip = planner.replan(Ref("dying", "regcred"), None, None)
    assert skip == Action(Kind.SKIP, "dying", "regcred", "namespace is terminating", source=src.ref)


def test_what_proves_a_copy() -> None:
    src = source()
    planner = Planner(cluster([src], ["team-a"], ["team-a"]), policy())
    good = copy_of(src, "team-a")
    assert planner.proven(good)
    assert not planner.proven(replace(good, name="other"))  # not its owner's name
    assert not planner.proven(replace(good, namespace="build-service"))  # in its owner's namespace
    no_proof = {k: v for k, v in good.annotations.items() if k != "syncjob.dev/proof"}
    assert not planner.proven(replace(good, annotations=frozen_map(no_proof)))
    assert not Planner(replace(cluster([src], [], []), proof_key=None), policy()).proven(good)


def test_service_account_changes_come_with_the_plan() -> None:
    src = source()
    account = ServiceAccount("team-a", "builder", "sa-1", "3", ("own",))
    snap = replace(cluster([src], ["team-a"], ["team-a"]), service_accounts=(account,))
    p = plan(snap, policy(patch_service_accounts=("builder",)))
    assert [(a.kind, a.resource, a.namespace, a.name, a.pull_secrets) for a in p.actions] == [
        (Kind.CREATE, "Secret", "team-a", "regcred", ()),
        (Kind.PATCH, "ServiceAccount", "team-a", "builder", ("own", "regcred")),
    ]
    assert [a.kind for a in plan(snap, policy()).actions] == [Kind.CREATE]


def test_nothing_is_planned_where_no_source_wants_a_copy_even_if_terminating() -> None:
    src = source(annotations={"syncjob.dev/exclude": "dying"})
    snap = cluster([src], [ns("dying", phase="Terminating"), "team-a"], ["dying", "team-a"])
    assert kinds(plan(snap, policy())) == {("team-a", "regcred"): Kind.CREATE}


def test_a_named_source_is_never_copied_onto_itself() -> None:
    own = source("team-token", namespace="team-a")
    snap = cluster([own], ["team-a", "team-b"], ["team-a", "team-b"])
    assert kinds(plan(snap, policy(sources=(own.ref,)))) == {("team-b", "team-token"): Kind.CREATE}


def test_a_same_name_conflict_names_the_key() -> None:
    a, b = source(), source(namespace="other-admin")
    (action,) = plan(cluster([a, b], ["team-a"], ["team-a"]), policy(sources=(b.ref,))).actions
    assert (action.kind, action.namespace, action.name, action.source) == (Kind.CONFLICT, "team-a", "regcred", None)


def test_per_source_holds_are_noted_in_the_order_of_their_sources() -> None:
    first, second = source("zzz"), source("aaa", namespace="other-admin")
    teams = [f"team-{i:02d}" for i in range(12)]
    copies = [copy_of(s, t) for s in (first, second) for t in teams]
    notes = plan(cluster([], teams, teams, copies=copies), policy()).notes
    assert [n.split(" copies of ")[1].split(";")[0] for n in notes] == ["build-service/zzz", "other-admin/aaa"]
