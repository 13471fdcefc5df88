"""The planner: a pure function from a snapshot and a policy to a plan. No I/O, no clock."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from syncjob.errors import ConfigError
from syncjob.model import (
    INSTANCE_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    PROOF_ANNOTATION,
    SOURCE_DIGEST_ANNOTATION,
    SOURCE_NAME_ANNOTATION,
    SOURCE_NAMESPACE_ANNOTATION,
    SOURCE_UID_ANNOTATION,
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
)
from syncjob.policy import Policy
from syncjob.proof import proof, verifies
from syncjob.select import SourceScope, TargetDecision, decide_all, gone, source_scope
from syncjob.selector import matches_any_glob
from syncjob.serviceaccounts import copies_after, plan_account, plan_service_accounts
from syncjob.validate import validate_source

# Metadata that must never travel with a copy, whatever spec.copyMetadata says:
# it would make another tool (Argo CD, Helm, kubectl apply) believe it owns the copy.
NEVER_COPIED = (
    "argocd.argoproj.io/*",
    "helm.sh/*",
    "meta.helm.sh/*",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/managed-by",
    "kubectl.kubernetes.io/last-applied-configuration",
    "syncjob.dev/*",
)

# Deletes above both bounds are held back unless spec.maxDelete (or --max-delete) says otherwise.
GUARD_MIN_DELETES = 10
GUARD_FRACTION = 0.25
UNPROVEN_LISTED = 5  # how many unproven Secrets a note names


def _policy(values: Mapping[str, str], allow: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in values.items() if matches_any_glob(k, allow) and not matches_any_glob(k, NEVER_COPIED)}


def desired_labels(source: Source, policy: Policy) -> dict[str, str]:
    labels = _policy(source.labels, policy.copy_labels)
    labels.update({MANAGED_BY_LABEL: MANAGED_BY_VALUE, INSTANCE_LABEL: policy.instance})
    return labels


def desired_annotations(source: Source, policy: Policy) -> dict[str, str]:
    """A copy's annotations except its proof, which depends on where it sits."""
    annotations = _policy(source.annotations, policy.copy_annotations)
    annotations.update(
        {
            SOURCE_NAMESPACE_ANNOTATION: source.namespace,
            SOURCE_NAME_ANNOTATION: source.name,
            SOURCE_UID_ANNOTATION: source.uid,
            SOURCE_DIGEST_ANNOTATION: source.digest,
        }
    )
    return annotations


def proof_of(source: Source, policy: Policy, namespace: str, key: bytes | None) -> dict[str, str]:
    """The proof annotation of `source`'s copy in `namespace` (none before the key exists: dry-runs)."""
    if key is None:
        return {}
    return {PROOF_ANNOTATION: proof(key, policy.instance, Ref(namespace, source.name), source.ref, source.uid)}


def copy_body(
    source: Source, policy: Policy, namespace: str, resource_version: str = "", key: bytes | None = None
) -> dict[str, Any]:
    """The whole Secret a copy should be: data, type and syncjob's own metadata, nothing else."""
    metadata: dict[str, Any] = {
        "name": source.name,
        "namespace": namespace,
        "labels": desired_labels(source, policy),
        "annotations": {**desired_annotations(source, policy), **proof_of(source, policy, namespace, key)},
    }
    if resource_version:
        metadata["resourceVersion"] = resource_version
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": source.type,
        "data": dict(source.data),
    }


def describe_occupant(occupant: Occupant) -> str:
    if occupant.unproven:
        return (
            "it carries this SecretSync's labels but cannot be proven to be its copy (made by hand, forged, or "
            "its proof was edited); delete it or remove its syncjob labels"
        )
    if occupant.managed_by == MANAGED_BY_VALUE and occupant.instance:
        return f"it belongs to syncjob instance {occupant.instance!r}"
    if occupant.managed_by:
        return f"it is managed by {occupant.managed_by!r}"
    return "it was not created by syncjob"


@dataclass(frozen=True)
class SourceVerdicts:
    eligible: dict[Ref, Source]  # selected and of an enabled type
    invalid: dict[Ref, list[str]]  # eligible but failing validation
    problems: tuple[SourceProblem, ...]
    scopes: dict[Ref, SourceScope]  # each eligible source's own narrowing of the targets


