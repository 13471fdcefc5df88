"""Prometheus metrics of one run: a node-exporter textfile (--metrics-textfile) and/or a Pushgateway
push (--pushgateway).

syncjob is a batch job, so every metric is a Gauge holding this run's value, never a Counter.
`syncjob_last_success_timestamp_seconds` moves only on a successful apply run (exit 0, not a
dry-run); alert on its age, e.g. `time() - syncjob_last_success_timestamp_seconds > 3 * 3600`. On any
other run it keeps its previous value:

- Pushgateway: a successful run PUTs (replaces the whole group, so nothing stale survives); any other
  run POSTs without that metric, and POST replaces only the metrics it carries, so the previous
  success stays.
- textfile: the file is rewritten whole (temp file + rename), carrying over the previous success
  read from the file being replaced.

Publishing never changes the run's outcome or exit code: a failure to write or push is logged as a
`metrics_not_published` warning. No metric holds a secret: only counts, names of verbs and actions,
and times.
"""

from __future__ import annotations

import http.client
import logging
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, pushadd_to_gateway, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from syncjob.config import RunSettings
from syncjob.errors import EXIT_OK
from syncjob.logs import log_event
from syncjob.model import Kind, Outcome, Result
from syncjob.report import Summary, count

JOB = "syncjob"
PUSH_TIMEOUT = 10.0  # seconds; a slow Pushgateway must not hold the CronJob's pod for long
INSTANCE_LABEL = "syncjob_instance"  # not `instance`: Prometheus sets that to the scraped target
LAST_SUCCESS = "syncjob_last_success_timestamp_seconds"
# The instance label of a run that failed before it knew its SecretSyncs (no --policy named).
UNUSABLE_INSTANCE = "all"

# Exported at 0 when absent, so that alerts such as `syncjob_actions_total{result="failed"} > 0` see a 0,
# not a missing series, and every family always has samples: a Pushgateway POST replaces a metric family
# only when the body carries it. Other combinations (planned, dry-run, not-run) appear when they happen.
ACTION_SERIES = tuple((k.value, o.value) for k in Kind if k.writes for o in (Outcome.DONE, Outcome.FAILED)) + tuple(
    (k.value, Outcome.REPORTED.value) for k in Kind if not k.writes
)
VERBS = ("list", "get", "create", "update", "delete", "patch", "discovery")


def succeeded(summary: Summary) -> bool:
    """Whether this run may move last_success: an apply run that exited 0."""
    return summary.exit_code == EXIT_OK and summary.mode == "apply"


@dataclass(frozen=True)
class Part:
    """One SecretSync's share of a run's metrics."""

    instance: str
    summary: Summary
    results: Sequence[Result]
    last_success: float | None  # None leaves that metric out for this instance


def build_registry(
    summary: Summary, results: Sequence[Result], *, instance: str, now: float, last_success: float | None
) -> CollectorRegistry:
    """A fresh registry holding this run's metrics; `last_success` None leaves that metric out."""
    return build_registry_of([Part(instance, summary, results, last_success)], now=now)


