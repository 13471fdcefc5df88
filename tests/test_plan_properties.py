"""Property-based tests of the planner on generated clusters (hypothesis).

500 examples per property, locally and in CI alike.
"""

from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syncjob.model import (
    DOCKERCFG,
    DOCKERCONFIGJSON,
    IGNORE_ANNOTATION,
    Copy,
    Kind,
    Occupant,
    Plan,
    Ref,
    Snapshot,
    Source,
    frozen_map,
)
from syncjob.plan import desired_annotations, desired_labels, plan
from syncjob.policy import Policy
from syncjob.select import decide_all
from tests.factories import PROOF_KEY, b64, docker_config, ns, policy, proof_for

# One profile, here and in CI: a property that holds locally holds with the same number of examples there.
# (scripts/mutation alone asks for fewer: it runs these tests once per mutant.)
EXAMPLES = int(os.environ.get("SYNCJOB_MUTATION_EXAMPLES", "500"))
settings.register_profile("syncjob", max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("syncjob")

NAMESPACES = ["a", "b", "c", "x-1", "kube-system", "build-service", "admin2"]
NAMES = ["regcred", "gitcred", "pullsecret"]
SOURCE_NAMESPACES = ["build-service", "admin2"]
BROKEN = {".dockerconfigjson": b64(json.dumps({"auths": {}, "credsStore": "desktop"}))}


@st.composite
def sources(draw: st.DrawFn) -> list[Source]:
    refs = draw(
        st.lists(st.tuples(st.sampled_from(SOURCE_NAMESPACES), st.sampled_from(NAMES)), unique=True, max_size=4)
    )
    out = []
    for i, (namespace, name) in enumerate(refs):
        kind = draw(st.sampled_from(["good", "broken", "opaque", "dockercfg"]))
        password = draw(st.sampled_from(["pw-prop-1", "pw-prop-2"]))
        if kind == "good":
            secret_type, data = DOCKERCONFIGJSON, docker_config(password=password)
        elif kind == "broken":
            secret_type, data = DOCKERCONFIGJSON, BROKEN
        elif kind == "opaque":
            secret_type, data = "Opaque", {"token": b64(password)}
        else:
            secret_type, data = DOCKERCFG, {".dockercfg": b64(json.dumps({"r.io": {"auth": b64("u:" + password)}}))}
        uid = draw(st.sampled_from([f"uid-{i}", f"uid-{i}-new"]))
        out.append(Source(namespace, name, uid, secret_type, frozen_map(data)))
    return out


@st.composite
def clusters(draw: st.DrawFn) -> tuple[Snapshot, Policy]:
    srcs = draw(sources())
    namespaces = []
    for name in NAMESPACES:
        phase = draw(st.sampled_from(["Active", "Active", "Terminating"]))
        ignore = draw(st.booleans()) and draw(st.booleans())
        namespaces.append(ns(name, phase=phase, annotations={IGNORE_ANNOTATION: "true"} if ignore else None))
    builds = frozenset(draw(st.lists(st.sampled_from(NAMESPACES), unique=True)))
    conf = policy(
        sources=(Ref("admin2", draw(st.sampled_from(NAMES))),) if draw(st.booleans()) else (),
        exclude=("x-*",) if draw(st.booleans()) else (),
        all_namespaces=draw(st.booleans()),
        types=(DOCKERCONFIGJSON, DOCKERCFG),
        max_delete=10**6,
    )
    # admin2 sources are selected only when named explicitly; build-service ones by label (all here).
    srcs = [s for s in srcs if s.namespace == "build-service" or s.ref in conf.sources]

    keys = [Ref(n, m) for n in NAMESPACES for m in NAMES]
    taken = draw(st.lists(st.sampled_from(keys), unique=True, max_size=12))
    copies, occupants = [], []
    for key in taken:
        role = draw(st.sampled_from(["copy", "copy", "occupant", "other-instance"]))
        if role == "copy":
            # A copy is named after its source; the owner is a current source of that name, or one since deleted.
            owner = draw(st.sampled_from([*(s for s in srcs if s.name == key.name), None]))
            template = owner or Source("build-service", key.name, "uid-ghost", DOCKERCONFIGJSON, frozen_map({}))
            annotations = dict(desired_annotations(template, conf))
            proof = proof_for(key.namespace, key.name, template.namespace, template.name, template.uid)
            annotations["syncjob.dev/proof"] = proof
            forgery = draw(st.sampled_from(["none", "none", "no-annotations", "no-proof", "wrong-proof"]))
            if forgery == "no-annotations":
                annotations = {}  # labelled, nothing else
            elif forgery == "no-proof":
                del annotations["syncjob.dev/proof"]  # labelled and annotated, as a tenant can
            elif forgery == "wrong-proof":
                annotations["syncjob.dev/proof"] = proof_for("elsewhere", key.name, template.namespace, key.name, "x")
            labels = dict(desired_labels(template, conf))
            if draw(st.booleans()):
                labels["drift"] = "x"
            copies.append(
                Copy(
                    key.namespace,
                    key.name,
                    f"copy-{key}",
                    "1",
                    draw(st.sampled_from([template.type, "Opaque"])),
                    draw(st.sampled_from([template.digest, "sha256:stale"])),
                    frozen_map(labels),
                    frozen_map(annotations),
                    draw(st.booleans()) and draw(st.booleans()),
                )
            )
        elif role == "occupant":
            occupants.append(Occupant(key.namespace, key.name, f"occ-{key}", draw(st.sampled_from(["", "Helm"]))))
        else:
            occupants.append(Occupant(key.namespace, key.name, f"occ-{key}", "syncjob", "other"))
    snapshot = Snapshot(
        sources=tuple(srcs),
        namespaces=tuple(namespaces),
        build_namespaces=builds,
        copies=tuple(copies),
        occupants=tuple(occupants),
        proof_key=PROOF_KEY,
    )
    return snapshot, conf


def simulate(snapshot: Snapshot, p: Plan, conf: Policy) -> Snapshot:
    """What the cluster looks like after every write of the plan succeeded."""
    copies = {c.ref: c for c in snapshot.copies}
    by_ref = {s.ref: s for s in snapshot.sources}
    for a in p.actions:
        if a.kind in (Kind.CREATE, Kind.UPDATE, Kind.RECREATE):
            assert a.source is not None
            src = by_ref[a.source]
            copies[a.ref] = Copy(
                a.namespace,
                a.name,
                f"new-{a.ref}",
                "2",
                src.type,
                src.digest,
                frozen_map(desired_labels(src, conf)),
                frozen_map(
                    {
                        **desired_annotations(src, conf),
                        "syncjob.dev/proof": proof_for(a.namespace, a.name, src.namespace, src.name, src.uid),
                    }
                ),
            )
        elif a.kind is Kind.DELETE:
            del copies[a.ref]
    return replace(snapshot, copies=tuple(copies.values()))


@given(clusters())
def test_never_touches_what_is_not_its_own(cluster: tuple[Snapshot, Policy]) -> None:
    snapshot, conf = cluster
    occupied = {o.ref for o in snapshot.occupants}
    copies = {c.ref: c for c in snapshot.copies}
    for a in plan(snapshot, conf).actions:
        if not a.kind.writes:
            continue
        assert a.ref not in occupied, a
        if a.kind in (Kind.UPDATE, Kind.RECREATE, Kind.DELETE):
            assert a.ref in copies, a
            copy, owner = copies[a.ref], copies[a.ref].owner
            assert owner is not None, a
            expected = proof_for(a.namespace, a.name, owner.namespace, owner.name, copy.owner_uid)
            assert copy.annotations.get("syncjob.dev/proof") == expected, a  # only provable copies
            assert a.expected_uid == copy.uid


@given(clusters())
def test_applying_the_plan_converges_in_one_run(cluster: tuple[Snapshot, Policy]) -> None:
    snapshot, conf = cluster
    first = plan(snapshot, conf)
    second = plan(simulate(snapshot, first, conf), conf)
    assert [a for a in second.actions if a.kind.writes] == []


@given(clusters())
def test_no_copy_is_written_into_excluded_or_terminating_namespaces(cluster: tuple[Snapshot, Policy]) -> None:
    snapshot, conf = cluster
    decisions = decide_all(snapshot, conf)
    for a in plan(snapshot, conf).actions:
        if a.kind in (Kind.CREATE, Kind.UPDATE, Kind.RECREATE):
            decision = decisions[a.namespace]
            assert decision.target and not decision.terminating, (a, decision)
            assert a.namespace not in ("kube-system", conf.source_namespace)
            assert a.source is not None and a.namespace != a.source.namespace
            assert not a.namespace.startswith("x-") or not conf.exclude


@given(clusters())
def test_an_invalid_sources_copies_are_never_changed(cluster: tuple[Snapshot, Policy]) -> None:
    snapshot, conf = cluster
    invalid = {s.ref for s in snapshot.sources if s.data.get(".dockerconfigjson") == BROKEN[".dockerconfigjson"]}
    p = plan(snapshot, conf)
    assert {pr.source for pr in p.problems if pr.fatal} >= invalid
    for copy in snapshot.copies:
        if copy.owner in invalid:
            action = next((a for a in p.actions if a.ref == copy.ref), None)
            assert action is None or not action.kind.writes, action


@given(clusters())
def test_the_guard_only_turns_deletes_into_holds_and_says_why(cluster: tuple[Snapshot, Policy]) -> None:
    snapshot, conf = cluster
    released = plan(snapshot, replace(conf, max_delete=None), release=10**6)
    guarded = plan(snapshot, replace(conf, max_delete=None))
    deletes = {a.ref for a in released.actions if a.kind is Kind.DELETE}
    assert {a.ref for a in guarded.actions if a.kind in (Kind.DELETE, Kind.HOLD)} == deletes
    others = [a for a in released.actions if a.kind is not Kind.DELETE]
    assert [a for a in guarded.actions if a.kind not in (Kind.DELETE, Kind.HOLD)] == others
    if any(a.kind is Kind.HOLD for a in guarded.actions):
        assert any(n.startswith("mass-deletion guard") for n in guarded.notes)


# --- a reference model, written plainly from the README's rules, not from the planner ------------

SYSTEM = ("kube-system", "kube-public", "kube-node-lease")


def reference(snapshot: Snapshot, conf: Policy) -> dict[Ref, Kind]:
    """What should happen to each (namespace, name), the guard aside."""
    namespaces = {n.name: n for n in snapshot.namespaces}

    def target(name: str) -> bool:
        n = namespaces.get(name)
        return not (
            n is None
            or name == conf.source_namespace
            or name in SYSTEM
            or any(fnmatch.fnmatchcase(name, g) for g in conf.exclude)
            or n.annotations.get(IGNORE_ANNOTATION) == "true"
            or (not conf.all_namespaces and name not in (snapshot.build_namespaces or ()))
        )

    def proven(c: Copy) -> bool:
        a = c.annotations
        if not all(
            k in a for k in ("syncjob.dev/source-namespace", "syncjob.dev/source-name", "syncjob.dev/source-uid")
        ):
            return False
        owner_ns, owner_name, uid = (
            a["syncjob.dev/source-namespace"],
            a["syncjob.dev/source-name"],
            a["syncjob.dev/source-uid"],
        )
        if owner_name != c.name or owner_ns == c.namespace:
            return False
        return a.get("syncjob.dev/proof") == proof_for(c.namespace, c.name, owner_ns, owner_name, uid)

    enabled = [s for s in snapshot.sources if s.type in conf.types]
    broken = {s.ref for s in enabled if s.data.get(".dockerconfigjson") == BROKEN[".dockerconfigjson"]}
    copies = {c.ref: c for c in snapshot.copies if proven(c)}
    occupied = {o.ref for o in snapshot.occupants} | {c.ref for c in snapshot.copies if not proven(c)}
    expected: dict[Ref, Kind] = {}
    for name in NAMESPACES:
        for secret in NAMES:
            key, copy = Ref(name, secret), copies.get(Ref(name, secret))
            wanting = [s for s in enabled if s.name == secret and target(name) and s.namespace != name]
            if target(name) and namespaces[name].phase == "Terminating" and (wanting or copy):
                expected[key] = Kind.SKIP
            elif len(wanting) > 1:
                expected[key] = Kind.CONFLICT
            elif wanting:
                src = wanting[0]
                if src.ref in broken:
                    if copy is not None:
                        expected[key] = Kind.LEAVE
                elif copy is None:
                    expected[key] = Kind.CONFLICT if key in occupied else Kind.CREATE
                elif copy.type != src.type or copy.immutable:
                    expected[key] = Kind.RECREATE
                elif copy.digest != src.digest:
                    expected[key] = Kind.UPDATE
                else:
                    labels = {"app.kubernetes.io/managed-by": "syncjob", "syncjob.dev/instance": conf.name}
                    annotations = {
                        "syncjob.dev/source-namespace": src.namespace,
                        "syncjob.dev/source-name": src.name,
                        "syncjob.dev/source-uid": src.uid,
                        "syncjob.dev/source-digest": src.digest,
                        "syncjob.dev/proof": proof_for(name, secret, src.namespace, src.name, src.uid),
                    }
                    same = dict(copy.labels) == labels and dict(copy.annotations) == annotations
                    expected[key] = Kind.LEAVE if same else Kind.UPDATE
            elif copy is not None:
                owner = Ref(copy.annotations["syncjob.dev/source-namespace"], copy.name)
                expected[key] = Kind.LEAVE if owner in broken else Kind.DELETE
    return expected


@given(clusters())
def test_the_planner_agrees_with_the_reference_model(cluster: tuple[Snapshot, Policy]) -> None:
    snapshot, conf = cluster
    p = plan(snapshot, conf, release=10**6)
    assert {a.ref: a.kind for a in p.actions} == reference(snapshot, conf)
