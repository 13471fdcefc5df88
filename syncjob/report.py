"""Table, JSON and summary from the plan's actions and their results. No secret value reaches here:
actions carry names, reasons and preconditions only."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from syncjob.errors import EXIT_OK, EXIT_PARTIAL
from syncjob.model import Kind, Outcome, Result, SourceProblem


@dataclass(frozen=True)
class Summary:
    mode: str  # "apply", "dry-run (client)", "dry-run (server)"
    counts: Mapping[str, Mapping[str, int]]  # action kind → outcome → n
    requests: Mapping[str, int]
    retries: int
    duration_seconds: float
    problems: tuple[SourceProblem, ...] = ()
    notes: tuple[str, ...] = ()
    exit_code: int = EXIT_OK
    source_count: int = 0
    target_count: int = 0
    extra: Mapping[str, Any] = field(default_factory=dict)
    policy: str = ""  # the SecretSync this summary is about; "" for a run's combined summary
    error: str = ""  # why the policy could not be planned (exit 2)
    policies: tuple[Summary, ...] = ()  # a combined summary's per-policy parts

    def policy_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.policy,
            "exitCode": self.exit_code,
            "sources": self.source_count,
            "targets": self.target_count,
            "actions": {k: dict(v) for k, v in self.counts.items()},
        }
        if self.error:
            doc["error"] = self.error
        return doc

    def as_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "actions": {k: dict(v) for k, v in self.counts.items()},
            "requests": {**self.requests, "total": sum(self.requests.values())},
            "retries": self.retries,
            "durationSeconds": round(self.duration_seconds, 3),
            "sources": self.source_count,
            "targets": self.target_count,
            "problems": [{"source": str(p.source), "message": p.message, "fatal": p.fatal} for p in self.problems],
            "notes": list(self.notes),
            "exitCode": self.exit_code,
            **({"policies": [p.policy_dict() for p in self.policies]} if self.policies else {}),
            **self.extra,
        }


def exit_code(results: Sequence[Result], problems: Sequence[SourceProblem], *, fail_on_conflict: bool = False) -> int:
    partial = any(r.outcome in (Outcome.FAILED, Outcome.NOT_RUN) for r in results)
    partial = partial or (fail_on_conflict and any(r.action.kind is Kind.CONFLICT for r in results))
    partial = partial or any(r.action.kind is Kind.HOLD for r in results)
    partial = partial or any(p.fatal for p in problems)
    return EXIT_PARTIAL if partial else EXIT_OK


def count(results: Sequence[Result]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for r in results:
        counts.setdefault(r.action.kind.value, Counter())[r.outcome.value] += 1
    return {k: dict(v) for k, v in sorted(counts.items())}


def result_dict(result: Result) -> dict[str, Any]:
    a = result.action
    out: dict[str, Any] = {
        "action": a.kind.value,
        "resource": a.resource,
        "namespace": a.namespace,
        "name": a.name,
        "source": str(a.source) if a.source else "",
        **({"policy": result.policy} if result.policy else {}),
        "result": result.outcome.value,
        "reason": a.reason,
    }
    if result.error:
        out["error"] = result.error
    return out


def shown(results: Sequence[Result]) -> list[Result]:
    """What the table lists: everything but copies that are simply in sync."""
    return [r for r in results if r.action.kind is not Kind.LEAVE or r.outcome is not Outcome.REPORTED]


def render_table(results: Sequence[Result], summary: Summary) -> str:
    several = len({r.policy for r in results} | {p.policy for p in summary.policies}) > 1
    head = ("POLICY",) if several else ()
    rows = [(*head, "ACTION", "NAMESPACE", "NAME", "SOURCE", "RESULT", "REASON")]
    for r in shown(results):
        d = result_dict(r)
        reason = d["reason"] + (f" — {d['error']}" if r.error else "")
        policy = (r.policy,) if several else ()
        rows.append((*policy, d["action"], d["namespace"], r.action.display_name, d["source"], d["result"], reason))
    n = len(rows[0]) - 1
    widths = [max(len(row[i]) for row in rows) for i in range(n)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:n], widths, strict=True)) + "  " + row[n] for row in rows]
    in_sync = sum(1 for r in results if r.action.kind is Kind.LEAVE and r.action.reason == "in sync")
    if len(rows) == 1:
        lines = ["Nothing to do."]
    lines.append("")
    for part in summary.policies:
        if part.error:
            lines.append(f"ERROR: SecretSync {part.policy}: {part.error}")
    for p in summary.problems:
        lines.append(f"{'ERROR' if p.fatal else 'NOTE'}: source {p.source}: {p.message}")
    for note in summary.notes:
        lines.append(f"NOTE: {note}")
    per_kind = ", ".join(f"{k} {sum(v.values())}" for k, v in summary.counts.items() if k != Kind.LEAVE.value)
    reqs = ", ".join(f"{k} {v}" for k, v in sorted(summary.requests.items()))
    lines.append(
        f"{summary.mode}: {_policies(summary)}{summary.source_count} sources, "
        f"{summary.target_count} target namespaces, "
        f"{in_sync} copies in sync"
        + (f", {per_kind}" if per_kind else "")
        + f"; {sum(summary.requests.values())} API requests ({reqs or 'none'}) in {summary.duration_seconds:.2f}s"
        + f"; exit {summary.exit_code}"
    )
    return "\n".join(lines) + "\n"


def render_json(results: Sequence[Result], summary: Summary) -> str:
    # One action per line: json.dumps(indent=...) runs the pure-Python encoder and holds every
    # token of 15,000 actions at once; without indent the C encoder writes each line.
    head = json.dumps(summary.as_dict(), indent=2).replace("\n", "\n  ")
    actions = ",\n".join("    " + json.dumps(result_dict(r)) for r in results)
    return '{\n  "summary": ' + head + ',\n  "actions": [\n' + actions + ("\n" if actions else "") + "  ]\n}\n"


def _policies(summary: Summary) -> str:
    names = [p.policy for p in summary.policies]
    if not names:
        return ""
    return f"SecretSync {names[0]}, " if len(names) == 1 else f"{len(names)} SecretSyncs, "