def judge_sources(snapshot: Snapshot, policy: Policy) -> SourceVerdicts:
    eligible: dict[Ref, Source] = {}
    invalid: dict[Ref, list[str]] = {}
    problems: list[SourceProblem] = []
    scopes: dict[Ref, SourceScope] = {}
    for source in sorted(snapshot.sources, key=lambda s: s.ref):
        if source.type not in policy.types:
            problems.append(
                SourceProblem(
                    source.ref,
                    f"type {source.type} is not enabled; add it to the SecretSync's spec.types to sync it",
                    fatal=False,
                )
            )
            continue
        eligible[source.ref] = source
        messages = validate_source(source)
        try:
            scopes[source.ref] = source_scope(source)
        except ConfigError as e:
            messages.append(str(e))
        if messages:
            invalid[source.ref] = messages
            problems.append(
                SourceProblem(source.ref, "; ".join(messages) + ". Its existing copies are left as they are")
            )
    for ref in snapshot.missing_sources:
        problems.append(SourceProblem(ref, "not found; fix it or drop it from the SecretSync's spec.sources.names"))
    return SourceVerdicts(eligible, invalid, tuple(problems), scopes)


class Planner:
    """Plans every (namespace, name) once; `replan` plans one key again from a fresh read.

    Only provable copies (syncjob/proof.py) are ever updated, deleted or counted by the guard; any
    other Secret carrying this instance's labels is an occupant, reported and left alone.
    `release` is --max-delete: this run may delete up to that many copies whatever the guard says.
    """

    def __init__(self, snapshot: Snapshot, policy: Policy, *, release: int | None = None) -> None:
        self.snapshot = snapshot
        self.policy = policy
        self.release = release
        self.decisions = decide_all(snapshot, policy)
        self.verdicts = judge_sources(snapshot, policy)
        self.by_name: dict[str, list[Source]] = defaultdict(list)
        for source in self.verdicts.eligible.values():
            self.by_name[source.name].append(source)
        self.copies = {c.ref: c for c in snapshot.copies if self.proven(c)}
        self.unproven = sorted(c.ref for c in snapshot.copies if c.ref not in self.copies)
        self.occupants = {o.ref: o for o in snapshot.occupants}
        for ref in self.unproven:
            self.occupants[ref] = Occupant(ref.namespace, ref.name, "", MANAGED_BY_VALUE, policy.instance, True)
        self._desired: dict[Ref, tuple[dict[str, str], dict[str, str]]] = {}

    def proven(self, copy: Copy) -> bool:
        """A copy this SecretSync wrote: complete owner annotations, the owner's name, not in the owner's
        own namespace, and a proof that verifies with the key."""
        owner = copy.owner
        if owner is None or owner.name != copy.name or owner.namespace == copy.namespace:
            return False
        claimed = copy.annotations.get(PROOF_ANNOTATION, "")
        return verifies(
            self.snapshot.proof_key, claimed, instance=self.policy.instance, copy=copy.ref, owner=owner,
            owner_uid=copy.owner_uid,
        )  # fmt: skip

    def _desired_metadata(self, source: Source) -> tuple[dict[str, str], dict[str, str]]:
        """A source's copy labels and annotations, worked out once per run, not once per namespace."""
        if source.ref not in self._desired:
            self._desired[source.ref] = (
                desired_labels(source, self.policy),
                desired_annotations(source, self.policy),
            )
        return self._desired[source.ref]

    def decision(self, namespace: str) -> TargetDecision:
        return self.decisions.get(namespace) or gone(namespace)

    def wanted_counts(self) -> dict[Ref, int]:
        """Per source: the target namespaces (not terminating) that want a copy of it."""
        targets = [d.namespace for d in self.decisions.values() if d.target and not d.terminating]
        return {
            ref: sum(1 for ns in targets if self.wants(source, ns)) for ref, source in self.verdicts.eligible.items()
        }

    def keys(self) -> list[Ref]:
        keys = set(self.copies)
        for decision in self.decisions.values():
            if decision.target:
                keys.update(Ref(decision.namespace, name) for name in self.by_name)
        return sorted(keys)

    def plan(self) -> Plan:
        actions = [a for key in self.keys() if (a := self.plan_key(key)) is not None]
        notes = (self.unproven_note(),) if self.unproven else ()
        plan = Plan(tuple(actions), self.verdicts.problems, notes, tuple(self.unproven))
        plan = guard_deletes(plan, self)
        accounts = plan_service_accounts(self.snapshot.service_accounts, plan.actions, self.decisions, self.policy)
        return replace(plan, actions=plan.actions + tuple(accounts)) if accounts else plan

    def unproven_note(self) -> str:
        first = ", ".join(str(r) for r in self.unproven[:UNPROVEN_LISTED])
        more = f" and {len(self.unproven) - UNPROVEN_LISTED} more" if len(self.unproven) > UNPROVEN_LISTED else ""
        return (
            f"{len(self.unproven)} Secrets carry the labels of SecretSync {self.policy.name!r} but cannot be proven "
            f"to be its copies ({first}{more}): they are never updated, deleted or counted by the mass-deletion "
            "guard. Delete them or remove their syncjob labels"
        )

    def replan_account(self, account: ServiceAccount, secret_actions: tuple[Action, ...]) -> Action | None:
        """A ServiceAccount planned again from a fresh read, after a 409."""
        wanted = copies_after(secret_actions).get(account.namespace, set())
        return plan_account(account, wanted, self.policy.instance)

    def plan_key(self, key: Ref) -> Action | None:
        return self.replan(key, self.copies.get(key), self.occupants.get(key))

    def replan(self, key: Ref, copy: Copy | None, occupant: Occupant | None) -> Action | None:
        ns, name = key.namespace, key.name
        if copy is not None and not self.proven(copy):  # a fresh read found an unproven one
            occupant = Occupant(ns, name, copy.uid, MANAGED_BY_VALUE, self.policy.instance, True)
            copy = None
        decision = self.decision(ns)
        wanted = [s for s in self.by_name.get(name, []) if self.wants(s, ns)] if decision.target else []

        if decision.terminating and (wanted or copy is not None):
            source = wanted[0].ref if len(wanted) == 1 else None
            return Action(Kind.SKIP, ns, name, decision.reason, source=source)
        if wanted:
            return self._plan_wanted(key, wanted, copy, occupant)
        if copy is None:
            return None
        return self._plan_unwanted(copy, decision)

    def wants(self, source: Source, namespace: str) -> bool:
        """Whether `source` wants a copy in a target `namespace`: not its own home (the copy would be the
        source itself), and not left out by the source's own annotations."""
        if source.namespace == namespace:
            return False
        scope = self.verdicts.scopes.get(source.ref)
        return scope is None or scope.allows(namespace)

    def _plan_wanted(
        self, key: Ref, wanted: list[Source], copy: Copy | None, occupant: Occupant | None
    ) -> Action | None:
        ns, name = key.namespace, key.name
        if len(wanted) > 1:
            names = " and ".join(str(s.ref) for s in wanted)
            return Action(Kind.CONFLICT, ns, name, f"sources {names} would land on the same name; rename one")
        source = wanted[0]
        if source.ref in self.verdicts.invalid:
            if copy is not None:
                return Action(Kind.LEAVE, ns, name, "source is invalid; copy left as it is", source=source.ref)
            return None  # reported once as a source problem, not once per namespace
        if copy is None:
            if occupant is not None:
                return Action(
                    Kind.CONFLICT, ns, name,
                    f"a Secret with this name exists and {describe_occupant(occupant)}; left untouched",
                    source=source.ref,
                )  # fmt: skip
            return Action(Kind.CREATE, ns, name, "copy missing", source=source.ref)

        def act(kind: Kind, reason: str) -> Action:
            return Action(kind, ns, name, reason, source.ref, copy.uid, copy.resource_version)

        if copy.type != source.type:
            return act(Kind.RECREATE, f"type changed from {copy.type} to {source.type}")
        if copy.immutable:
            return act(Kind.RECREATE, "copy was made immutable; syncjob copies are not")
        if copy.digest != source.digest:
            return act(Kind.UPDATE, "data differs from the source")
        labels, annotations = self._desired_metadata(source)
        if copy.labels != labels:
            return act(Kind.UPDATE, "labels drifted")
        if copy.annotations != {**annotations, **proof_of(source, self.policy, ns, self.snapshot.proof_key)}:
            return act(Kind.UPDATE, "annotations drifted")
        return act(Kind.LEAVE, "in sync")

    def _plan_unwanted(self, copy: Copy, decision: TargetDecision) -> Action:
        owner = copy.owner
        assert owner is not None  # proven copies have one
        ns, name = copy.namespace, copy.name

        if owner in self.verdicts.invalid:
            return Action(Kind.LEAVE, ns, name, "source is invalid; copy left as it is", source=owner)
        if not decision.target:
            reason = f"{decision.reason}; copy no longer wanted"
        elif owner not in self.verdicts.eligible:
            source = next((s for s in self.snapshot.sources if s.ref == owner), None)
            if source is not None:
                reason = f"source type {source.type} is not enabled in spec.types"
            else:
                reason = "source deleted, unlabelled or no longer selected"
        else:
            reason = "the source's syncjob.dev/include or syncjob.dev/exclude annotation leaves this namespace out"
        return Action(Kind.DELETE, ns, name, reason, owner, copy.uid, copy.resource_version)


