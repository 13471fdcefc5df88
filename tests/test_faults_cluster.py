"""syncjob under faults, crashes, overlap and deadlines, on the real control plane.

Requests go through tests/faultproxy.py, which injects 429s (with Retry-After), 500s, 503s,
connection resets (before and after a write reached the API server) and slow answers. Backoff is
asserted through an injectable sleep that records its waits, never through the wall clock.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from syncjob import cli
from syncjob.config import RunSettings
from syncjob.errors import SyncjobError
from syncjob.kube.client import Deadline, Kube, RequestCounter, load_api_client
from syncjob.kube.retry import BASE_DELAY, MAX_ATTEMPTS, MAX_DELAY
from syncjob.logs import setup_logging
from syncjob.runner import execute
from tests.factories import b64, docker_config
from tests.faultproxy import WRITE_METHODS, FaultProxy, Rule
from tests.leakscan import ALL_OUTPUTS
from tests.sync_env import ROOT, SyncEnv, wait_for

FAULT_RATE = 0.2
WORLD_SIZE = 80  # build namespaces shared by the tests of this module
TENANT_LABEL = "faults.syncjob.dev/tenant"
COPIES_LIST = r"^/api/v1/secrets\?.*labelSelector=app.kubernetes.io%2Fmanaged-by"
WRITES = ("create", "update", "delete", "patch")


# --- running syncjob ---------------------------------------------------------------------------


def settings_for(argv: list[str]) -> RunSettings:
    return cli.settings_from(cli.resolve(cli.build_parser().parse_args(argv), {}))


@dataclass
class FakeTime:
    """A clock and a sleep: sleeping records the wait and moves the clock, costing no real time."""

    now: float = 1000.0
    waits: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@dataclass
class InProcess:
    code: int
    doc: dict[str, Any]
    kube: Kube
    logs: str

    @property
    def summary(self) -> dict[str, Any]:
        return self.doc["summary"]

    def actions(self, kind: str | None = None, result: str | None = None) -> list[dict[str, Any]]:
        return [
            a
            for a in self.doc["actions"]
            if (kind is None or a["action"] == kind) and (result is None or a["result"] == result)
        ]

    @property
    def writes(self) -> int:
        return sum(self.kube.counter.by_verb.get(v, 0) for v in WRITES)


def run_in_process(
    argv: list[str],
    *,
    sleep: Callable[[float], None],
    deadline: Deadline | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    kube_hook: Callable[[Kube], None] | None = None,
) -> InProcess:
    """`execute` with our own Kube (injected sleep and deadline); SyncjobError propagates."""
    settings = settings_for(argv)
    api = load_api_client(settings.kubeconfig, "", settings.concurrency)
    kube = Kube(
        api,
        deadline=deadline or Deadline.after(settings.timeout),
        counter=RequestCounter(),
        sleep=sleep,
        max_attempts=max_attempts,
    )
    if kube_hook is not None:
        kube_hook(kube)
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            setup_logging("INFO")
            outcome = execute(settings, out, kube=kube, output="json")
    finally:
        api.close()
    ALL_OUTPUTS.extend([out.getvalue(), err.getvalue()])
    return InProcess(outcome.summary.exit_code, json.loads(out.getvalue()), kube, err.getvalue())


def with_kubeconfig(argv: list[str], kubeconfig: Path) -> list[str]:
    argv = list(argv)
    argv[argv.index("--kubeconfig") + 1] = str(kubeconfig)
    return argv


# --- a world of build namespaces, shared by tenants --------------------------------------------


@dataclass
class Tenant:
    """One syncjob instance with its own sources (selected by a tenant label) over the world."""

    env: SyncEnv
    namespaces: list[str]
    others: list[str]  # the world's namespaces this tenant leaves alone (--exclude)
    tag: str

    @property
    def instance(self) -> str:
        return f"{self.env.prefix}-{self.tag}"

    def __post_init__(self) -> None:
        """Its SecretSync: its own sources (by tenant label) over its part of the world."""
        targets = {}
        if self.others:  # the shorter list says it (the CRD caps each at 64 globs)
            short = len(self.others) <= len(self.namespaces)
            targets = {"exclude": self.others} if short else {"include": self.namespaces}
        self.env.set_policy(
            self.instance, sources={"selector": {"matchLabels": {TENANT_LABEL: self.tag}}}, targets=targets
        )

    def argv(self, *extra: str) -> list[str]:
        return self.env.argv(*extra, policy=self.instance)

    def source_name(self, i: int) -> str:
        return f"{self.tag}-cred{i}"

    def put_source(self, i: int, **kwargs: Any) -> k8s.V1Secret:
        return self.env.put_source(self.source_name(i), labels={TENANT_LABEL: self.tag}, **kwargs)

    def delete_source(self, i: int) -> None:
        self.env.core.delete_namespaced_secret(self.source_name(i), self.env.source_ns)

    def sources(self) -> dict[str, k8s.V1Secret]:
        items = self.env.core.list_namespaced_secret(
            self.env.source_ns, label_selector=f"{TENANT_LABEL}={self.tag}"
        ).items
        return {s.metadata.name: s for s in items}

    def copies(self) -> dict[str, k8s.V1Secret]:
        selector = f"app.kubernetes.io/managed-by=syncjob,syncjob.dev/instance={self.instance}"
        items = self.env.core.list_secret_for_all_namespaces(label_selector=selector).items
        return {f"{s.metadata.namespace}/{s.metadata.name}": s for s in items}

    def run(self, *extra: str) -> Any:
        return self.env.run(*extra, policy=self.instance)

    def assert_converged(self, occupied: frozenset[str] | set[str] = frozenset()) -> dict[str, k8s.V1Secret]:
        """Every wanted copy exists and equals its source (read with the admin client); no other."""
        sources = self.sources()
        copies = self.copies()
        wanted = {f"{ns}/{name}" for ns in self.namespaces for name in sources} - set(occupied)
        assert set(copies) == wanted, (
            f"missing {sorted(wanted - set(copies))[:5]}, extra {sorted(set(copies) - wanted)[:5]}"
        )
        for key, copy in copies.items():
            source = sources[copy.metadata.name]
            assert copy.data == source.data, key
            assert copy.type == source.type, key
            assert copy.metadata.annotations["syncjob.dev/source-uid"] == source.metadata.uid, key
        return copies


@dataclass
class World:
    env: SyncEnv
    namespaces: list[str]
    tenants: int = 0

    def tenant(self, size: int = WORLD_SIZE) -> Tenant:
        self.tenants += 1
        return Tenant(self.env, self.namespaces[:size], self.namespaces[size:], f"t{self.tenants}")


@pytest.fixture(scope="module")
def world(cluster: Any, kpack: None, secretsync_api: None) -> Iterator[World]:
    env = SyncEnv(cluster)
    namespaces = [env.build_namespace(f"b{i:02d}") for i in range(WORLD_SIZE)]
    yield World(env, namespaces)
    env.api.close()


@pytest.fixture
def proxy(cluster: Any) -> Iterator[FaultProxy]:
    with FaultProxy(cluster) as p:
        yield p


def proxied(tmp_path: Path, proxy: FaultProxy) -> Path:
    return proxy.kubeconfig(tmp_path / "proxy.kubeconfig")


# --- 0. the proxy itself -------------------------------------------------------------------------


def test_the_proxy_injects_what_it_says(env: SyncEnv, proxy: FaultProxy) -> None:
    auth = {"Authorization": f"Bearer {env.cluster.admin_token}", "Accept": "application/json"}
    ns = env.namespace("proxy")
    proxy.configure(rules=[Rule("429", times=1, retry_after=7), Rule("reset", times=1), Rule("reset-after", "POST")])

    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("GET", f"/api/v1/namespaces/{ns}/secrets", headers=auth)
    throttled = conn.getresponse()
    assert throttled.status == 429 and throttled.getheader("Retry-After") == "7"
    assert json.loads(throttled.read())["reason"] == "TooManyRequests"
    conn.request("GET", f"/api/v1/namespaces/{ns}/secrets", headers=auth)  # same keep-alive connection
    with pytest.raises(ConnectionResetError):  # an RST, not a polite close
        conn.getresponse()
    conn.close()

    body = json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "landed"}, "type": "Opaque"})
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("POST", f"/api/v1/namespaces/{ns}/secrets", body, {**auth, "Content-Type": "application/json"})
    with pytest.raises(ConnectionResetError):
        conn.getresponse()
    conn.close()
    assert env.secret(ns, "landed") is not None  # the write was applied; its client never heard
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    conn.request("GET", f"/api/v1/namespaces/{ns}/secrets/landed", headers=auth)
    assert conn.getresponse().status == 200  # rules used up: forwarded
    conn.close()
    assert proxy.injected == Counter({"429": 1, "reset": 1, "reset-after": 1})


# --- 1. Retry-After and backoff ------------------------------------------------------------------


def test_retry_after_is_honoured_and_capped(env: SyncEnv, proxy: FaultProxy, tmp_path: Path) -> None:
    for i in range(3):
        env.build_namespace(f"n{i}")
    env.put_source()
    # The first request (the LIST of sources) is throttled three times; the third asks for 30 s.
    proxy.configure(rules=[Rule("429", times=2, retry_after=3), Rule("429", times=1, retry_after=30)])
    fake = FakeTime()
    run = run_in_process(with_kubeconfig(env.argv(), proxied(tmp_path, proxy)), sleep=fake.sleep)

    assert run.code == 0, run.logs
    assert fake.waits == [3.0, 3.0, MAX_DELAY]  # Retry-After as asked, capped at MAX_DELAY
    assert run.summary["retries"] == 3
    assert proxy.injected == Counter({"429": 3})
    assert len(env.copies()) == 3


def test_retry_after_never_outlasts_the_deadline(env: SyncEnv, proxy: FaultProxy, tmp_path: Path) -> None:
    env.build_namespace("n")
    env.put_source()
    proxy.configure(rules=[Rule("429", times=None, retry_after=3)])
    fake = FakeTime()
    deadline = Deadline(at=fake.now + 5.0, clock=fake.clock)
    with pytest.raises(SyncjobError) as raised:
        run_in_process(with_kubeconfig(env.argv(), proxied(tmp_path, proxy)), sleep=fake.sleep, deadline=deadline)
    assert fake.waits == [3.0, 2.0]  # the second wait is cut to what is left of the deadline
    # The deadline cut the retries short; the failure that kept the LIST from succeeding is the news.
    assert "HTTP 429" in str(raised.value) and "nothing was changed" in str(raised.value)
    assert proxy.count() == 2  # no request once the deadline has passed
    assert env.copies() == {}


def test_server_errors_back_off_exponentially_up_to_the_cap(env: SyncEnv, proxy: FaultProxy, tmp_path: Path) -> None:
    env.build_namespace("n")
    env.put_source()
    # Eight failures of the first request; with nine attempts allowed, the ninth succeeds.
    proxy.configure(rules=[Rule("500", times=4), Rule("503", times=4)])
    fake = FakeTime()
    run = run_in_process(with_kubeconfig(env.argv(), proxied(tmp_path, proxy)), sleep=fake.sleep, max_attempts=9)
    assert run.code == 0, run.logs
    assert len(fake.waits) == 8 and run.summary["retries"] == 8
    for attempt, wait in enumerate(fake.waits, start=1):
        ceiling = min(MAX_DELAY, BASE_DELAY * 2 ** (attempt - 1))
        assert ceiling / 2 <= wait <= ceiling <= MAX_DELAY, (attempt, wait)
    assert all(MAX_DELAY / 2 <= w <= MAX_DELAY for w in fake.waits[-2:])  # 12.8 s and 25.6 s, capped


def test_retries_stop_after_max_attempts(env: SyncEnv, proxy: FaultProxy, tmp_path: Path) -> None:
    env.build_namespace("n")
    env.put_source()
    proxy.configure(rules=[Rule("503", times=None)])
    fake = FakeTime()
    with pytest.raises(SyncjobError) as raised:
        run_in_process(with_kubeconfig(env.argv(), proxied(tmp_path, proxy)), sleep=fake.sleep)
    # Without a complete read there is no safe plan: the run is unusable (exit 2), nothing written.
    assert "HTTP 503" in str(raised.value) and raised.value.exit_code == 2
    assert env.copies() == {}
    assert proxy.count() == MAX_ATTEMPTS and len(fake.waits) == MAX_ATTEMPTS - 1
    assert all(w <= MAX_DELAY for w in fake.waits)


# --- 2. convergence under random faults ----------------------------------------------------------


def converge(
    tenant: Tenant, proxy: FaultProxy, kubeconfig: Path, *extra: str, occupied: set[str], stats: dict[str, Any]
) -> list[InProcess]:
    """Runs through the faulty proxy until one exits 0 with every copy correct; at most 3. Returns the
    runs that got as far as a report."""
    runs: list[InProcess] = []
    for number in range(1, 4):
        proxy.reset_counters()
        fake = FakeTime()
        argv = with_kubeconfig(tenant.argv("--timeout", "120", *extra), kubeconfig)
        try:
            run = run_in_process(argv, sleep=fake.sleep)
            runs.append(run)
        except SyncjobError as e:  # a read that failed 6 times: exit 2, nothing written; the next run starts over
            stats.setdefault("runs", []).append({"code": e.exit_code, "faults": dict(proxy.injected)})
            continue
        requests, retries = run.kube.counter.total, run.kube.counter.retries
        stats.setdefault("runs", []).append(
            {"code": run.code, "requests": requests, "retries": retries, "faults": dict(proxy.injected)}
        )
        assert retries <= (MAX_ATTEMPTS - 1) * (requests - retries)  # at most 5 retries per call
        assert retries <= proxy.failures_sent()  # only failures are retried...
        assert all(w <= MAX_DELAY for w in fake.waits)
        if run.code != 0:
            continue
        # ...and every failure the client saw was retried: no retry layer hides some out of sight.
        assert retries == proxy.failures_sent(), (retries, proxy.injected)
        assert not run.actions(result="failed")
        tenant.assert_converged(occupied)
        stats.setdefault("converged_in", []).append(number)
        return runs
    raise AssertionError(f"no convergence in 3 runs: {stats}")


@pytest.mark.parametrize(("seed", "rate"), [(101, FAULT_RATE), (202, FAULT_RATE), (303, 0.35)])
def test_converges_through_random_faults(
    world: World, proxy: FaultProxy, tmp_path: Path, seed: int, rate: float
) -> None:
    tenant = world.tenant()
    for i in range(3):
        tenant.put_source(i, data=docker_config(password=f"p{i}"))
    # Secrets of ours' name that syncjob does not own: reported as conflicts, never touched.
    unmanaged: dict[str, str] = {}
    for j, ns in enumerate(tenant.namespaces[:5]):
        labels = {"app.kubernetes.io/managed-by": "Helm"} if j == 0 else None
        body = k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name=tenant.source_name(0), labels=labels),
            type="Opaque",
            data={"x": b64(f"theirs-{j}")},
        )
        made = world.env.core.create_namespaced_secret(ns, body)
        unmanaged[f"{ns}/{made.metadata.name}"] = made.metadata.resource_version

    # Besides the random faults, one sure case: a create that lands but whose answer is lost.
    lost = tenant.namespaces[10]
    proxy.configure(rate=rate, seed=seed, rules=[Rule("reset-after", "POST", rf"/namespaces/{lost}/secrets$")])
    kubeconfig = proxied(tmp_path, proxy)
    stats: dict[str, Any] = {"seed": seed, "rate": rate}
    runs = converge(tenant, proxy, kubeconfig, occupied=set(unmanaged), stats=stats)
    copies = tenant.assert_converged(set(unmanaged))
    assert len(copies) == 3 * WORLD_SIZE - len(unmanaged)
    assert {a["namespace"] for a in runs[-1].actions("conflict")} == {k.split("/")[0] for k in unmanaged}
    # Its retry met 409 AlreadyExists; the key was read again and found in sync.
    assert any(
        a["namespace"] == lost and a["action"] == "leave" and "re-planned" in a["reason"]
        for run in runs
        for a in run.actions()
    )

    def untouched() -> None:
        for key, rv in unmanaged.items():
            ns, name = key.split("/")
            secret = world.env.core.read_namespaced_secret(name, ns)
            assert secret.metadata.resource_version == rv, key
            assert "syncjob.dev/instance" not in (secret.metadata.labels or {})

    untouched()

    # Update one source, delete another: 80 updates and 80 deletes, through the same faults.
    before = {k: c.metadata.resource_version for k, c in copies.items() if c.metadata.name == tenant.source_name(0)}
    tenant.put_source(1, data=docker_config(password="rotated"))
    tenant.delete_source(2)
    # Sure cases again: an update that fails every attempt (so a second run is needed), and an update
    # and a delete that land with their answers lost (409 on the retry → re-read; 404 on the retry → done).
    stubborn, lost_update, lost_delete = tenant.namespaces[20], tenant.namespaces[21], tenant.namespaces[22]
    one, two = tenant.source_name(1), tenant.source_name(2)
    proxy.configure(
        rules=[
            Rule("503", "PUT", rf"/namespaces/{stubborn}/secrets/{one}$", times=MAX_ATTEMPTS),
            Rule("reset-after", "PUT", rf"/namespaces/{lost_update}/secrets/{one}$"),
            Rule("reset-after", "DELETE", rf"/namespaces/{lost_delete}/secrets/{two}$"),
        ]
    )
    runs = converge(tenant, proxy, kubeconfig, "--max-delete", "100", occupied=set(unmanaged), stats=stats)
    copies = tenant.assert_converged(set(unmanaged))
    assert len(copies) == 2 * WORLD_SIZE - len(unmanaged)
    assert len(runs) >= 2 and runs[0].code == 1
    actions = [
        (a["namespace"], a["action"], a["result"], a["reason"], a.get("error", "")) for r in runs for a in r.actions()
    ]
    assert any(ns == stubborn and result == "failed" and "HTTP 503" in err for ns, _, result, _, err in actions)
    assert any(ns == lost_update and kind == "leave" and "re-planned" in why for ns, kind, _, why, _ in actions)
    assert any(ns == lost_delete and kind == "delete" and result == "done" for ns, kind, result, _, _ in actions)
    # The copies of the untouched source were not written at all.
    assert {k: c.metadata.resource_version for k, c in copies.items() if k in before} == before
    untouched()
    print(f"\nfaults seed={seed}: {json.dumps(stats)}")


# --- 3. crashes ----------------------------------------------------------------------------------


def start_job(argv: list[str], stdout: Path, stderr: Path | None = None) -> subprocess.Popen[str]:
    """`python -m syncjob` in the background: JSON report to `stdout`, log events to `stderr` (a file,
    or a pipe to read line by line)."""
    with open(stdout, "w") as out, open(stderr or "/dev/null", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "syncjob", *argv],
            stdout=out,
            stderr=err if stderr else subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )


@contextlib.contextmanager
def watchdog(*procs: subprocess.Popen[str], seconds: float = 60.0) -> Iterator[None]:
    """Kill jobs that hang, so a failing test fails instead of blocking; and never leave one behind."""
    timers = [threading.Timer(seconds, proc.kill) for proc in procs]
    for timer in timers:
        timer.start()
    try:
        yield
    finally:
        for timer in timers:
            timer.cancel()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def events(line: str) -> dict[str, Any]:
    try:
        doc = json.loads(line)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_kill_during_a_large_apply_then_converge(world: World, proxy: FaultProxy, tmp_path: Path, seed: int) -> None:
    tenant = world.tenant()
    for i in range(3):
        tenant.put_source(i)
    total = 3 * WORLD_SIZE
    kill_after = random.Random(seed).randint(1, total - 1)
    # Slow writes (a real 20 ms each) keep the job busy long enough that the kill lands mid-apply.
    proxy.configure(rules=[Rule("slow", method=m, times=None) for m in WRITE_METHODS])
    proxy.delay = 0.02
    argv = with_kubeconfig(tenant.argv("--concurrency", "4"), proxied(tmp_path, proxy))
    proc = start_job(argv, tmp_path / "stdout.json")
    seen: list[dict[str, Any]] = []
    assert proc.stderr is not None
    with watchdog(proc):
        for line in proc.stderr:
            event = events(line)
            assert event.get("event") != "summary", "the job finished before it was killed"
            if event.get("event") == "action":
                assert event["result"] == "done", event
                seen.append(event)
                if len(seen) == kill_after:
                    proc.send_signal(signal.SIGKILL)
                    break
        proc.stderr.close()
        assert proc.wait() == -signal.SIGKILL
    proxy.wait_idle()  # requests the dead job left in flight land (or not) before we look

    copies = tenant.copies()
    assert kill_after <= len(copies) < total, (kill_after, len(copies))
    for event in seen:  # every write the job reported before it died is there
        assert f"{event['namespace']}/{event['name']}" in copies

    after = tenant.run()
    assert after.code == 0, after.stderr
    assert after.summary["actions"]["create"] == {"done": total - len(copies)}
    tenant.assert_converged()
    steady = tenant.run()
    assert steady.code == 0 and steady.writes() == 0
    print(f"\ncrash seed={seed}: killed after {kill_after}/{total} action events, {len(copies)} copies existed")


def test_kill_in_the_middle_of_a_recreate(world: World, proxy: FaultProxy, tmp_path: Path) -> None:
    tenant = world.tenant(size=3)
    tenant.put_source(0)
    assert tenant.run().code == 0
    tenant.assert_converged()
    # A type change makes every copy a recreate: DELETE, then POST.
    tenant.delete_source(0)
    legacy = {".dockercfg": b64(json.dumps({"r.example.com": {"auth": b64("u:p")}}))}
    tenant.put_source(0, type="kubernetes.io/dockercfg", data=legacy)
    proxy.configure(rules=[Rule("hold", method="POST", path=r"/secrets(\?|$)")])
    argv = with_kubeconfig(tenant.argv("--concurrency", "1"), proxied(tmp_path, proxy))
    proc = start_job(argv, tmp_path / "stdout.json")
    with watchdog(proc):
        assert proxy.held.acquire(timeout=60), "the job never sent its create"
        deleted = [s.path for s in proxy.seen if s.method == "DELETE"]
        assert len(deleted) == 1
        proc.send_signal(signal.SIGKILL)  # after the delete, before the create reached the server
        assert proc.wait() == -signal.SIGKILL
    proxy.release()
    proxy.wait_idle()
    ns = deleted[0].split("/")[4]
    copies = tenant.copies()
    assert f"{ns}/{tenant.source_name(0)}" not in copies  # the crash left it deleted...
    assert len(copies) == 2

    after = tenant.run()
    assert after.code == 0, after.stderr
    assert after.summary["actions"] == {"create": {"done": 1}, "recreate": {"done": 2}}
    copies = tenant.assert_converged()  # ...and the next run made it, with the new type
    assert all(c.type == "kubernetes.io/dockercfg" for c in copies.values())
    steady = tenant.run()
    assert steady.code == 0 and steady.writes() == 0


# --- 4. two runs at once -------------------------------------------------------------------------


def race(tenant: Tenant, proxy: FaultProxy, kubeconfig: Path, tmp_path: Path, *extra: str) -> list[dict[str, Any]]:
    """Two jobs at once (8 and 16 writers), writes parked until both have read the cluster and both have
    a full pool of writes waiting: they planned the same writes and now send them at the same moment."""
    proxy.reset_counters()
    proxy.close_gate()
    jobs = []
    for i, flags in enumerate([(), ("--concurrency", "16")]):
        argv = with_kubeconfig(tenant.argv(*flags, *extra), kubeconfig)
        jobs.append(start_job(argv, tmp_path / f"race-{i}.json", tmp_path / f"race-{i}.log"))
    with watchdog(*jobs):
        try:
            wait_for(lambda: proxy.count("GET", COPIES_LIST) >= 2, "both jobs to list their copies", timeout=60)
            wait_for(lambda: proxy.parked >= 8 + 16, "both jobs to send a pool of writes", timeout=60)
        finally:
            proxy.open_gate()
        codes = [job.wait() for job in jobs]
    for i, code in enumerate(codes):
        assert code == 0, (tmp_path / f"race-{i}.log").read_text()
    return [json.loads((tmp_path / f"race-{i}.json").read_text()) for i in range(len(jobs))]


def replanned(doc: dict[str, Any]) -> int:
    return sum(1 for a in doc["actions"] if "re-planned" in a["reason"] or "after a re-read" in a["reason"])


def test_two_overlapping_runs_are_safe(world: World, proxy: FaultProxy, tmp_path: Path) -> None:
    tenant = world.tenant(size=60)
    for i in range(2):
        tenant.put_source(i)
    kubeconfig = proxied(tmp_path, proxy)

    first = race(tenant, proxy, kubeconfig, tmp_path)
    tenant.assert_converged()
    # Both planned all 120 creates; each key was created once, the loser re-read it and left it.
    creates = [d["summary"]["actions"].get("create", {}).get("done", 0) for d in first]
    assert sum(creates) == 120 and all(replanned(d) == 120 - n for d, n in zip(first, creates, strict=True))
    assert proxy.count("POST") == 240

    tenant.put_source(0, data=docker_config(password="rotated"))
    tenant.delete_source(1)
    tenant.put_source(2)
    second = race(tenant, proxy, kubeconfig, tmp_path, "--max-delete", "100")
    tenant.assert_converged()
    for doc in second:  # a delete that finds the copy gone is done; an update or create that lost is re-planned
        counts = doc["summary"]["actions"]
        assert counts["delete"] == {"done": 60}
        assert sum(counts.get(k, {}).get("done", 0) for k in ("create", "update")) + replanned(doc) == 120
    assert proxy.count("DELETE") == 120 and proxy.count("PUT") == 120

    third = tenant.run()
    assert third.code == 0 and third.writes() == 0
    print(f"\nrace: first {creates} creates done, second {[replanned(d) for d in second]} re-planned")


# --- 5. --timeout -------------------------------------------------------------------------------


def test_timeout_stops_cleanly_and_reports_what_is_undone(world: World) -> None:
    tenant = world.tenant()
    tenant.put_source(0)
    assert tenant.run().code == 0
    old = tenant.assert_converged()
    tenant.put_source(0, data=docker_config(password="rotated"))
    tenant.put_source(1)
    planned = 2 * WORLD_SIZE  # 80 updates, 80 creates

    # A clock that jumps past the deadline once the 25th write has come back: the cut falls between
    # two writes, the same on any machine (one write at a time, so none is in flight when it does).
    answered: list[str] = []

    def expire_after_writes(kube: Kube) -> None:
        send = kube.api.call_api

        def call_api(path: str, method: str, *args: Any, **kwargs: Any) -> Any:
            response = send(path, method, *args, **kwargs)
            if method in WRITE_METHODS:
                answered.append(path)
            return response

        kube.api.call_api = call_api  # type: ignore[method-assign]
        kube.deadline = Deadline(at=60.0, clock=lambda: 0.0 if len(answered) < 25 else 1e9)

    run = run_in_process(tenant.argv("--concurrency", "1"), sleep=FakeTime().sleep, kube_hook=expire_after_writes)
    assert run.code == 1
    done, not_run = run.actions(result="done"), run.actions(result="not-run")
    assert len(done) == 25 and len(not_run) == planned - 25
    assert not run.actions(result="failed")
    assert run.writes == len(done)  # no write was sent and left unreported
    assert all(a["error"].startswith("--timeout expired before ") for a in not_run)
    assert any("--timeout" in note and str(len(not_run)) in note for note in run.summary["notes"])

    # Nothing half-done: each copy is the old one untouched, or exactly the new one.
    sources = tenant.sources()
    copies = tenant.copies()
    for key, copy in copies.items():
        if key in old and copy.metadata.resource_version == old[key].metadata.resource_version:
            continue
        assert copy.data == sources[copy.metadata.name].data, key
    assert len(copies) == WORLD_SIZE + len(run.actions("create", "done"))

    again = tenant.run()
    assert again.code == 0
    assert again.writes() == len(not_run)
    tenant.assert_converged()


def test_timeout_against_a_slow_server_exits_1(world: World, proxy: FaultProxy, tmp_path: Path) -> None:
    tenant = world.tenant()
    tenant.put_source(0)
    # Every write takes a real 250 ms; 80 of them, two at a time, cannot fit in 1.5 s.
    proxy.configure(rules=[Rule("slow", method=m, times=None) for m in WRITE_METHODS])
    proxy.delay = 0.25
    argv = with_kubeconfig(tenant.argv("--timeout", "1.5", "--concurrency", "2"), proxied(tmp_path, proxy))
    result = tenant.env.run_process(argv=argv)
    assert result.code == 1, result.stderr
    summary = result.summary
    (note,) = [n for n in summary["notes"] if "--timeout expired" in n]
    outcomes = Counter(a["result"] for a in result.actions())
    assert outcomes["not-run"] > 0 and outcomes["done"] > 0, outcomes
    assert set(outcomes) == {"done", "not-run"}, outcomes  # a write cut short by the deadline is not "unreachable"
    assert f"{outcomes['not-run']} writes were not made" in note
    print(f"\nslow server: {dict(outcomes)} in {summary['durationSeconds']}s; {note}")

    proxy.wait_idle()  # writes the job gave up on may still land; the next run takes the state as it is
    again = tenant.run()
    assert again.code == 0, again.stderr
    tenant.assert_converged()


def test_timeout_while_reading_exits_2(world: World, proxy: FaultProxy, tmp_path: Path) -> None:
    """Nothing was written: the run is unusable, not partial, even when --timeout is what stopped it."""
    tenant = world.tenant()
    tenant.put_source(0)
    proxy.configure(rules=[Rule("slow", times=None)])
    proxy.delay = 0.4  # the reads alone take longer than --timeout
    argv = with_kubeconfig(tenant.argv("--timeout", "1"), proxied(tmp_path, proxy))
    result = tenant.env.run_process(argv=argv)
    assert result.code == 2, result.stderr
    assert "--timeout expired during " in result.stderr and "nothing was changed" in result.stderr
    assert "cannot reach" not in result.stderr
    assert tenant.copies() == {}


# --- 6. the API server goes away -----------------------------------------------------------------


def test_a_server_that_stops_answering_mid_apply_stops_the_writes(
    world: World, proxy: FaultProxy, tmp_path: Path
) -> None:
    """After 10 writes every connection is reset: the writes in flight give up after their retries, the
    rest are not attempted, the run says so and exits 2 - within seconds of backoff, not one round of
    retries per remaining write."""
    tenant = world.tenant()
    tenant.put_source(0)
    tenant.run()  # the proof key exists: the next run's writes are copies only
    tenant.put_source(0, data=docker_config(password="rotated"))
    writes: list[str] = []

    def die_after_ten_writes(kube: Kube) -> None:
        original = kube.call

        def call(verb: str, *args: Any, **kwargs: Any) -> Any:
            if verb in ("create", "update", "delete"):
                writes.append(verb)
                if len(writes) == 10:
                    proxy.configure(rules=[Rule("reset", times=None)])
            return original(verb, *args, **kwargs)

        kube.call = call  # type: ignore[method-assign]

    fake = FakeTime()
    argv = with_kubeconfig(tenant.argv("--concurrency", "2"), proxied(tmp_path, proxy))
    run = run_in_process(argv, sleep=fake.sleep, kube_hook=die_after_ten_writes)
    assert run.code == 2, run.logs
    outcomes = Counter(a["result"] for a in run.actions("update"))
    assert outcomes["done"] >= 8 and outcomes["failed"] <= 2, outcomes
    assert outcomes["not-run"] >= WORLD_SIZE - 12, outcomes
    assert sum(outcomes.values()) == WORLD_SIZE
    assert len(writes) <= 12  # nothing was sent after the server was found gone
    assert sum(fake.waits) <= 30.0, fake.waits  # one round of backoff
    (part,) = run.summary["policies"]
    assert "stopped answering" in part["error"] and part["exitCode"] == 2
    proxy.configure(rules=[])
    again = tenant.run()
    assert again.code == 0, again.stderr
    tenant.assert_converged()


def test_discovery_failing_before_any_write_is_unusable(env: SyncEnv, proxy: FaultProxy, tmp_path: Path) -> None:
    env.build_namespace("n")
    env.put_source()
    proxy.configure(rules=[Rule("503", path=r"^/apis\?|^/apis$", times=None)])
    run = run_in_process(with_kubeconfig(env.argv(), proxied(tmp_path, proxy)), sleep=FakeTime().sleep)
    assert run.code == 2
    (part,) = run.summary["policies"]
    assert "discover API groups" in part["error"] and "HTTP 503" in part["error"]
    assert env.copies() == {} and run.summary["requests"].get("create", 0) <= 1  # at most the proof key
