"""ApiClient construction, the one retry layer, request counting and error translation.

Every request syncjob sends goes through `Kube.call`. Bodies are plain dicts in and out: large
LISTs are parsed straight from JSON, without the generated models.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tenacity
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from syncjob.errors import ApiError, ClusterUnreachable, ConfigError, DeadlineExceeded, TransientError
from syncjob.kube.retry import MAX_ATTEMPTS, backoff, is_transient

REQUEST_TIMEOUT = (5.0, 30.0)  # connect, read: one hung request must not eat the run's deadline
IN_CLUSTER_TOKEN = Path("/var/run/secrets/kubernetes.io/serviceaccount/token")

# API server messages can quote the rejected value (e.g. `Invalid value: "<the secret>"`).
_QUOTED_VALUE = re.compile(r'(Invalid value: )("(?:[^"\\]|\\.)*"|\S+)')
_LONG_TOKEN = re.compile(r"[A-Za-z0-9+/=_-]{40,}")


def redact(message: str) -> str:
    message = _QUOTED_VALUE.sub(r"\1<redacted>", message)
    return _LONG_TOKEN.sub("<redacted>", message)[:500]


def list_query(
    limit: int, label_selector: str = "", field_selector: str = "", token: str = ""
) -> list[tuple[str, str]]:
    """The query of one LIST page."""
    query = [("limit", str(limit))]
    if label_selector:
        query.append(("labelSelector", label_selector))
    if field_selector:
        query.append(("fieldSelector", field_selector))
    if token:
        query.append(("continue", token))
    return query


@dataclass
class Deadline:
    """The run's --timeout; `at` is on the monotonic clock, None for no limit."""

    at: float | None = None
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def after(cls, seconds: float | None, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(None if seconds is None else clock() + seconds, clock)

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - self.clock()

    def expired(self) -> bool:
        left = self.remaining()
        return left is not None and left <= 0


@dataclass
class RequestCounter:
    """Requests sent, by verb (list, get, create, update, delete, patch) and retries taken."""

    by_verb: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, verb: str) -> None:
        with self.lock:
            self.by_verb[verb] += 1

    def add_retry(self) -> None:
        with self.lock:
            self.retries += 1

    @property
    def total(self) -> int:
        return sum(self.by_verb.values())


def load_api_client(kubeconfig: Path | None, context: str, pool_size: int) -> client.ApiClient:
    """In a pod: in-cluster config; otherwise kubeconfig (--kubeconfig, KUBECONFIG, ~/.kube/config)."""
    configuration = client.Configuration()
    try:
        if (
            kubeconfig is None
            and not context
            and os.environ.get("KUBERNETES_SERVICE_HOST")
            and IN_CLUSTER_TOKEN.exists()
        ):
            config.load_incluster_config(client_configuration=configuration)
        else:
            path = kubeconfig or Path(os.environ.get("KUBECONFIG", "~/.kube/config").split(os.pathsep)[0]).expanduser()
            if not path.exists():
                raise ConfigError(
                    f"kubeconfig {path} does not exist; pass --kubeconfig or set KUBECONFIG "
                    "(or try the demo: syncjob run --snapshot examples/cluster.yaml)"
                )
            config.load_kube_config(config_file=str(path), context=context or None, client_configuration=configuration)
    except ConfigException as e:
        raise ConfigError(f"cannot load cluster configuration: {redact(str(e))}") from e
    # One retry layer (ours, via tenacity): urllib3's own would retry some 429/503s out of sight.
    configuration.retries = False
    configuration.connection_pool_maxsize = max(pool_size, 4)
    return client.ApiClient(configuration)


_SECRETS_PATH = re.compile(r"/secrets(/|$)")  # core/v1 Secrets, not e.g. /secretsyncs
# Who denied a request, as the API server names them in its message.
_DENIED_BY = (
    re.compile(r"ValidatingAdmissionPolicy '([^']{1,253})'"),
    re.compile(r'admission webhook "([^"]{1,253})" denied'),
)


def _denied_by(message: str) -> str:
    for pattern in _DENIED_BY:
        found = pattern.search(message)
        if found:
            kind = "ValidatingAdmissionPolicy" if "Policy" in pattern.pattern else "admission webhook"
            return f"denied by {kind} {found.group(1)!r}"
    return ""


def summarise(exc: ApiException, what: str, *, touches_secrets: bool = False) -> ApiError:
    """An ApiError from a response: status and reason, never the raw body.

    For a request about Secrets the server's free text is not relayed at all: an admission policy's
    message (or a validation error) can quote the Secret's data, so only the causes' field paths and
    the name of the policy or webhook that denied it are kept. Other messages are relayed, with any
    quoted invalid value cut out.
    """
    reason, message, fields = str(exc.reason or ""), "", []
    try:
        body = json.loads(exc.body) if exc.body else {}
        if isinstance(body, dict):
            reason = body.get("reason") or reason
            message = str(body.get("message") or "")
            causes = [c for c in (body.get("details") or {}).get("causes") or [] if isinstance(c, dict)]
            fields = sorted({str(c["field"]) for c in causes if c.get("field")})
            if any(c.get("reason") == "NamespaceTerminating" for c in causes):
                reason = "NamespaceTerminating"
    except (ValueError, TypeError):
        message = ""
    if touches_secrets:
        parts = [p for p in (_denied_by(message), f"fields: {', '.join(fields)}" if fields else "") if p]
        summary = "; ".join(parts) or "the server's message is not shown: it can quote Secret data"
        return ApiError(int(exc.status or 0), str(reason), summary, what)
    return ApiError(int(exc.status or 0), str(reason), _QUOTED_VALUE.sub(r"\1<redacted>", message)[:500], what)


