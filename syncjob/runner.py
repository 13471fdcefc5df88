"""One run, wired: load the SecretSyncs, then for each: read snapshot → plan → (probe for conflicts,
re-plan) → apply → write its status → report."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from syncjob.config import RunSettings
from syncjob.errors import (
    EXIT_OK,
    EXIT_UNUSABLE,
    ClusterUnreachable,
    ConfigError,
    DeadlineExceeded,
    ReadIncomplete,
    SyncjobError,
)
from syncjob.events import source_events
from syncjob.kube.apply import Applier, write_policy_status
from syncjob.kube.client import Deadline, Kube, RequestCounter, load_api_client
from syncjob.kube.events import post_events
from syncjob.kube.read import ReadMemo, read_occupants, read_policy_objects, read_snapshot
from syncjob.logs import log_event
from syncjob.model import Kind, Outcome, Plan, Result, Snapshot
from syncjob.plan import Planner
from syncjob.policy import DEFAULT_POLICY_FILE, InvalidPolicy, Policy, policy_from
from syncjob.policy_status import INVALID, READ_FAILED, RunFacts, policy_status
from syncjob.report import Summary, count, exit_code, render_json, render_table, result_dict
from syncjob.snapshot_file import load_objects, load_policy_file, policies_in, snapshot_from_objects
from syncjob.status import StatusReport, statuses

PolicyEntry = tuple[Policy | InvalidPolicy, dict[str, Any]]  # a policy and the status it carried


@dataclass
class PolicyRun:
    """One SecretSync's part of a run."""

    name: str
    results: list[Result]
    summary: Summary
    policy: Policy | None = None
    plan: Plan | None = None
    snapshot: Snapshot | None = None
    planner: Planner | None = None
    error: str = ""
    cluster_gone: bool = False  # unreachable or out of time: the other policies would fail the same way


@dataclass
class RunOutcome:
    runs: list[PolicyRun]
    summary: Summary
    results: list[Result] = field(default_factory=list)

    @property
    def plan(self) -> Plan | None:
        return self.runs[0].plan if len(self.runs) == 1 else None

    @property
    def snapshot(self) -> Snapshot | None:
        return self.runs[0].snapshot if len(self.runs) == 1 else None


def mode_of(run: RunSettings) -> str:
    dry = run.effective_dry_run
    return f"dry-run ({dry})" if dry else "apply"


def log_result(result: Result) -> None:
    if result.action.kind is Kind.LEAVE and result.outcome is Outcome.REPORTED:
        return  # in-sync copies are counted in the summary, not logged one by one
    level = logging.WARNING if result.outcome is Outcome.FAILED or result.action.kind is Kind.CONFLICT else logging.INFO
    log_event("action", level, **result_dict(result))


def make_kube(run: RunSettings, sleep: Callable[[float], None] = time.sleep) -> Kube:
    api = load_api_client(run.kubeconfig, run.context, run.concurrency)
    return Kube(api, deadline=Deadline.after(run.timeout), counter=RequestCounter(), sleep=sleep)


def no_policy_message(where: str) -> str:
    return (
        f"no SecretSync {where}: syncjob's intent lives in SecretSync objects and there is none. Create the "
        f"default one (the Tanzu Build Service convention) with `kubectl apply -f {DEFAULT_POLICY_FILE}`, "
        "or write your own (examples/policies/)"
    )


def load_policies(run: RunSettings, kube: Kube | None, objects: list[dict[str, Any]] | None) -> list[PolicyEntry]:
    """The SecretSyncs this run acts on: from --policy-file, the dump, or the cluster; --policy narrows."""
    if run.policy_file is not None:
        found, where = load_policy_file(run.policy_file), f"in {run.policy_file}"
    elif kube is None:
        found, where = policies_in(objects or [], "snapshot"), f"in the dump {run.snapshot}"
    else:
        found = [(policy_from(o), dict(o.get("status") or {})) for o in read_policy_objects(kube, run.policies)]
        where = "in the cluster"
    if run.policies:
        names = {p.name for p, _ in found}
        missing = sorted(set(run.policies) - names)
        if missing:
            raise ConfigError(f"SecretSync {', '.join(missing)} not found {where}")
        found = [(p, s) for p, s in found if p.name in run.policies]
    if not found:
        raise ConfigError(no_policy_message(where))
    return sorted(found, key=lambda entry: entry[0].name)