def _hold(plan: Plan, held: set[Action], note: str) -> Plan:
    actions = tuple(
        Action(Kind.HOLD, a.namespace, a.name, "held by the mass-deletion guard: " + a.reason, a.source)
        if a in held
        else a
        for a in plan.actions
    )
    return replace(plan, actions=actions, notes=(*plan.notes, "mass-deletion guard: " + note))


def guard_deletes(plan: Plan, planner: Planner) -> Plan:
    """Hold deletes that look like a mistake rather than intent; everything else is applied.

    Counted over provable copies only, so Secrets a tenant labels as ours can neither dilute the
    guard nor trip it. Held, whatever the count: every copy whose namespace lost its builds when no
    build is left anywhere (a build kind reinstalled or its API gone), and every copy of a source that
    is still selected (its targets all went away). A source that was deleted or unlabelled takes its
    copies with it, under the count rules. Held by count: a source losing more than 10 and more
    than 25 % of its copies, or the run deleting more than 10 and more than 25 % of all copies
    (spec.maxDelete replaces both). `planner.release` (--max-delete N) lets up to N deletes through.
    """
    policy, deletes = planner.policy, plan.of_kind(Kind.DELETE)
    if not deletes:
        return plan
    rerun = f"rerun once with --max-delete {len(deletes)}"
    if planner.release is not None:
        if len(deletes) <= planner.release:
            return plan
        return _hold(plan, set(deletes), f"this run would delete {len(deletes)} copies, over --max-delete "
                     f"{planner.release}; no copy was deleted. If that is intended, {rerun}")  # fmt: skip
    snapshot = planner.snapshot
    if policy.by_builds and not snapshot.build_namespaces:
        held = {a for a in plan.of_kind(Kind.DELETE) if "namespace has no builds" in a.reason}
        if held:
            kinds = ", ".join(str(r) for r in policy.build_resources)
            plan = _hold(plan, held, (
                f"no namespace holds a build ({kinds}): the build kinds look emptied or reinstalled, so the "
                f"{len(held)} copies in namespaces without builds are kept. If every build is really gone, {rerun}"
            ))  # fmt: skip
    copies_of: Counter[Ref | None] = Counter(c.owner for c in planner.copies.values())
    wanted = planner.wanted_counts()
    for ref in sorted(planner.verdicts.eligible):
        held = {a for a in plan.of_kind(Kind.DELETE) if a.source == ref}
        if held and len(held) == copies_of[ref] and not wanted.get(ref):  # it would be left with no copy at all
            plan = _hold(plan, held, (
                f"source {ref} is still selected, yet this run would delete every one of its {len(held)} copies "
                "(its targets all went away: check spec.targets and the source's syncjob.dev/include and "
                f"syncjob.dev/exclude annotations); none was deleted. If that is intended, {rerun}"
            ))  # fmt: skip
    deletes = plan.of_kind(Kind.DELETE)
    if policy.max_delete is not None:
        if len(deletes) > policy.max_delete:
            plan = _hold(plan, set(deletes), (
                f"this run would delete {len(deletes)} copies, over spec.maxDelete {policy.max_delete}; no copy "
                f"was deleted. If that is intended, {rerun}"
            ))  # fmt: skip
        return plan
    deletes_of: Counter[Ref | None] = Counter(a.source for a in deletes)
    for of, n in sorted(deletes_of.items(), key=lambda item: str(item[0])):
        if _too_many(n, copies_of[of]):
            held = {a for a in plan.of_kind(Kind.DELETE) if a.source == of}
            plan = _hold(plan, held, (
                f"this run would delete {n} of the {copies_of[of]} copies of {of}; none was deleted. "
                f"If that is intended, {rerun}; otherwise check the SecretSync {policy.name!r}: spec.targets"
            ))  # fmt: skip
    deletes = plan.of_kind(Kind.DELETE)
    if _too_many(len(deletes), len(planner.copies)):
        plan = _hold(plan, set(deletes), (
            f"this run would delete {len(deletes)} copies (more than {GUARD_MIN_DELETES} and more than "
            f"{int(GUARD_FRACTION * 100)} % of {len(planner.copies)} managed copies); no copy was deleted. "
            f"If that is intended (e.g. sources were retired), {rerun}; otherwise check the SecretSync "
            f"{policy.name!r}: spec.sources and spec.targets"
        ))  # fmt: skip
    return plan


def _too_many(deletes: int, copies: int) -> bool:
    return deletes > GUARD_MIN_DELETES and deletes > GUARD_FRACTION * copies


def plan(snapshot: Snapshot, policy: Policy, *, release: int | None = None) -> Plan:
    return Planner(snapshot, policy, release=release).plan()
