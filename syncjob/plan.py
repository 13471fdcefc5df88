"""The planner: a pure function from a snapshot and a policy to a plan. No I/O, no clock."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from syncjob.errors import ConfigError
from syncjob.model import (
    INSTANCE_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
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


def _policy(values: Mapping[str, str], allow: tuple[str, ...]) -> dict[str, str]:
    return {k: v for k, v in values.items() if matches_any_glob(k, allow) and not matches_any_glob(k, NEVER_COPIED)}


def desired_labels(source: Source, policy: Policy) -> dict[str, str]:
    labels = _policy(source.labels, policy.copy_labels)
    labels.update({MANAGED_BY_LABEL: MANAGED_BY_VALUE, INSTANCE_LABEL: policy.instance})
    return labels


def desired_annotations(source: Source, policy: Policy) -> dict[str, str]:
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


def copy_body(source: Source, policy: Policy, namespace: str, resource_version: str = "") -> dict[str, Any]:
    """The whole Secret a copy should be: data, type and syncjob's own metadata, nothing else."""
    metadata: dict[str, Any] = {
        "name": source.name,
        "namespace": namespace,
        "labels": desired_labels(source, policy),
        "annotations": desired_annotations(source, policy),
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
    """Plans every (namespace, name) once; `replan` plans one key again from a fresh read."""

    def __init__(self, snapshot: Snapshot, policy: Policy) -> None:
        self.snapshot = snapshot
        self.policy = policy
        self.decisions = decide_all(snapshot, policy)
        self.verdicts = judge_sources(snapshot, policy)
        self.by_name: dict[str, list[Source]] = defaultdict(list)
        for source in self.verdicts.eligible.values():
            self.by_name[source.name].append(source)
        self.copies = {c.ref: c for c in snapshot.copies}
        self.occupants = {o.ref: o for o in snapshot.occupants}
        self._desired: dict[Ref, tuple[dict[str, str], dict[str, str]]] = {}

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
        plan = guard_deletes(Plan(tuple(actions), self.verdicts.problems), len(self.copies), self.policy)
        accounts = plan_service_accounts(self.snapshot.service_accounts, plan.actions, self.decisions, self.policy)
        return replace(plan, actions=plan.actions + tuple(accounts)) if accounts else plan

    def replan_account(self, account: ServiceAccount, secret_actions: tuple[Action, ...]) -> Action | None:
        """A ServiceAccount planned again from a fresh read, after a 409."""
        wanted = copies_after(secret_actions).get(account.namespace, set())
        return plan_account(account, wanted, self.policy.instance)

    def plan_key(self, key: Ref) -> Action | None:
        return self.replan(key, self.copies.get(key), self.occupants.get(key))

    def replan(self, key: Ref, copy: Copy | None, occupant: Occupant | None) -> Action | None:
        ns, name = key.namespace, key.name
        decision = self.decision(ns)
        wanted = [s for s in self.by_name.get(name, []) if self.wants(s, ns)] if decision.target else []

        if copy is not None and copy.owner is None:
            return Action(
                Kind.CONFLICT, ns, name,
                "carries syncjob's labels but no owner annotations; not touching it "
                "(delete it, or remove its syncjob labels)",
            )  # fmt: skip
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
        if copy.annotations != annotations:
            return act(Kind.UPDATE, "annotations drifted")
        return act(Kind.LEAVE, "in sync")

    def _plan_unwanted(self, copy: Copy, decision: TargetDecision) -> Action:
        owner = copy.owner
        assert owner is not None  # checked by the caller
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
        elif owner.namespace == ns:
            reason = "copy sits in its source's own namespace"
        else:
            reason = "the source's syncjob.dev/include or syncjob.dev/exclude annotation leaves this namespace out"
        return Action(Kind.DELETE, ns, name, reason, owner, copy.uid, copy.resource_version)


def guard_deletes(plan: Plan, managed: int, policy: Policy) -> Plan:
    """Hold every delete when a run would delete too many copies: a typo must not wipe a cluster."""
    deletes = plan.of_kind(Kind.DELETE)
    if policy.max_delete is not None:
        held = len(deletes) > policy.max_delete
        bound = f"maxDelete {policy.max_delete}"
    else:
        held = len(deletes) > GUARD_MIN_DELETES and len(deletes) > GUARD_FRACTION * managed
        bound = f"more than {GUARD_MIN_DELETES} and more than {int(GUARD_FRACTION * 100)} % of {managed} managed copies"
    if not held:
        return plan
    note = (
        f"mass-deletion guard: this run would delete {len(deletes)} copies ({bound}); no copy was deleted. "
        f"If that is intended (e.g. sources were retired), rerun once with --max-delete {len(deletes)}; "
        f"otherwise check the SecretSync {policy.name!r}: spec.sources and spec.targets"
    )
    actions = tuple(
        Action(Kind.HOLD, a.namespace, a.name, "held by the mass-deletion guard: " + a.reason, a.source)
        if a.kind is Kind.DELETE
        else a
        for a in plan.actions
    )
    return Plan(actions, plan.problems, (*plan.notes, note))


def plan(snapshot: Snapshot, policy: Policy) -> Plan:
    return Planner(snapshot, policy).plan()
