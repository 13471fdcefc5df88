"""Pure: which ServiceAccounts need their imagePullSecrets changed after the copies are planned.

syncjob adds a copy's name to the named ServiceAccounts of each target namespace and removes it
again when the copy goes. It records what it added in an annotation on the ServiceAccount and only
ever removes those: a reference someone else put there stays, whatever happens to the copy.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from syncjob.model import (
    PULL_SECRETS_ANNOTATION_PREFIX,
    SERVICE_ACCOUNT,
    Action,
    Kind,
    Ref,
    ServiceAccount,
)
from syncjob.policy import Policy
from syncjob.select import TargetDecision

# Copies that exist after the plan has run (held deletes included: the guard kept them).
_COPY_REMAINS = (Kind.CREATE, Kind.UPDATE, Kind.RECREATE, Kind.LEAVE, Kind.HOLD)


def annotation_key(instance: str) -> str:
    return PULL_SECRETS_ANNOTATION_PREFIX + instance


def copies_after(actions: Iterable[Action]) -> dict[str, set[str]]:
    """Namespace → names of this instance's copies once the plan is applied."""
    remaining: dict[str, set[str]] = defaultdict(set)
    for a in actions:
        if a.resource != SERVICE_ACCOUNT and a.kind in _COPY_REMAINS and a.source is not None:
            remaining[a.namespace].add(a.name)
    return remaining


def plan_account(account: ServiceAccount, wanted: set[str], instance: str) -> Action | None:
    current = list(account.image_pull_secrets)
    added = set(account.added_by(instance))
    stale = added - wanted
    missing = sorted(wanted - set(current))
    new_list = [name for name in current if name not in stale] + missing
    # What we can claim: refs we added before and still want, plus the ones we add now.
    new_added = sorted((added & wanted) | set(missing))
    if new_list == current and new_added == sorted(added):
        return None
    changes = [f"add {', '.join(missing)}"] if missing else []
    if stale:
        changes.append(f"remove {', '.join(sorted(stale))}")
    return Action(
        Kind.PATCH,
        account.namespace,
        account.name,
        "imagePullSecrets: " + ("; ".join(changes) or "record what syncjob added"),
        expected_uid=account.uid,
        expected_resource_version=account.resource_version,
        resource=SERVICE_ACCOUNT,
        pull_secrets=tuple(new_list),
        added=tuple(new_added),
    )


def plan_service_accounts(
    accounts: Iterable[ServiceAccount],
    secret_actions: Iterable[Action],
    decisions: dict[str, TargetDecision],
    policy: Policy,
) -> list[Action]:
    if not policy.patch_service_accounts:
        return []
    remaining = copies_after(secret_actions)
    by_ref = {a.ref: a for a in accounts if a.name in policy.patch_service_accounts}
    actions: list[Action] = []
    namespaces = sorted({*remaining, *(r.namespace for r in by_ref)})
    for namespace in namespaces:
        decision = decisions.get(namespace)
        if decision is not None and decision.terminating:
            continue
        wanted = remaining.get(namespace, set())
        for name in policy.patch_service_accounts:
            account = by_ref.get(Ref(namespace, name))
            if account is not None:
                action = plan_account(account, wanted, policy.instance)
                if action is not None:
                    actions.append(action)
            elif wanted:
                kind = Kind.CREATE if policy.create_service_accounts else Kind.SKIP
                reason = (
                    "missing; created with the copies as imagePullSecrets"
                    if kind is Kind.CREATE
                    else "missing; not created (set spec.serviceAccounts.create to create it)"
                )
                actions.append(
                    Action(
                        kind,
                        namespace,
                        name,
                        reason,
                        resource=SERVICE_ACCOUNT,
                        pull_secrets=tuple(sorted(wanted)),
                        added=tuple(sorted(wanted)),
                    )
                )
    return actions
