"""Pure: one Kubernetes Event per source per run that changed something, failed or hit a conflict,
so that `kubectl describe secret` on the source tells the story."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from syncjob.model import SECRET, Kind, Outcome, Ref, Result, Source, SourceProblem

_VERBS = {Kind.CREATE: "created", Kind.UPDATE: "updated", Kind.RECREATE: "recreated", Kind.DELETE: "deleted"}


@dataclass(frozen=True)
class SourceEvent:
    source: Ref
    uid: str
    type: str  # Normal or Warning
    reason: str  # Synced, SyncFailed or Conflict
    message: str


def source_events(
    sources: Sequence[Source], results: Sequence[Result], problems: Sequence[SourceProblem], instance: str
) -> list[SourceEvent]:
    uids = {s.ref: s.uid for s in sources}
    invalid = {p.source: p.message for p in problems if p.fatal}
    events = []
    for ref in sorted(uids):
        mine = [r for r in results if r.action.source == ref and r.action.resource == SECRET]
        done = Counter(r.action.kind for r in mine if r.outcome is Outcome.DONE and r.action.kind.writes)
        failed = sum(1 for r in mine if r.outcome in (Outcome.FAILED, Outcome.NOT_RUN))
        conflicts = sum(1 for r in mine if r.action.kind is Kind.CONFLICT)
        held = sum(1 for r in mine if r.action.kind is Kind.HOLD)
        parts = [f"{_VERBS[k]} {n}" for k, n in sorted(done.items()) if k in _VERBS]
        parts += [f"{label} {n}" for label, n in (("failed", failed), ("conflicts", conflicts), ("held", held)) if n]
        counts = ", ".join(parts)
        suffix = f" (syncjob instance {instance})"
        if ref in invalid:
            events.append(
                SourceEvent(ref, uids[ref], "Warning", "SyncFailed", f"source refused: {invalid[ref]}{suffix}")
            )
        elif failed or held:
            events.append(SourceEvent(ref, uids[ref], "Warning", "SyncFailed", f"copies: {counts}{suffix}"))
        elif conflicts:
            events.append(SourceEvent(ref, uids[ref], "Warning", "Conflict", f"copies: {counts}{suffix}"))
        elif done:
            events.append(SourceEvent(ref, uids[ref], "Normal", "Synced", f"copies: {counts}{suffix}"))
    return events