def build_registry_of(parts: Sequence[Part], *, now: float) -> CollectorRegistry:
    """One registry, one family per metric, a series per SecretSync (the instance label)."""
    registry = CollectorRegistry()
    families: dict[str, Gauge] = {}

    def family(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        if name not in families:
            families[name] = Gauge(name, doc, [INSTANCE_LABEL, *labels], registry=registry)
        return families[name]

    for part in parts:
        _add_part(family, part, now)
    return registry


def _add_part(family: Any, part: Part, now: float) -> None:
    instance, summary, results = part.instance, part.summary, part.results

    def gauge(name: str, doc: str, value: float) -> None:
        family(name, doc).labels(instance).set(value)

    actions = family(
        "syncjob_actions_total",
        "Actions of the last run by action and result (this run's count; a gauge, the job is a batch job).",
        ("action", "result"),
    )
    counts: dict[tuple[str, str], int] = dict.fromkeys(ACTION_SERIES, 0)
    for kind, outcomes in count(results).items():
        for outcome, n in outcomes.items():
            counts[(kind, outcome)] = n
    for (kind, outcome), n in sorted(counts.items()):
        actions.labels(instance, kind, outcome).set(n)

    requests = family(
        "syncjob_api_requests",
        "Kubernetes API requests sent by the last run, by verb (retries included).",
        ("verb",),
    )
    for verb, n in sorted({**dict.fromkeys(VERBS, 0), **summary.requests}.items()):
        requests.labels(instance, verb).set(n)

    conflicts = sum(1 for r in results if r.action.kind is Kind.CONFLICT)
    gauge("syncjob_conflicts", "Secrets in the way of a copy that syncjob does not own (last run).", conflicts)
    invalid = sum(1 for p in summary.problems if p.fatal)
    gauge("syncjob_invalid_sources", "Sources that failed validation or were not found (last run).", invalid)
    gauge("syncjob_sources", "Sources eligible to fan out (last run).", summary.source_count)
    gauge("syncjob_target_namespaces", "Namespaces that should hold copies (last run).", summary.target_count)
    gauge("syncjob_api_retries", "Kubernetes API requests retried by the last run.", summary.retries)
    gauge("syncjob_dry_run", "1 when the last run was a dry-run (it changed nothing).", int(summary.mode != "apply"))
    gauge("syncjob_run_duration_seconds", "Wall time of the last run.", summary.duration_seconds)
    gauge("syncjob_last_run_timestamp_seconds", "When the last run ended (Unix time).", now)
    gauge("syncjob_exit_code", "Exit code of the last run: 0 done, 1 partial, 2 unusable.", summary.exit_code)
    if part.last_success is not None:
        gauge(LAST_SUCCESS, "When an apply run last exited 0 (Unix time).", part.last_success)


def previous_last_success(path: Path, instance: str) -> float | None:
    """last_success for `instance` in an earlier textfile, or None (no file, unreadable, not ours)."""
    try:
        text = path.read_text(encoding="utf-8")
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == LAST_SUCCESS and sample.labels.get(INSTANCE_LABEL) == instance:
                    return float(sample.value)
    # A missing file is the first run; garbage is replaced (the parser raises ValueError, rarely IndexError).
    except (OSError, ValueError, IndexError) as e:
        if not isinstance(e, FileNotFoundError):
            log_event("metrics_previous_unreadable", logging.WARNING, path=str(path), error=type(e).__name__)
    return None


def _safe_url(url: str) -> str:
    """The Pushgateway URL as it may be logged: without user:password@."""
    try:
        parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
        host, port = parts.hostname or "", parts.port
    except ValueError:  # e.g. an unclosed [IPv6 bracket or a port that is not a number
        return "<unparseable URL>"
    netloc = f"{host}:{port}" if port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _warn(sink: str, where: str, error: BaseException) -> None:
    log_event(
        "metrics_not_published",
        logging.WARNING,
        sink=sink,
        target=where,
        error=type(error).__name__,
        message=f"{str(error)[:200]}; the run's outcome and exit code are unaffected",
    )


def write_textfile(path: Path, registry: CollectorRegistry) -> bool:
    if path.suffix != ".prom":
        log_event(
            "metrics_textfile_name",
            logging.WARNING,
            path=str(path),
            message="node-exporter's textfile collector reads only *.prom files",
        )
    try:
        write_to_textfile(str(path), registry)  # a temp file next to it, then rename(2): atomic
    except OSError as e:
        _warn("textfile", str(path), e)
        return False
    log_event("metrics_published", sink="textfile", target=str(path))
    return True


def push(gateway: str, registry: CollectorRegistry, *, instance: str, replace: bool) -> bool:
    """PUT (replace the group) when `replace`, else POST (replace only the metrics pushed)."""
    send = push_to_gateway if replace else pushadd_to_gateway
    try:
        send(gateway, job=JOB, registry=registry, grouping_key={"instance": instance}, timeout=PUSH_TIMEOUT)
    except (OSError, http.client.HTTPException, ValueError) as e:
        # OSError: refused, DNS, timeouts, and urllib's URLError/HTTPError; ValueError: a malformed URL.
        _warn("pushgateway", _safe_url(gateway), e)
        return False
    log_event("metrics_published", sink="pushgateway", target=_safe_url(gateway), method="PUT" if replace else "POST")
    return True


def publish(
    summary: Summary,
    results: Sequence[Result],
    *,
    instance: str,
    textfile: Path | None,
    pushgateway: str | None,
    now: float,
) -> None:
    """Write and/or push one instance's metrics. Never raises for an unreachable or unwritable sink."""
    publish_parts([(instance, summary, results)], textfile=textfile, pushgateway=pushgateway, now=now)


def publish_parts(
    parts: Sequence[tuple[str, Summary, Sequence[Result]]],
    *,
    textfile: Path | None,
    pushgateway: str | None,
    now: float,
) -> None:
    """Every SecretSync's metrics: one textfile holding them all, one Pushgateway group per SecretSync."""
    if textfile is not None:
        file_parts = [Part(i, s, r, now if succeeded(s) else previous_last_success(textfile, i)) for i, s, r in parts]
        write_textfile(textfile, build_registry_of(file_parts, now=now))
    if pushgateway:
        for instance, summary, results in parts:
            success = succeeded(summary)
            registry = build_registry_of([Part(instance, summary, results, now if success else None)], now=now)
            push(pushgateway, registry, instance=instance, replace=success)


def unusable_summary(exit_code: int, duration_seconds: float, mode: str = "apply") -> Summary:
    """The Summary of a run that stopped before it had one (bad configuration, cluster unreachable...)."""
    return Summary(mode=mode, counts={}, requests={}, retries=0, duration_seconds=duration_seconds, exit_code=exit_code)


def publish_runs(settings: RunSettings, runs: Sequence[Any], *, now: float | None = None) -> None:
    """A finished run's metrics, one instance per SecretSync (`runs`: runner.PolicyRun); no-op without a sink."""
    if settings.metrics_textfile is None and not settings.pushgateway:
        return
    parts = [(run.name, run.summary, run.results) for run in runs]
    publish_parts(
        parts,
        textfile=settings.metrics_textfile,
        pushgateway=settings.pushgateway or None,
        now=time.time() if now is None else now,
    )


def publish_unusable(values: Mapping[str, Any], exit_code: int, duration: float, *, now: float | None = None) -> None:
    """A run that stopped before any SecretSync was planned (exit 2), as configured by the CLI's resolved
    values (`cli.resolve`); its instance is the --policy it named, else UNUSABLE_INSTANCE."""
    textfile, gateway = values.get("metrics_textfile"), values.get("pushgateway")
    if textfile is None and not gateway:
        return
    names = values.get("policy") or (UNUSABLE_INSTANCE,)
    summary = unusable_summary(exit_code, duration)
    publish_parts(
        [(str(name), summary, []) for name in names],
        textfile=Path(textfile) if textfile is not None else None,
        pushgateway=str(gateway) if gateway else None,
        now=time.time() if now is None else now,
    )