def plan_policy(
    policy: Policy,
    kube: Kube | None,
    objects: list[dict[str, Any]] | None,
    memo: ReadMemo,
    *,
    release: int | None = None,
    create_key: bool = False,
) -> tuple[Snapshot, Planner, Plan]:
    """Read and plan one SecretSync. A second, narrow look only where the first plan needs it: who is in
    the way of a copy it would create."""
    if kube is None:
        snapshot = snapshot_from_objects(objects or [], policy)
    else:
        snapshot = read_snapshot(kube, policy, memo, create_key=create_key)
    planner = Planner(snapshot, policy, release=release)
    plan = planner.plan()
    if kube is None:
        return snapshot, planner, plan
    creates = plan.of_kind(Kind.CREATE)
    occupants = read_occupants(kube, policy.instance, [a.ref for a in creates]) if creates else []
    if occupants:
        snapshot = replace(snapshot, occupants=(*snapshot.occupants, *occupants))
        planner = Planner(snapshot, policy, release=release)
        plan = planner.plan()
    return snapshot, planner, plan


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Run:
    """The state one invocation shares across its policies."""

    settings: RunSettings
    kube: Kube | None
    objects: list[dict[str, Any]] | None
    memo: ReadMemo = field(default_factory=ReadMemo)

    @property
    def counter(self) -> RequestCounter:
        return self.kube.counter if self.kube is not None else RequestCounter()

    @property
    def writes_status(self) -> bool:
        return self.kube is not None and not self.settings.effective_dry_run

    def write_status(self, name: str, origin: str, facts: RunFacts, previous: dict[str, Any]) -> None:
        """The SecretSync's status; a failure here is a warning, never a failed run."""
        if not self.writes_status or origin != "cluster" or self.kube is None:
            return
        try:
            write_policy_status(self.kube, name, policy_status(facts, previous))
        except SyncjobError as e:
            hint = " (grant patch on secretsyncs/status)" if getattr(e, "status", 0) == 403 else ""
            log_event("status_not_written", logging.WARNING, policy=name, message=f"{e}{hint}")

    def unusable(self, entry: PolicyEntry, error: SyncjobError | str, reason: str, start: str) -> PolicyRun:
        policy, previous = entry
        message = str(error)
        if reason == READ_FAILED and "nothing was changed" not in message:
            message += "; nothing was changed"
        code = EXIT_UNUSABLE  # nothing was written for this policy: unusable, not partial
        log_event("policy_failed", logging.ERROR, policy=policy.name, reason=reason, message=message, exitCode=code)
        summary = Summary(
            mode=mode_of(self.settings), counts={}, requests={}, retries=0, duration_seconds=0.0, exit_code=code,
            policy=policy.name, error=message,
        )  # fmt: skip
        if not isinstance(error, ClusterUnreachable):
            facts = RunFacts(policy.generation, start, _now(), code, error_reason=reason, error=message)
            self.write_status(policy.name, policy.origin, facts, previous)
        gone = isinstance(error, ClusterUnreachable | DeadlineExceeded)
        return PolicyRun(policy.name, [], summary, error=message, cluster_gone=gone)

    def run_policy(self, entry: PolicyEntry) -> PolicyRun:
        policy, previous = entry
        start, started, before = _now(), time.monotonic(), dict(self.counter.by_verb)
        if isinstance(policy, InvalidPolicy):
            message = f"SecretSync {policy.name} is invalid: {policy.message}; fix it with kubectl edit"
            return self.unusable(entry, message, INVALID, start)
        try:
            snapshot, planner, plan = plan_policy(
                policy, self.kube, self.objects, self.memo,
                release=self.settings.max_delete, create_key=not self.settings.effective_dry_run,
            )  # fmt: skip
        except ConfigError as e:
            return self.unusable(entry, e, INVALID, start)
        except SyncjobError as e:  # forbidden, unreachable, out of time: nothing was written for it
            return self.unusable(entry, e, READ_FAILED, start)
        writes_copies = plan.of_kind(Kind.CREATE, Kind.UPDATE, Kind.RECREATE)
        if (
            self.kube is not None
            and not self.settings.effective_dry_run
            and snapshot.proof_key is None
            and writes_copies
        ):
            ns = policy.source_namespace  # a copy written now could never be proven
            return self.unusable(entry, ConfigError(
                f"spec.sources.namespace {ns} does not exist, and syncjob keeps the key that proves its copies "
                f"there; create it (kubectl create namespace {ns}) or point spec.sources.namespace elsewhere"
            ), INVALID, start)  # fmt: skip
        for problem in plan.problems:
            level = logging.ERROR if problem.fatal else logging.WARNING
            log_event("source_problem", level, policy=policy.name, source=str(problem.source), message=problem.message)
        for note in plan.notes:
            log_event("note", logging.WARNING, policy=policy.name, message=note)

        dry = self.settings.effective_dry_run
        server_gone = False
        if self.kube is None:
            results = [Result(a, Outcome.PLANNED if a.kind.writes else Outcome.REPORTED) for a in plan.actions]
            results = [replace(r, policy=policy.name) for r in results]
            for r in results:
                log_result(r)
        else:
            applier = Applier(self.kube, planner, dry_run=dry, concurrency=self.settings.concurrency)
            results = applier.apply(plan.actions, on_result=lambda r: log_result(replace(r, policy=policy.name)))
            results = [replace(r, policy=policy.name) for r in results]
            for r in results:
                if not r.action.kind.writes:
                    log_result(r)
            server_gone = applier.server_gone.is_set()

        if server_gone:  # nothing more to say to a server that stopped answering: report and stop
            return self.server_gone(policy, results, plan, snapshot, planner, time.monotonic() - started)
        if self.settings.events and self.kube is not None and not dry:
            post_events(self.kube, source_events(snapshot.sources, results, plan.problems, policy.instance),
                        policy.instance)  # fmt: skip

        requests = {k: v - before.get(k, 0) for k, v in self.counter.by_verb.items() if v - before.get(k, 0)}
        code = exit_code(results, plan.problems, fail_on_conflict=policy.conflict_policy == "Fail")
        notes = plan.notes
        undone = sum(1 for r in results if r.outcome is Outcome.NOT_RUN)
        if undone:
            notes = (*notes, f"--timeout expired: {undone} writes were not made")
        summary = Summary(
            mode=mode_of(self.settings),
            counts=count(results),
            requests=requests,
            retries=0,
            duration_seconds=time.monotonic() - started,
            problems=plan.problems,
            notes=notes,
            exit_code=code,
            source_count=len(planner.verdicts.eligible),
            target_count=sum(1 for d in planner.decisions.values() if d.target),
            policy=policy.name,
        )
        facts = RunFacts(
            generation=policy.generation,
            start=start,
            completion=_now(),
            exit_code=code,
            results=results,
            problems=plan.problems,
            notes=notes,
            sources=[(s.ref, s.type) for s in planner.verdicts.eligible.values()],
            wanted=planner.wanted_counts(),
            api_requests=sum(requests.values()) + (1 if self.writes_status and policy.origin == "cluster" else 0),
            fail_on_conflict=policy.conflict_policy == "Fail",
        )
        self.write_status(policy.name, policy.origin, facts, previous)
        return PolicyRun(policy.name, results, summary, policy, plan, snapshot, planner)

    def server_gone(  # noqa: PLR0917 - the parts of one policy's run
        self, policy: Policy, results: list[Result], plan: Plan, snapshot: Snapshot, planner: Planner, duration: float
    ) -> PolicyRun:
        """The API server stopped answering mid-apply: say what was done and what was not attempted, exit 2."""
        undone = sum(1 for r in results if r.outcome in (Outcome.NOT_RUN, Outcome.FAILED))
        message = f"the API server stopped answering during the writes; {undone} writes were not made (see the actions)"
        log_event("policy_failed", logging.ERROR, policy=policy.name, reason=READ_FAILED, message=message)
        summary = Summary(
            mode=mode_of(self.settings), counts=count(results), requests={}, retries=0, duration_seconds=duration,
            problems=plan.problems, notes=(*plan.notes, message), exit_code=EXIT_UNUSABLE,
            source_count=len(planner.verdicts.eligible), policy=policy.name, error=message,
        )  # fmt: skip
        return PolicyRun(policy.name, results, summary, policy, plan, snapshot, planner, message, cluster_gone=True)


