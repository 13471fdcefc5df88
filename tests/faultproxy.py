"""A fault-injecting HTTP proxy in front of the test API server.

The client speaks plain HTTP to 127.0.0.1:PORT; each request is forwarded over HTTPS (trusting the
cluster's CA) to the real kube-apiserver, and the answer is relayed back. Before forwarding, a
seeded `random.Random` decides - at `rate` - whether to inject one fault instead:

    429           Too Many Requests with `Retry-After: N` and a Status body (never forwarded)
    500 / 503     a Status body (never forwarded)
    reset         the request is read, then the connection is reset (RST, SO_LINGER 0)
    reset-after   a write is forwarded and applied, then the connection is reset: the client
                  never hears that it worked (the idempotence case)
    slow          a real delay, then forwarded

`rules` inject chosen faults on chosen requests (method / path regex / how many times) before any
random draw; two more rule-only faults exist: `hold` (block the request until `release()`, then reset
without forwarding) and a write gate (`close_gate()` / `open_gate()`) that parks every write.

    with FaultProxy(cluster, rate=0.2, seed=1) as proxy:
        kubeconfig = proxy.kubeconfig(tmp_path / "kubeconfig")
        ...
        proxy.injected  # Counter of faults by kind
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import random
import re
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

FAULTS = ("429", "500", "503", "reset", "reset-after", "slow")
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Never copied between the two connections.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer", "transfer-encoding",
     "upgrade", "host", "content-length"}
)  # fmt: skip
UPSTREAM_TIMEOUT = 30.0
HOLD_TIMEOUT = 60.0


@dataclass
class Rule:
    """Inject `fault` on requests matching `method` (None: any) and `path` (a regex searched in
    path+query; None: any), the first `times` matches (None: every match)."""

    fault: str
    method: str | None = None
    path: str | None = None
    times: int | None = 1
    retry_after: int | None = None  # for 429; the proxy's default otherwise
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.path is None or re.search(self.path, path) is not None


@dataclass(frozen=True)
class Seen:
    """One request the proxy received, and what it did with it."""

    method: str
    path: str
    fault: str  # "" when simply forwarded
    status: int  # relayed or injected status; 0 for resets and holds


@dataclass
class _Decision:
    fault: str = ""
    retry_after: int = 0


def _status_body(code: int, reason: str, message: str) -> bytes:
    return json.dumps(
        {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
         "reason": reason, "code": code}
    ).encode()  # fmt: skip


class FaultProxy:
    def __init__(
        self,
        cluster: Any,
        *,
        rate: float = 0.0,
        seed: int = 0,
        kinds: Iterable[str] = FAULTS,
        retry_after: int = 1,
        delay: float = 0.2,
        rules: Iterable[Rule] = (),
        methods: Iterable[str] | None = None,
        path: str | None = None,
    ) -> None:
        """`methods`/`path` restrict the random faults (not the rules) to matching requests."""
        self.kinds = tuple(kinds)
        unknown = set(self.kinds) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}")
        upstream = urlsplit(cluster.server)
        self.upstream_host = upstream.hostname or "127.0.0.1"
        self.upstream_port = upstream.port or 443
        self.ssl_context = ssl.create_default_context(cafile=str(cluster.ca_file))
        self.token = cluster.admin_token
        self.rate = rate
        self.rng = random.Random(seed)
        self.retry_after = retry_after
        self.delay = delay
        self.rules = list(rules)
        self.methods = frozenset(methods) if methods is not None else None
        self.path = re.compile(path) if path else None
        self.injected: Counter[str] = Counter()
        self.seen: list[Seen] = []
        self.lock = threading.Lock()
        self.held = threading.Semaphore(0)  # released once per request a `hold` rule parks
        self._release = threading.Event()
        self._gate = threading.Event()
        self._gate.set()
        self.parked = 0  # writes waiting at a closed gate
        self.in_flight = 0  # requests being handled right now
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = _Server(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name=f"faultproxy-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._gate.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kubeconfig(self, path: Path) -> Path:
        """A kubeconfig pointing at the proxy (plain http) with the admin bearer token."""
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "faultproxy", "cluster": {"server": self.url}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "faultproxy", "context": {"cluster": "faultproxy", "user": "admin"}}],
            "current-context": "faultproxy",
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")  # JSON is YAML
        path.chmod(0o600)
        return path

    # -- control

    def configure(self, *, rate: float | None = None, seed: int | None = None, rules: Iterable[Rule] = ()) -> None:
        with self.lock:
            if rate is not None:
                self.rate = rate
            if seed is not None:
                self.rng = random.Random(seed)
            self.rules = list(rules)

    def reset_counters(self) -> None:
        with self.lock:
            self.injected.clear()
            self.seen.clear()

    def release(self) -> None:
        """Let held requests go (they are then reset, never forwarded)."""
        self._release.set()

    def close_gate(self) -> None:
        """Park every write (POST/PUT/PATCH/DELETE) until open_gate(); `parked` counts them."""
        with self.lock:
            self.parked = 0
        self._gate.clear()

    def open_gate(self) -> None:
        self._gate.set()

    def count(self, method: str | None = None, path: str | None = None, fault: str | None = None) -> int:
        with self.lock:
            return sum(
                1
                for s in self.seen
                if (method is None or s.method == method)
                and (path is None or re.search(path, s.path))
                and (fault is None or s.fault == fault)
            )

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until no request is being handled (e.g. those a killed client left behind have landed)."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                if self.in_flight == 0:
                    return
            if time.monotonic() > deadline:
                raise AssertionError(f"faultproxy still busy with {self.in_flight} requests after {timeout}s")
            time.sleep(0.01)

    def failures_sent(self) -> int:
        """Injected faults the client sees as a failed attempt (everything but `slow`)."""
        with self.lock:
            return sum(n for kind, n in self.injected.items() if kind != "slow")

    # -- per request

    def decide(self, method: str, path: str) -> _Decision:
        with self.lock:
            for rule in self.rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    return _Decision(rule.fault, rule.retry_after or self.retry_after)
            if self.rate <= 0:
                return _Decision()
            if self.methods is not None and method not in self.methods:
                return _Decision()
            if self.path is not None and not self.path.search(path):
                return _Decision()
            # Draw for every eligible request, so one seed gives one sequence of decisions.
            roll = self.rng.random()
            kinds = [k for k in self.kinds if k != "reset-after" or method in WRITE_METHODS]
            kind = self.rng.choice(kinds) if kinds else ""
            if roll >= self.rate or not kind:
                return _Decision()
            return _Decision(kind, self.retry_after)

    def record(self, method: str, path: str, fault: str, status: int) -> None:
        with self.lock:
            if fault:
                self.injected[fault] += 1
            self.seen.append(Seen(method, path, fault, status))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that go away (killed jobs, timed-out requests) are part of these tests; stay quiet.
        pass


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"  # keep-alive towards the client
    # One handler per client connection, each on its own thread: its upstream connection is kept alive.
    _conn: http.client.HTTPSConnection | None = None

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._drop_upstream()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    # -- one request

    def _handle(self) -> None:
        proxy = self.owner
        with proxy.lock:
            proxy.in_flight += 1
        try:
            self._proxy_one()
        finally:
            with proxy.lock:
                proxy.in_flight -= 1

    def _proxy_one(self) -> None:
        proxy = self.owner
        method, path = self.command, self.path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        decision = proxy.decide(method, path)
        fault = decision.fault

        if method in WRITE_METHODS and not proxy._gate.is_set():
            with proxy.lock:
                proxy.parked += 1
            proxy._gate.wait(HOLD_TIMEOUT)

        if fault == "429":
            proxy.record(method, path, fault, 429)
            self._reply_status(429, "TooManyRequests", "injected: too many requests", decision.retry_after)
            return
        if fault in ("500", "503"):
            code = int(fault)
            reason = "InternalError" if code == 500 else "ServiceUnavailable"
            proxy.record(method, path, fault, code)
            self._reply_status(code, reason, f"injected: HTTP {code}")
            return
        if fault == "reset":
            proxy.record(method, path, fault, 0)
            self._reset()
            return
        if fault == "hold":
            proxy.record(method, path, fault, 0)
            proxy.held.release()
            proxy._release.wait(HOLD_TIMEOUT)
            self._reset()
            return
        if fault == "slow":
            time.sleep(proxy.delay)

        try:
            status, reason, headers, data = self._forward(method, path, body)
        except (OSError, http.client.HTTPException):
            proxy.record(method, path, "upstream-error", 0)
            self._reset()
            return
        if fault == "reset-after":
            proxy.record(method, path, fault, 0)
            self._reset()
            return
        proxy.record(method, path, fault, status)
        self.send_response(status, reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(data)

    def _reply_status(self, code: int, reason: str, message: str, retry_after: int | None = None) -> None:
        data = _status_body(code, reason, message)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _reset(self) -> None:
        """Close the client connection with an RST and no response."""
        self.close_connection = True
        sock = self.connection
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # The makefile() objects hold the socket open; close them, leave harmless stand-ins for
        # the base class's final flush, then close the socket itself (linger 0: RST, not FIN).
        self.rfile.close()
        self.wfile.close()
        self.rfile, self.wfile = io.BytesIO(), io.BytesIO()
        sock.close()

    # -- upstream (one keep-alive HTTPS connection per client connection, i.e. per handler thread)

    def _drop_upstream(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _upstream(self) -> http.client.HTTPSConnection:
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(
                self.owner.upstream_host,
                self.owner.upstream_port,
                context=self.owner.ssl_context,
                timeout=UPSTREAM_TIMEOUT,
            )
        return self._conn

    def _forward(self, method: str, path: str, body: bytes | None) -> tuple[int, str, list[tuple[str, str]], bytes]:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        if body is not None:
            headers["Content-Length"] = str(len(body))
        for attempt in range(2):
            reused = self._conn is not None
            conn = self._upstream()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as e:
                self._drop_upstream()
                # The API server may close an idle keep-alive connection; a read is safe to send again.
                stale = isinstance(e, http.client.RemoteDisconnected | BrokenPipeError | ConnectionResetError)
                if stale and reused and attempt == 0 and method not in WRITE_METHODS:
                    continue
                raise
            if response.will_close:
                self._drop_upstream()
            return response.status, response.reason, response.getheaders(), data
        raise AssertionError("unreachable")


__all__ = ["FAULTS", "FaultProxy", "Rule", "Seen"]