class Kube:
    """Sends requests with the retry policy, counts them, and translates failures."""

    def __init__(
        self,
        api: client.ApiClient,
        *,
        deadline: Deadline | None = None,
        counter: RequestCounter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> None:
        self.api = api
        self.deadline = deadline or Deadline()
        self.counter = counter or RequestCounter()
        self.sleep = sleep
        self.max_attempts = max_attempts

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        delay = backoff(state.attempt_number, exc) if exc else 0.0
        left = self.deadline.remaining()
        return delay if left is None else max(0.0, min(delay, left))

    def _stop(self, state: tenacity.RetryCallState) -> bool:
        return state.attempt_number >= self.max_attempts or self.deadline.expired()

    def _before_sleep(self, state: tenacity.RetryCallState) -> None:
        self.counter.add_retry()

    def _request_timeout(self) -> tuple[float, float]:
        """The usual per-request timeouts, cut short so no request outlives the run's deadline."""
        left = self.deadline.remaining()
        if left is None:
            return REQUEST_TIMEOUT
        left = max(left, 0.1)
        return (min(REQUEST_TIMEOUT[0], left), min(REQUEST_TIMEOUT[1], left))

    def call(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        what: str,
        query: list[tuple[str, str]] | None = None,
        body: dict[str, Any] | list[Any] | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        """One API request with retries; returns the decoded JSON body."""

        def attempt() -> dict[str, Any]:
            if self.deadline.expired():
                raise DeadlineExceeded(f"--timeout expired before {what}")
            self.counter.add(verb)
            response = self.api.call_api(
                path,
                method,
                query_params=query or [],
                header_params={"Accept": accept, "Content-Type": content_type},
                body=body,
                auth_settings=["BearerToken"],
                _preload_content=False,
                _request_timeout=self._request_timeout(),
            )
            raw = response.data
            return json.loads(raw) if raw else {}

        failures: list[BaseException] = []

        def remember(state: tenacity.RetryCallState) -> None:
            self._before_sleep(state)
            if state.outcome is not None and state.outcome.exception() is not None:
                failures.append(state.outcome.exception())  # type: ignore[arg-type]

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            stop=self._stop,
            wait=self._wait,
            sleep=self.sleep,
            before_sleep=remember,
            reraise=True,
        )
        try:
            result: dict[str, Any] = retrying(attempt)
            return result
        except DeadlineExceeded:
            # The deadline cut retries short: the failure is the news, not the deadline...
            if failures and not self._cut_by_deadline(failures[-1]):
                raise self._translate(failures[-1], what, path) from failures[-1]
            raise
        except (ApiException, urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as e:
            if self._cut_by_deadline(e):
                raise DeadlineExceeded(f"--timeout expired during {what}") from e
            raise self._translate(e, what, path) from e

    def _cut_by_deadline(self, exc: BaseException) -> bool:
        """...unless the failure is a timeout once --timeout has passed: the request's own timeout was
        cut to what was left of the run, so the deadline is the news, not the network."""
        timed_out = isinstance(exc, urllib3.exceptions.TimeoutError | TimeoutError)
        refused = isinstance(exc, urllib3.exceptions.NewConnectionError)  # a TimeoutError subclass in urllib3
        return timed_out and not refused and self.deadline.expired()

    def _translate(self, exc: BaseException, what: str, path: str = "") -> ApiError | ClusterUnreachable:
        if isinstance(exc, ApiException):
            error = summarise(exc, what, touches_secrets=_SECRETS_PATH.search(path) is not None)
            if is_transient(exc):
                return TransientError(error.status, error.reason, error.message, what)
            return error
        return ClusterUnreachable(
            f"{what}: cannot reach the API server at {self.server} ({type(exc).__name__}); "
            "check --kubeconfig/--context and that the cluster is up"
        )

    def list_pages(
        self,
        path: str,
        *,
        what: str,
        label_selector: str = "",
        field_selector: str = "",
        accept: str = "application/json",
        limit: int = 500,
    ) -> Iterator[dict[str, Any]]:
        """Every item of a paginated LIST, one page in memory at a time."""
        token = ""
        while True:
            query = list_query(limit, label_selector, field_selector, token)
            page = self.call("list", "GET", path, what=what, query=query, accept=accept)
            yield from page.get("items") or []
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return
