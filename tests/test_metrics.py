"""Prometheus metrics of a run: the node-exporter textfile (parsed back), its atomic write, and pushes
to a real HTTP server on 127.0.0.1 standing in for the Pushgateway."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncjob import metrics
from syncjob.model import Action, Kind, Outcome, Ref, Result, SourceProblem
from syncjob.report import Summary, count

NOW = 1_760_000_000.0
SOURCE = Ref("build-service", "regcred")


def result(kind: Kind, outcome: Outcome, namespace: str = "team-a") -> Result:
    return Result(Action(kind, namespace, "regcred", "because", SOURCE), outcome)


RESULTS = [
    result(Kind.CREATE, Outcome.DONE, "team-a"),
    result(Kind.CREATE, Outcome.DONE, "team-b"),
    result(Kind.UPDATE, Outcome.FAILED, "team-c"),
    result(Kind.CONFLICT, Outcome.REPORTED, "team-d"),
    result(Kind.LEAVE, Outcome.REPORTED, "team-e"),
]


def summary(exit_code: int = 0, mode: str = "apply", results: list[Result] = RESULTS) -> Summary:
    return Summary(
        mode=mode,
        counts=count(results),
        requests={"list": 5, "create": 2, "update": 1, "discovery": 1},
        retries=3,
        duration_seconds=1.25,
        problems=(
            SourceProblem(Ref("build-service", "desktop"), "holds only credsStore"),
            SourceProblem(Ref("build-service", "git"), "type not enabled", fatal=False),
        ),
        exit_code=exit_code,
        source_count=1,
        target_count=5,
    )


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, frozenset({"syncjob_instance": "prod", **labels}.items())))


@pytest.fixture
def events() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """syncjob's log events of this test (the CLI's own handler may point at another test's stderr)."""
    seen: list[tuple[str, dict[str, Any]]] = []

    class Recorder(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append((record.getMessage(), dict(getattr(record, "fields", {}))))

    logger = logging.getLogger("syncjob")
    handler, level = Recorder(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield seen
    logger.removeHandler(handler)
    logger.setLevel(level)


def warnings(events: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [fields for name, fields in events if name == "metrics_not_published"]


# --- textfile -------------------------------------------------------------------------------------------


def test_textfile_holds_the_runs_metrics(tmp_path: Path) -> None:
    path = tmp_path / "syncjob.prom"
    metrics.publish(summary(), RESULTS, instance="prod", textfile=path, pushgateway=None, now=NOW)
    text = path.read_text()
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert set(families.values()) == {"gauge"}  # a batch job: this run's values, no counters
    assert value(text, "syncjob_actions_total", action="create", result="done") == 2
    assert value(text, "syncjob_actions_total", action="update", result="failed") == 1
    assert value(text, "syncjob_actions_total", action="conflict", result="reported") == 1
    assert value(text, "syncjob_actions_total", action="leave", result="reported") == 1
    assert value(text, "syncjob_actions_total", action="delete", result="done") == 0  # always there, at 0
    assert value(text, "syncjob_conflicts") == 1
    assert value(text, "syncjob_invalid_sources") == 1  # the fatal problem only
    assert value(text, "syncjob_api_requests", verb="list") == 5
    assert value(text, "syncjob_api_requests", verb="create") == 2
    assert value(text, "syncjob_api_requests", verb="delete") == 0
    assert value(text, "syncjob_api_retries") == 3
    assert value(text, "syncjob_sources") == 1
    assert value(text, "syncjob_target_namespaces") == 5
    assert value(text, "syncjob_run_duration_seconds") == 1.25
    assert value(text, "syncjob_last_run_timestamp_seconds") == NOW
    assert value(text, "syncjob_last_success_timestamp_seconds") == NOW
    assert value(text, "syncjob_exit_code") == 0
    assert value(text, "syncjob_dry_run") == 0


def test_textfile_is_replaced_atomically(tmp_path: Path) -> None:
    path = tmp_path / "syncjob.prom"
    metrics.publish(summary(), RESULTS, instance="prod", textfile=path, pushgateway=None, now=NOW)
    with path.open() as reader:  # a scrape in progress while the next run writes
        first_inode = path.stat().st_ino
        metrics.publish(summary(exit_code=1), RESULTS, instance="prod", textfile=path, pushgateway=None, now=NOW + 60)
        old = reader.read()
    # The reader still sees the whole old file: the new one was renamed over it, not written into it.
    assert value(old, "syncjob_last_run_timestamp_seconds") == NOW
    assert path.stat().st_ino != first_inode
    assert value(path.read_text(), "syncjob_last_run_timestamp_seconds") == NOW + 60
    assert sorted(p.name for p in tmp_path.iterdir()) == ["syncjob.prom"]  # no temp file left


def test_failed_and_dry_runs_keep_the_previous_success_in_the_textfile(tmp_path: Path) -> None:
    path = tmp_path / "syncjob.prom"
    metrics.publish(summary(), RESULTS, instance="prod", textfile=path, pushgateway=None, now=NOW)
    metrics.publish(summary(exit_code=1), RESULTS, instance="prod", textfile=path, pushgateway=None, now=NOW + 60)
    text = path.read_text()
    assert value(text, "syncjob_last_success_timestamp_seconds") == NOW
    assert value(text, "syncjob_last_run_timestamp_seconds") == NOW + 60
    assert value(text, "syncjob_exit_code") == 1

    dry = summary(mode="dry-run (client)")
    metrics.publish(dry, RESULTS, instance="prod", textfile=path, pushgateway=None, now=NOW + 120)
    text = path.read_text()
    assert value(text, "syncjob_last_success_timestamp_seconds") == NOW  # a dry-run kept nothing in sync
    assert value(text, "syncjob_dry_run") == 1

    metrics.publish(summary(), RESULTS, instance="prod", textfile=path, pushgateway=None, now=NOW + 180)
    assert value(path.read_text(), "syncjob_last_success_timestamp_seconds") == NOW + 180


def test_first_run_failing_has_no_last_success(tmp_path: Path) -> None:
    path = tmp_path / "syncjob.prom"
    metrics.publish(summary(exit_code=1), RESULTS, instance="prod", textfile=path, pushgateway=None, now=NOW)
    names = {name for name, _ in samples(path.read_text())}
    assert "syncjob_last_success_timestamp_seconds" not in names
    assert "syncjob_last_run_timestamp_seconds" in names


def test_garbage_previous_textfile_is_replaced(tmp_path: Path, events: list[tuple[str, dict[str, Any]]]) -> None:
    path = tmp_path / "syncjob.prom"
    path.write_text("this is { not prometheus\n")
    metrics.publish(summary(exit_code=1), RESULTS, instance="prod", textfile=path, pushgateway=None, now=NOW)
    assert value(path.read_text(), "syncjob_exit_code") == 1
    assert any(name == "metrics_previous_unreadable" for name, _ in events)


def test_unwritable_textfile_is_a_warning_not_a_failure(
    tmp_path: Path, events: list[tuple[str, dict[str, Any]]]
) -> None:
    path = tmp_path / "missing-dir" / "syncjob.prom"
    metrics.publish(summary(), RESULTS, instance="prod", textfile=path, pushgateway=None, now=NOW)
    (warning,) = warnings(events)
    assert warning["sink"] == "textfile"
    assert warning["error"] == "FileNotFoundError"
    assert "exit code are unaffected" in warning["message"]
    assert not path.parent.exists()


def test_textfile_name_without_prom_suffix_is_warned_about(
    tmp_path: Path, events: list[tuple[str, dict[str, Any]]]
) -> None:
    metrics.publish(summary(), RESULTS, instance="prod", textfile=tmp_path / "m.txt", pushgateway=None, now=NOW)
    assert any(name == "metrics_textfile_name" for name, _ in events)


# --- Pushgateway ----------------------------------------------------------------------------------------


@dataclass
class Gateway:
    """A real HTTP server recording what is pushed to it."""

    status: int = 200
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, body

    def __post_init__(self) -> None:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                gateway.requests.append((self.command, self.path, self.rfile.read(length).decode()))
                self.send_response(gateway.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST = do_DELETE = _record

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    g = Gateway()
    yield g
    g.close()


def test_successful_run_puts_the_whole_group(gateway: Gateway, events: list[tuple[str, dict[str, Any]]]) -> None:
    metrics.publish(summary(), RESULTS, instance="prod", textfile=None, pushgateway=gateway.url, now=NOW)
    ((method, path, body),) = gateway.requests
    assert (method, path) == ("PUT", "/metrics/job/syncjob/instance/prod")
    assert value(body, "syncjob_actions_total", action="create", result="done") == 2
    assert value(body, "syncjob_last_success_timestamp_seconds") == NOW
    assert value(body, "syncjob_exit_code") == 0
    assert warnings(events) == []
    assert ("metrics_published", {"sink": "pushgateway", "target": gateway.url, "method": "PUT"}) in events


@pytest.mark.parametrize(("exit_code", "mode"), [(1, "apply"), (2, "apply"), (0, "dry-run (server)")])
def test_other_runs_post_without_last_success(gateway: Gateway, exit_code: int, mode: str) -> None:
    run = summary(exit_code=exit_code, mode=mode)
    metrics.publish(run, RESULTS, instance="prod", textfile=None, pushgateway=gateway.url, now=NOW)
    ((method, path, body),) = gateway.requests
    # POST replaces only the metrics it carries: the gateway keeps the last success it has.
    assert (method, path) == ("POST", "/metrics/job/syncjob/instance/prod")
    assert "syncjob_last_success_timestamp_seconds" not in body
    assert value(body, "syncjob_exit_code") == exit_code
    assert value(body, "syncjob_last_run_timestamp_seconds") == NOW


def test_unusable_run_is_published(gateway: Gateway, tmp_path: Path) -> None:
    run = metrics.unusable_summary(2, 0.5)
    metrics.publish(run, [], instance="prod", textfile=tmp_path / "s.prom", pushgateway=gateway.url, now=NOW)
    ((method, _, body),) = gateway.requests
    assert method == "POST"
    assert value(body, "syncjob_exit_code") == 2
    assert value(body, "syncjob_actions_total", action="create", result="done") == 0
    assert value((tmp_path / "s.prom").read_text(), "syncjob_exit_code") == 2


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_push_to_a_closed_port_is_a_warning(events: list[tuple[str, dict[str, Any]]]) -> None:
    url = f"http://robot:gateway-pass@127.0.0.1:{closed_port()}"
    metrics.publish(summary(), RESULTS, instance="prod", textfile=None, pushgateway=url, now=NOW)
    (warning,) = warnings(events)
    assert warning["sink"] == "pushgateway"
    assert warning["error"] == "URLError"
    assert "gateway-pass" not in str(events)  # credentials in the URL are not logged
    assert warning["target"].startswith("http://127.0.0.1:")


def test_gateway_error_status_is_a_warning(gateway: Gateway, events: list[tuple[str, dict[str, Any]]]) -> None:
    gateway.status = 500
    metrics.publish(summary(), RESULTS, instance="prod", textfile=None, pushgateway=gateway.url, now=NOW)
    assert len(gateway.requests) == 1
    (warning,) = warnings(events)
    assert warning["error"] == "HTTPError"


def test_malformed_gateway_url_is_a_warning(events: list[tuple[str, dict[str, Any]]]) -> None:
    metrics.publish(summary(), RESULTS, instance="prod", textfile=None, pushgateway="http://[::1", now=NOW)
    (warning,) = warnings(events)
    assert warning["error"] == "ValueError"


def test_both_sinks_one_textfile_for_every_secretsync(gateway: Gateway, tmp_path: Path) -> None:
    """One family per metric in the file (promtool refuses a family twice), a Pushgateway group each."""
    path = tmp_path / "syncjob.prom"
    failed = summary(exit_code=1)
    metrics.publish_parts(
        [("blue", summary(), RESULTS), ("green", failed, RESULTS)], textfile=path, pushgateway=gateway.url, now=NOW
    )
    assert [(m, p) for m, p, _ in gateway.requests] == [
        ("PUT", "/metrics/job/syncjob/instance/blue"),  # a success replaces its group
        ("POST", "/metrics/job/syncjob/instance/green"),  # a failure keeps green's last success
    ]
    text = path.read_text()
    assert text.count("# TYPE syncjob_exit_code gauge") == 1
    exits = {dict(labels)["syncjob_instance"]: value for (name, labels), value in samples(text).items()
             if name == "syncjob_exit_code"}  # fmt: skip
    assert exits == {"blue": 0.0, "green": 1.0}


def test_an_unusable_run_is_published_under_the_policies_it_named(gateway: Gateway, tmp_path: Path) -> None:
    path = tmp_path / "s.prom"
    metrics.publish_unusable({"metrics_textfile": path, "policy": ("blue",)}, 2, 0.1, now=NOW)
    metrics.publish_unusable({"pushgateway": gateway.url}, 2, 0.1, now=NOW)
    labels = {dict(k[1]).get("syncjob_instance") for k in samples(path.read_text())}
    assert labels == {"blue"}
    assert [p for _, p, _ in gateway.requests] == ["/metrics/job/syncjob/instance/all"]


def test_no_sink_no_output(gateway: Gateway, tmp_path: Path) -> None:
    metrics.publish_unusable({"policy": ("prod",)}, 2, 0.1, now=NOW)
    assert gateway.requests == []
    assert list(tmp_path.iterdir()) == []