def combine(runs: list[PolicyRun], mode: str, counter: RequestCounter, duration: float) -> Summary:
    """One summary over every policy: counts added up, the worst exit code, each policy's own line."""
    results = [r for run in runs for r in run.results]
    return Summary(
        mode=mode,
        counts=count(results),
        requests=dict(counter.by_verb),
        retries=counter.retries,
        duration_seconds=duration,
        problems=tuple(p for run in runs for p in run.summary.problems),
        notes=tuple(n for run in runs for n in run.summary.notes),
        exit_code=max((run.summary.exit_code for run in runs), default=EXIT_OK),
        source_count=sum(run.summary.source_count for run in runs),
        target_count=sum(run.summary.target_count for run in runs),
        policies=tuple(run.summary for run in runs),
    )


def execute(settings: RunSettings, out: TextIO, *, kube: Kube | None = None, output: str = "") -> RunOutcome:
    """A whole run. Raises SyncjobError for what makes every policy unusable (exit 2)."""
    started = time.monotonic()
    mode = mode_of(settings)
    if settings.effective_dry_run:
        log_event("dry_run", logging.WARNING, mode=mode, note="DRY RUN: reading and planning only, nothing is changed")
        if output == "table":
            out.write(f"*** DRY RUN ({settings.effective_dry_run}): nothing will be changed ***\n")
    objects = load_objects(Path(settings.snapshot)) if settings.snapshot is not None else None
    if kube is None and settings.snapshot is None:
        kube = make_kube(settings)
    run = Run(settings, kube, objects)
    runs: list[PolicyRun] = []
    try:
        entries = load_policies(settings, kube, objects)
    except DeadlineExceeded as e:  # nothing was written yet: unusable, not partial
        raise ReadIncomplete(f"{e}; nothing was changed") from e
    for i, entry in enumerate(entries):
        runs.append(run.run_policy(entry))
        if runs[-1].cluster_gone:
            for rest in entries[i + 1 :]:  # the same would happen to every other policy: say so, once each
                runs.append(run.unusable(rest, ClusterUnreachable(f"not run: {runs[-1].error}"), READ_FAILED, _now()))
            break
    summary = combine(runs, mode, run.counter, time.monotonic() - started)
    results = [r for pr in runs for r in pr.results]
    log_event("summary", **summary.as_dict())
    if output == "table":
        out.write(render_table(results, summary))
    elif output == "json":
        out.write(render_json(results, summary))
    return RunOutcome(runs, summary, results)


def status_report(settings: RunSettings, kube: Kube | None = None) -> StatusReport:
    """What `syncjob status` shows: the plan `run` would make for every SecretSync, read-only."""
    objects = load_objects(Path(settings.snapshot)) if settings.snapshot is not None else None
    if kube is None and settings.snapshot is None:
        kube = make_kube(settings)
    report = StatusReport()
    memo = ReadMemo()
    for policy, _ in load_policies(settings, kube, objects):
        if isinstance(policy, InvalidPolicy):
            report.errors.append(f"SecretSync {policy.name} is invalid: {policy.message}")
            continue
        try:
            _, planner, plan = plan_policy(policy, kube, objects, memo)
        except ConfigError as e:
            report.errors.append(f"SecretSync {policy.name}: {e}")
            continue
        report.items += statuses(planner, plan)
        report.pending_writes += sum(1 for a in plan.actions if a.kind.writes)
    return report
