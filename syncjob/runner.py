"""One run, wired: read snapshot → plan → (probe for conflicts, re-plan) → apply → report."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TextIO

from syncjob.config import Settings
from syncjob.events import source_events
from syncjob.kube.apply import Applier
from syncjob.kube.client import Deadline, Kube, RequestCounter, load_api_client
from syncjob.kube.events import post_events
from syncjob.kube.read import read_occupants, read_snapshot
from syncjob.logs import log_event
from syncjob.model import Kind, Outcome, Plan, Result, Snapshot
from syncjob.plan import Planner
from syncjob.report import Summary, count, exit_code, render_json, render_table, result_dict
from syncjob.snapshot_file import read_snapshot_file


@dataclass
class RunOutcome:
    results: list[Result]
    summary: Summary
    plan: Plan
    snapshot: Snapshot


def mode_of(settings: Settings) -> str:
    dry = settings.effective_dry_run
    return f"dry-run ({dry})" if dry else "apply"


def log_result(result: Result) -> None:
    if result.action.kind is Kind.LEAVE and result.outcome is Outcome.REPORTED:
        return  # in-sync copies are counted in the summary, not logged one by one
    level = logging.WARNING if result.outcome is Outcome.FAILED or result.action.kind is Kind.CONFLICT else logging.INFO
    log_event("action", level, **result_dict(result))


def make_kube(settings: Settings, sleep: Callable[[float], None] = time.sleep) -> Kube:
    api = load_api_client(settings.kubeconfig, settings.context, settings.concurrency)
    return Kube(api, deadline=Deadline.after(settings.timeout), counter=RequestCounter(), sleep=sleep)


def plan_run(settings: Settings, kube: Kube | None) -> tuple[Snapshot, Planner, Plan]:
    if kube is None:
        assert settings.snapshot is not None
        snapshot = read_snapshot_file(settings.snapshot, settings)
    else:
        snapshot = read_snapshot(kube, settings)
    planner = Planner(snapshot, settings)
    plan = planner.plan()
    creates = plan.of_kind(Kind.CREATE)
    if creates and kube is not None:
        # Only where a copy is missing can someone else's Secret be in the way: look there, then re-plan.
        occupants = read_occupants(kube, settings, [a.ref for a in creates])
        if occupants:
            snapshot = replace(snapshot, occupants=(*snapshot.occupants, *occupants))
            planner = Planner(snapshot, settings)
            plan = planner.plan()
    return snapshot, planner, plan


def execute(settings: Settings, out: TextIO, *, kube: Kube | None = None, output: str = "") -> RunOutcome:
    """A whole run. Raises SyncjobError for what makes the run unusable (exit 2)."""
    started = time.monotonic()
    mode = mode_of(settings)
    if settings.effective_dry_run:
        log_event("dry_run", logging.WARNING, mode=mode, note="DRY RUN: reading and planning only, nothing is changed")
        if output == "table":
            out.write(f"*** DRY RUN ({settings.effective_dry_run}): nothing will be changed ***\n")
    if kube is None and settings.snapshot is None:
        kube = make_kube(settings)
    snapshot, planner, plan = plan_run(settings, kube)
    for problem in plan.problems:
        level = logging.ERROR if problem.fatal else logging.WARNING
        log_event("source_problem", level, source=str(problem.source), message=problem.message)
    for note in plan.notes:
        log_event("note", logging.WARNING, message=note)

    if kube is None:
        results = [Result(a, Outcome.PLANNED if a.kind.writes else Outcome.REPORTED) for a in plan.actions]
        for r in results:
            log_result(r)
    else:
        results = Applier(kube, planner, dry_run=settings.effective_dry_run).apply(plan.actions, on_result=log_result)
        for r in results:
            if not r.action.kind.writes:
                log_result(r)

    if settings.events and kube is not None and not settings.effective_dry_run:
        events = source_events(snapshot.sources, results, plan.problems, settings.instance)
        post_events(kube, events, settings.instance)

    counter = kube.counter if kube else RequestCounter()
    summary = Summary(
        mode=mode,
        counts=count(results),
        requests=dict(counter.by_verb),
        retries=counter.retries,
        duration_seconds=time.monotonic() - started,
        problems=plan.problems,
        notes=plan.notes,
        exit_code=exit_code(results, plan.problems),
        source_count=len(planner.verdicts.eligible),
        target_count=sum(1 for d in planner.decisions.values() if d.target),
    )
    if any(r.outcome is Outcome.NOT_RUN for r in results):
        undone = sum(1 for r in results if r.outcome is Outcome.NOT_RUN)
        summary = replace(summary, notes=(*summary.notes, f"--timeout expired: {undone} writes were not made"))
    log_event("summary", **summary.as_dict())
    if output == "table":
        out.write(render_table(results, summary))
    elif output == "json":
        out.write(render_json(results, summary))
    return RunOutcome(results, summary, plan, snapshot)
