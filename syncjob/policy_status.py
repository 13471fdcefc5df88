"""Pure: the `status` a run writes on its SecretSync, so that `kubectl get secretsyncs` shows the outcome.

Counts, names, reasons and times only: no action's error text (an API server's message can echo
Secret data) and no value ever reaches the status.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from syncjob.errors import EXIT_OK, EXIT_PARTIAL
from syncjob.model import SECRET, Kind, Outcome, Ref, Result, SourceProblem

# Reasons of the Ready condition, worst first.
INVALID = "Invalid"  # the SecretSync itself cannot be acted on (spec, build kinds)
READ_FAILED = "ReadFailed"  # the cluster could not be read (forbidden, unreachable)
PARTIAL = "Partial"  # some writes failed or were not made
DELETES_HELD = "DeletesHeld"  # the mass-deletion guard held deletes
INVALID_SOURCE = "InvalidSource"  # a source is invalid or missing
CONFLICT = "Conflict"  # conflicts, with spec.conflictPolicy Fail
IN_SYNC = "InSync"
MAX_SOURCES_LISTED = 100  # keeps the object far below etcd's size limit
MESSAGE_LIMIT = 1024


@dataclass(frozen=True)
class RunFacts:
    """What the status needs from one run of one policy."""

    generation: int
    start: str  # RFC 3339
    completion: str
    exit_code: int
    results: Sequence[Result] = ()
    problems: Sequence[SourceProblem] = ()
    notes: Sequence[str] = ()
    sources: Sequence[tuple[Ref, str]] = ()  # eligible sources and their types
    wanted: Mapping[Ref, int] | None = None  # per source: target namespaces that want a copy
    api_requests: int = 0
    error_reason: str = ""  # INVALID or READ_FAILED when the run could not plan
    error: str = ""
    fail_on_conflict: bool = False


def _ready(facts: RunFacts) -> tuple[str, str, str]:
    results = facts.results
    failed = sum(1 for r in results if r.outcome in (Outcome.FAILED, Outcome.NOT_RUN))
    held = sum(1 for r in results if r.action.kind is Kind.HOLD)
    conflicts = sum(1 for r in results if r.action.kind is Kind.CONFLICT)
    fatal = [p for p in facts.problems if p.fatal]
    if facts.error_reason:
        return "False", facts.error_reason, facts.error
    if failed:
        return "False", PARTIAL, f"{failed} writes failed or were not made; the next run tries again"
    if held:
        note = next((n for n in facts.notes if n.startswith("mass-deletion guard")), "")
        return "False", DELETES_HELD, note or f"{held} deletes held by the mass-deletion guard"
    if fatal:
        return "False", INVALID_SOURCE, "; ".join(f"{p.source}: {p.message}" for p in fatal)
    if conflicts and facts.fail_on_conflict:
        return "False", CONFLICT, f"{conflicts} Secrets that syncjob does not own are in the way of copies"
    message = "every copy is in sync"
    if conflicts:
        message += f"; {conflicts} conflicts reported (Secrets syncjob does not own, left untouched)"
    return "True", IN_SYNC, message


def _in_sync(result: Result) -> bool:
    kind, outcome = result.action.kind, result.outcome
    if kind is Kind.LEAVE:
        return result.action.reason == "in sync"
    return kind in (Kind.CREATE, Kind.UPDATE, Kind.RECREATE) and outcome is Outcome.DONE


def policy_status(facts: RunFacts, previous: Mapping[str, Any]) -> dict[str, Any]:
    status, reason, message = _ready(facts)
    before: Mapping[str, Any] = next((c for c in previous.get("conditions") or [] if c.get("type") == "Ready"), {})
    # lastTransitionTime moves only when the condition's status does (API conventions).
    since = before.get("lastTransitionTime") if before.get("status") == status else None
    condition = {
        "type": "Ready",
        "status": status,
        "reason": reason,
        "message": message[:MESSAGE_LIMIT],
        "lastTransitionTime": since or facts.completion,
        "observedGeneration": facts.generation,
    }
    secret_results = [r for r in facts.results if r.action.resource == SECRET]
    in_sync: Counter[Ref] = Counter(r.action.source for r in secret_results if r.action.source and _in_sync(r))
    problems = {p.source: p.message for p in facts.problems}
    wanted = facts.wanted or {}
    sources = [
        {
            "namespace": ref.namespace,
            "name": ref.name,
            "type": type_,
            "targets": wanted.get(ref, 0),
            "inSync": in_sync.get(ref, 0),
            **({"problem": problems[ref][:MESSAGE_LIMIT]} if ref in problems else {}),
        }
        for ref, type_ in sorted(facts.sources)[:MAX_SOURCES_LISTED]
    ]
    actions = Counter(r.action.kind.value for r in facts.results if r.action.kind is not Kind.LEAVE)
    failed = sum(1 for r in facts.results if r.outcome in (Outcome.FAILED, Outcome.NOT_RUN))
    result = "Succeeded" if facts.exit_code == EXIT_OK else "Partial" if facts.exit_code == EXIT_PARTIAL else "Failed"
    return {
        "observedGeneration": facts.generation,
        "conditions": [condition],
        "summary": {
            "sources": len(facts.sources),
            "targets": sum(wanted.values()),
            "inSync": sum(in_sync.values()),
        },
        "lastRun": {
            "startTime": facts.start,
            "completionTime": facts.completion,
            "result": result,
            "exitCode": facts.exit_code,
            "actions": dict(sorted(actions.items())),
            "inSync": sum(in_sync.values()),
            "failed": failed,
            "apiRequests": facts.api_requests,
        },
        "sources": sources,
    }
