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
            **self.extra,
        }


def exit_code(results: Sequence[Result], problems: Sequence[SourceProblem]) -> int:
    partial = any(r.outcome in (Outcome.FAILED, Outcome.NOT_RUN) for r in results)
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
    rows = [("ACTION", "NAMESPACE", "NAME", "SOURCE", "RESULT", "REASON")]
    for r in shown(results):
        d = result_dict(r)
        reason = d["reason"] + (f" — {d['error']}" if r.error else "")
        rows.append((d["action"], d["namespace"], r.action.display_name, d["source"], d["result"], reason))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:5], widths, strict=True)) + "  " + row[5] for row in rows]
    in_sync = sum(1 for r in results if r.action.kind is Kind.LEAVE and r.action.reason == "in sync")
    if len(rows) == 1:
        lines = ["Nothing to do."]
    lines.append("")
    for p in summary.problems:
        lines.append(f"{'ERROR' if p.fatal else 'NOTE'}: source {p.source}: {p.message}")
    for note in summary.notes:
        lines.append(f"NOTE: {note}")
    per_kind = ", ".join(f"{k} {sum(v.values())}" for k, v in summary.counts.items() if k != Kind.LEAVE.value)
    reqs = ", ".join(f"{k} {v}" for k, v in sorted(summary.requests.items()))
    lines.append(
        f"{summary.mode}: {summary.source_count} sources, {summary.target_count} target namespaces, "
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
