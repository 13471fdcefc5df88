"""Pure: what is synced where, per source and per target namespace, from a plan. No writes, no I/O."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from syncjob.errors import EXIT_OK, EXIT_PARTIAL, EXIT_UNUSABLE
from syncjob.model import SECRET, Kind, Plan, Ref
from syncjob.plan import Planner

IN_SYNC = "in sync"
DRIFTED = "drifted"
MISSING = "missing"
CONFLICT = "conflict"
TERMINATING = "terminating"
INVALID = "invalid source"
STALE = "stale copy"  # a copy that the next run deletes
HELD = "held"  # a stale copy the mass-deletion guard keeps


@dataclass
class SourceStatus:
    ref: Ref
    type: str
    policy: str = ""
    created: str = ""
    enabled: bool = True
    problems: list[str] = field(default_factory=list)
    namespaces: dict[str, tuple[str, str]] = field(default_factory=dict)  # ns → (state, reason)

    @property
    def targets(self) -> int:
        return sum(1 for state, _ in self.namespaces.values() if state not in (STALE, HELD))

    @property
    def in_sync(self) -> int:
        return sum(1 for state, _ in self.namespaces.values() if state == IN_SYNC)

    @property
    def healthy(self) -> bool:
        if not self.enabled:
            return True  # not ours to sync: reported, not a failure
        return not self.problems and all(state == IN_SYNC for state, _ in self.namespaces.values())

    def problem_summary(self, width: int = 60) -> str:
        """Short: each problem's first clause, then counts of targets per state."""
        counts = Counter(state for state, _ in self.namespaces.values() if state != IN_SYNC)
        parts = [f"{n} {state}" for state, n in sorted(counts.items())]
        short = [p.split(";")[0][:width] + ("…" if len(p.split(";")[0]) > width else "") for p in self.problems]
        return "; ".join([*short, *parts]) or "-"


def _state(kind: Kind, reason: str) -> str:
    if kind is Kind.LEAVE:
        return IN_SYNC if reason == "in sync" else INVALID
    return {
        Kind.CREATE: MISSING,
        Kind.UPDATE: DRIFTED,
        Kind.RECREATE: DRIFTED,
        Kind.CONFLICT: CONFLICT,
        Kind.SKIP: TERMINATING,
        Kind.DELETE: STALE,
        Kind.HOLD: HELD,
    }.get(kind, reason)


@dataclass
class StatusReport:
    """What `syncjob status` found over every SecretSync it read."""

    items: list[SourceStatus] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # SecretSyncs that could not be planned
    pending_writes: int = 0  # writes a run would make (ServiceAccounts included)

    @property
    def healthy(self) -> bool:
        return not self.errors and not self.pending_writes and all(s.healthy for s in self.items)

    @property
    def exit_code(self) -> int:
        if self.errors:
            return EXIT_UNUSABLE
        return EXIT_OK if self.healthy else EXIT_PARTIAL


def statuses(planner: Planner, plan: Plan) -> list[SourceStatus]:
    policy = planner.policy.name
    by_ref: dict[Ref, SourceStatus] = {}
    for source in planner.snapshot.sources:
        status = SourceStatus(source.ref, source.type, policy, source.creation_timestamp)
        status.enabled = source.ref in planner.verdicts.eligible
        by_ref[source.ref] = status
    for ref in planner.snapshot.missing_sources:
        by_ref[ref] = SourceStatus(ref, "-", policy, problems=["not found"])
    # Copies whose source is gone (deleted, unlabelled, no longer named): the next run deletes them.
    for action in plan.actions:
        if action.resource == SECRET and action.source is not None and action.source not in by_ref:
            by_ref[action.source] = SourceStatus(action.source, "-", policy, problems=["source gone; copies remain"])
    for problem in planner.verdicts.problems:
        if problem.source in by_ref and problem.source not in planner.snapshot.missing_sources:
            by_ref[problem.source].problems.append(problem.message)
    for action in plan.actions:
        if action.resource != SECRET or action.source not in by_ref:
            continue
        by_ref[action.source].namespaces[action.namespace] = (_state(action.kind, action.reason), action.reason)
    # An invalid source makes no copies: its targets without one are listed too.
    for ref in planner.verdicts.invalid:
        source = planner.verdicts.eligible[ref]
        for decision in planner.decisions.values():
            if decision.target and not decision.terminating and planner.wants(source, decision.namespace):
                by_ref[ref].namespaces.setdefault(decision.namespace, (INVALID, "source is invalid; no copy made"))
    return [by_ref[r] for r in sorted(by_ref)]


def age(created: str, now: datetime) -> str:
    try:
        seconds = int((now - datetime.fromisoformat(created.replace("Z", "+00:00"))).total_seconds())
    except ValueError:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def _columns(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "   ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "   " + row[-1] for row in rows
    )


def render_table(report: StatusReport, items: list[SourceStatus], now: datetime) -> str:
    rows = [("POLICY", "NAME", "NAMESPACE", "TYPE", "TARGETS", "IN SYNC", "AGE", "PROBLEMS")]
    for s in items:
        problems = s.problem_summary() if s.enabled else "type not enabled (spec.types)"
        rows.append(
            (s.policy, s.ref.name, s.ref.namespace, s.type, str(s.targets), str(s.in_sync), age(s.created, now),
             problems)
        )  # fmt: skip
    lines = [_columns(rows)] if len(rows) > 1 else ["No sources selected."]
    if report.pending_writes and all(s.healthy for s in items):
        lines.append(f"{report.pending_writes} ServiceAccount changes pending (the next run makes them)")
    lines += [f"ERROR: {e}" for e in report.errors]
    return "\n".join(lines) + "\n"


def render_detail(status: SourceStatus, now: datetime) -> str:
    lines = [
        f"Policy:    {status.policy}",
        f"Source:    {status.ref}",
        f"Type:      {status.type}",
        f"Age:       {age(status.created, now)}",
        f"Targets:   {status.targets} ({status.in_sync} in sync)",
    ]
    lines += [f"Problem:   {p}" for p in status.problems]
    rows = [("NAMESPACE", "STATE", "REASON")]
    rows += [(ns, state, reason) for ns, (state, reason) in sorted(status.namespaces.items())]
    return "\n".join(lines) + "\n\n" + (_columns(rows) if len(rows) > 1 else "No target namespaces.") + "\n"


def as_json(report: StatusReport, items: list[SourceStatus], now: datetime) -> str:
    doc: dict[str, Any] = {
        "inSync": report.healthy,
        "errors": report.errors,
        "pendingWrites": report.pending_writes,
        "sources": [
            {
                "policy": s.policy,
                "namespace": s.ref.namespace,
                "name": s.ref.name,
                "type": s.type,
                "enabled": s.enabled,
                "age": age(s.created, now),
                "targets": s.targets,
                "inSync": s.in_sync,
                "problems": s.problems,
                "namespaces": {ns: {"state": st, "reason": r} for ns, (st, r) in sorted(s.namespaces.items())},
            }
            for s in items
        ],
    }
    return json.dumps(doc, indent=2) + "\n"
