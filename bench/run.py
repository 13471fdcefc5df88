#!/usr/bin/env python3
"""syncjob against a real kube-apiserver: the initial sync, a steady state and one edited source.

    .venv/bin/python bench/run.py [--quick] [--sizes 500,1000,5000] [--kubeconfig PATH]

For each size N it starts the test control plane (tests/controlplane; one fresh etcd +
kube-apiserver per N) or, with --kubeconfig / KUBECONFIG, uses that cluster with namespaces,
source namespace and instance of its own per N. It seeds N namespaces (90 % of them with a kpack
Image) and 3 labelled source Secrets, then runs `python -m syncjob run -o json` as a subprocess
three times: the initial sync, a steady state (nothing changed) and a run after one source was
edited. Each run is measured as a whole process (wall time, peak RSS via wait4, CPU) and inside
the process (the summary's durationSeconds: the time of syncjob.runner.execute), with the API
requests counted by the client (the summary) and by the API server (apiserver_request_total from
/metrics). The steady state is also run in this process through syncjob.runner.execute.

It also runs the job after one new build namespace, and at the largest N tops every namespace
up to a target (15,000 copies at N=5000) and measures that steady state too. There it measures
levers as before/after pairs (page size, resourceVersion=0, connection pool vs concurrency,
concurrency, metadata-only LISTs, and proposed syncjob changes), each applied by monkeypatching
in a child process (`bench/run.py __worker__ ...`), never by editing syncjob/, and profiles the
steady state and the initial sync. `--compare TREE` runs another checkout's syncjob against this
one (e.g. a checkout from before a change).

Prints a table, the targets met / not met, and writes bench/results/<timestamp>.json.
docs/performance.md explains the method and the numbers. Nothing in the test suite uses this file.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import functools
import importlib.metadata
import io
import json
import math
import os
import platform
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BENCH_FILE = Path(__file__).resolve()
RESULTS_DIR = ROOT / "bench" / "results"
WORKER = "__worker__"

SYNC_LABEL = "com.vmware.tanzu.buildservice.sync"
SOURCES = 3  # M
BUILD_PERCENT = 90  # namespaces with a kpack Image; the rest have no builds
SEED_THREADS = 8
PAGE = 500  # syncjob's page size (Kube.list_pages' default)
LEVER_SCOPE = 1000  # initial-sync levers write into the first 1000 namespaces only (time budget)
STEADY_REPEATS = 3
LEVER_REPEATS = 3
WRITE_VERBS = ("create", "update", "delete", "patch")
SERVER_WRITE_VERBS = ("POST", "PUT", "DELETE", "PATCH", "APPLY")
# The resources syncjob reads and writes; apiserver_request_total is summed over these.
RESOURCES = frozenset({("", "secrets"), ("", "namespaces"), ("kpack.io", "images"), ("kpack.io", "builds")})
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
METRIC_FAMILIES = (
    "apiserver_request_total{",
    "apiserver_storage_list_total{",
    "apiserver_storage_list_fetched_objects_total{",
    "etcd_requests_total{",
    "authenticated_user_requests{",
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- raw API access (admin) -------------------------------------------------------------------


class Http:
    """Plain JSON requests through a kubernetes ApiClient: no generated models, no retries."""

    def __init__(self, api: Any) -> None:
        self.api = api

    def raw(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: list[tuple[str, str]] | None = None,
        accept: str = "application/json",
    ) -> bytes:
        response = self.api.call_api(
            path,
            method,
            query_params=query or [],
            body=body,
            header_params={"Accept": accept, "Content-Type": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=(5.0, 120.0),
        )
        data: bytes = response.data
        return data

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        raw = self.raw(method, path, **kwargs)
        result: dict[str, Any] = json.loads(raw) if raw else {}
        return result

    def count(self, path: str, label_selector: str = "") -> int:
        """Objects a LIST returns (metadata only, big pages)."""
        total, token = 0, ""
        while True:
            query = [("limit", "5000")]
            if label_selector:
                query.append(("labelSelector", label_selector))
            if token:
                query.append(("continue", token))
            page = self.json("GET", path, query=query, accept=METADATA_ONLY)
            total += len(page.get("items") or [])
            token = (page.get("metadata") or {}).get("continue") or ""
            if not token:
                return total


# --- API server metrics -----------------------------------------------------------------------

_SERIES = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\}$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(http: Http) -> dict[str, float]:
    """The counters we use from GET /metrics, by full series name."""
    text = http.raw("GET", "/metrics", accept="text/plain").decode(errors="replace")
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(METRIC_FAMILIES):
            series, _, value = line.rpartition(" ")
            with contextlib.suppress(ValueError):
                values[series] = float(value)
    return values


def server_view(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """What the API server saw between two scrapes: requests by verb for syncjob's resources
    (secrets, namespaces, kpack images and builds) and for everything, where LISTs were served
    from (watch cache or etcd), etcd requests, and all requests authenticated as the job's user."""
    syncjob_verbs: Counter[str] = Counter()
    all_verbs: Counter[str] = Counter()
    list_storage: Counter[str] = Counter()
    fetched: Counter[str] = Counter()
    etcd: Counter[str] = Counter()
    authenticated = 0.0
    for series, value in after.items():
        delta = value - before.get(series, 0.0)
        if not delta:
            continue
        match = _SERIES.match(series)
        if not match:
            continue
        name, labels = match.group(1), dict(_LABEL.findall(match.group(2)))
        ours = (labels.get("group", ""), labels.get("resource", "")) in RESOURCES
        if name == "apiserver_request_total":
            all_verbs[labels.get("verb", "")] += int(delta)
            if ours and not labels.get("subresource"):
                syncjob_verbs[labels.get("verb", "")] += int(delta)
        elif name == "apiserver_storage_list_total" and ours:
            list_storage[f"{labels.get('resource')}@{labels.get('storage')}"] += int(delta)
        elif name == "apiserver_storage_list_fetched_objects_total" and ours:
            fetched[f"{labels.get('resource')}@{labels.get('storage')}"] += int(delta)
        elif name == "etcd_requests_total" and ours:
            etcd[labels.get("operation", "")] += int(delta)
        elif name == "authenticated_user_requests" and labels.get("username") == "admin":
            authenticated += delta
    return {
        "requests": dict(sorted(syncjob_verbs.items())),
        "requestsAllResources": dict(sorted(all_verbs.items())),
        "listsServedFrom": dict(sorted(list_storage.items())),
        "listFetchedObjects": dict(sorted(fetched.items())),
        "etcdRequests": dict(sorted(etcd.items())),
        # Every request of user `admin` (the job and the scrape itself), discovery included.
        "authenticatedRequests": int(authenticated) - 1,
    }


# --- process accounting -----------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def proc_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def child_env(root: Path = ROOT) -> dict[str, str]:
    """The environment without SYNCJOB_* settings, so nothing but our flags steers the job; `root`
    first on the path, so `-m syncjob` is that tree's syncjob."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCJOB_")}
    env["PYTHONPATH"] = str(root) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


@dataclass
class Measured:
    """A child process: wall time, peak RSS and CPU from wait4, stdout and stderr."""

    wall: float
    rss_mib: float
    cpu: float
    exit_code: int
    stdout: bytes
    stderr: bytes


# The job is started by this small launcher (python -S, ~10 MiB), not by the bench process itself:
# a child's ru_maxrss starts at the RSS of the process it was forked/vforked from, and this process
# holds ~150 MiB by the end (kubernetes client, in-process runs at N=5000).
LAUNCHER = """
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
started = time.monotonic()
pid = os.posix_spawn(argv[0], argv, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.monotonic() - started
with open(report, "w") as f:
    json.dump({"wall": wall, "maxrss": usage.ru_maxrss, "cpu": usage.ru_utime + usage.ru_stime,
               "code": os.waitstatus_to_exitcode(status)}, f)
"""


def measure_process(cmd: list[str], timeout: float = 1800.0, root: Path = ROOT) -> Measured:
    """cmd[0] must be an absolute path (posix_spawn does not search PATH)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile() as report:
        launcher = [sys.executable, "-S", "-c", LAUNCHER, report.name, *cmd]
        proc = subprocess.Popen(
            launcher, stdout=out, stderr=err, stdin=subprocess.DEVNULL, cwd=root, env=child_env(root),
            start_new_session=True,
        )  # fmt: skip
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
            raise
        usage = json.loads(Path(report.name).read_text())
        out.seek(0)
        err.seek(0)
        return Measured(
            wall=usage["wall"],
            rss_mib=usage["maxrss"] / 1024,
            cpu=usage["cpu"],
            exit_code=usage["code"],
            stdout=out.read(),
            stderr=err.read(),
        )


# --- other load on the machine ----------------------------------------------------------------


def machine_busy_seconds() -> float:
    """CPU-seconds all CPUs spent busy since boot (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """This process and its waited-for children (launchers and jobs)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class LoadMeter:
    """CPU used by everything that is not this benchmark (other users' test suites, say) while a
    run is measured, and a bounded wait for a quiet machine before each run."""

    control_plane: Callable[[], dict[str, float]]
    budget: float = 150.0  # seconds of waiting for quiet, for the whole benchmark
    per_run: float = 10.0
    threshold: float = 0.3  # cores used by others that count as quiet
    waited: float = 0.0
    busy0: float = 0.0
    own0: float = 0.0
    cp0: float = 0.0

    def _mark(self) -> tuple[float, float, float]:
        return machine_busy_seconds(), own_cpu_seconds(), sum(self.control_plane().values())

    def others_over(self, seconds: float) -> float:
        busy, own, cp = self._mark()
        time.sleep(seconds)
        busy2, own2, cp2 = self._mark()
        return max(0.0, (busy2 - busy) - (own2 - own) - (cp2 - cp)) / seconds

    def wait_quiet(self) -> float:
        waited = 0.0
        while waited < self.per_run and self.waited < self.budget:
            if self.others_over(0.3) < self.threshold:
                break
            time.sleep(0.7)
            waited += 1.0
            self.waited += 1.0
        return waited

    def start(self) -> None:
        self.busy0, self.own0, self.cp0 = self._mark()

    def others(self) -> float:
        busy, own, cp = self._mark()
        return round(max(0.0, (busy - self.busy0) - (own - self.own0) - (cp - self.cp0)), 2)


# --- the cluster and what is seeded into it ---------------------------------------------------


def docker_config_json(registry: str, user: str, token: str) -> str:
    auth = base64.b64encode(f"{user}:{token}".encode()).decode()
    config = {"auths": {registry: {"username": user, "password": token, "auth": auth}}}
    return base64.b64encode(json.dumps(config).encode()).decode()


def source_body(name: str, revision: int, labels: dict[str, str] | None = None) -> dict[str, Any]:
    # ~1 KB of data: a registry token about as long as a cloud registry's.
    token = (f"{name}-r{revision}-" + "k" * 400)[:400]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {SYNC_LABEL: "true", **(labels or {})}},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": docker_config_json(f"{name}.registry.example.com", "robot", token)},
    }


def image_body(namespace: str) -> dict[str, Any]:
    """A kpack Image with a spec of realistic size (~0.8 KB); status is a subresource, not seeded."""
    return {
        "apiVersion": "kpack.io/v1alpha2",
        "kind": "Image",
        "metadata": {"name": "app", "labels": {"app.kubernetes.io/name": "app"}},
        "spec": {
            "tag": f"registry.example.com/apps/{namespace}/app",
            "additionalTags": [f"registry.example.com/apps/{namespace}/app:latest"],
            "serviceAccountName": "default",
            "builder": {"kind": "ClusterBuilder", "name": "default"},
            "source": {
                "git": {"url": f"https://git.example.com/teams/{namespace}/app.git", "revision": "main"},
                "subPath": "",
            },
            "build": {
                "env": [
                    {"name": "BP_JVM_VERSION", "value": "21"},
                    {"name": "BP_MAVEN_BUILD_ARGUMENTS", "value": "-Dmaven.test.skip=true --no-transfer-progress"},
                    {"name": "BPL_JVM_THREAD_COUNT", "value": "50"},
                ],
                "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
            },
            "cache": {"volume": {"size": "2G"}},
            "failedBuildHistoryLimit": 10,
            "successBuildHistoryLimit": 10,
            "imageTaggingStrategy": "BuildNumber",
        },
    }


def has_build(index: int, percent: int) -> bool:
    """Exactly floor(N * percent / 100) of the first N namespaces have builds, spread evenly."""
    return (index * percent) // 100 != ((index + 1) * percent) // 100


@dataclass
class World:
    """One size's cluster (or share of an external cluster) and the names syncjob runs with."""

    n: int
    kubeconfig: Path
    context: str
    http: Http
    plane: Any = None  # tests.controlplane.cluster.ControlPlane when we started it
    ns_prefix: str = "bench"
    source_ns: str = "build-service"
    instance: str = "syncjob"
    include: str = ""  # --include glob; empty on a cluster of our own (syncjob's defaults)
    build_percent: int = BUILD_PERCENT
    revision: int = 0
    extra_builds: int = 0  # Images added later to namespaces seeded without builds
    new_namespaces: int = 0  # build namespaces added after the initial sync
    meter: LoadMeter = field(init=False)

    def __post_init__(self) -> None:
        self.meter = LoadMeter(self.cp_cpu)

    def ns(self, index: int) -> str:
        return f"{self.ns_prefix}-{index:05d}"

    @property
    def source_names(self) -> list[str]:
        return [f"regcred-{i}" for i in range(SOURCES)]

    @property
    def build_namespaces(self) -> int:
        return sum(has_build(i, self.build_percent) for i in range(self.n)) + self.extra_builds

    def job_args(self, *, instance: str = "", source_ns: str = "", include: str = "") -> list[str]:
        """`syncjob run` for one SecretSync, which this makes (or replaces) first: the intent is in the cluster."""
        name = instance or self.instance
        spec: dict[str, Any] = {"sources": {"namespace": source_ns or self.source_ns}}
        if include or self.include:
            spec["targets"] = {"include": [include or self.include]}
        put_policy(self.http, name, spec)
        args = ["run", "--kubeconfig", str(self.kubeconfig), "--policy", name]
        if self.context:
            args += ["--context", self.context]
        return args

    def cp_cpu(self) -> dict[str, float]:
        if self.plane is None:
            return {}
        return {name: cpu for name, pid in self.plane.pids.items() if (cpu := proc_cpu_seconds(pid)) is not None}

    def cp_rss(self) -> dict[str, float]:
        if self.plane is None:
            return {}
        return {name: round(rss, 1) for name, pid in self.plane.pids.items() if (rss := proc_rss_mib(pid)) is not None}


def put_policy(http: Http, name: str, spec: dict[str, Any]) -> None:
    """Create or replace the SecretSync `name` (server-side apply: one request, either way)."""
    body = {"apiVersion": "syncjob.dev/v1alpha1", "kind": "SecretSync", "metadata": {"name": name}, "spec": spec}
    http.api.call_api(
        f"/apis/syncjob.dev/v1alpha1/secretsyncs/{name}",
        "PATCH",
        query_params=[("fieldManager", "syncjob-bench"), ("force", "true")],
        body=body,
        header_params={"Accept": "application/json", "Content-Type": "application/apply-patch+yaml"},
        auth_settings=["BearerToken"],
        _preload_content=False,
    )


def admin_http(kubeconfig: Path, context: str) -> Http:
    from syncjob.kube.client import load_api_client

    return Http(load_api_client(kubeconfig, context, 2 * SEED_THREADS))


def open_world(n: int, args: argparse.Namespace, run_id: str, workroot: Path) -> World:
    from tests.sync_env import install_crds, install_kpack_crds, secretsync_crd

    if args.kubeconfig:
        kubeconfig, plane = Path(args.kubeconfig).expanduser(), None
        http = admin_http(kubeconfig, args.context)
        prefix = f"bench-{run_id}-n{n}"
        world = World(
            n,
            kubeconfig,
            args.context,
            http,
            ns_prefix=prefix,
            source_ns=f"{prefix}-src",
            instance=prefix,
            include=f"{prefix}-*",
        )
    else:
        from tests.controlplane.cluster import start_control_plane

        plane = start_control_plane(workroot / f"n{n}")
        log(f"N={n}: control plane up in {plane.startup_seconds:.1f}s at {plane.server} (pids {plane.pids})")
        http = admin_http(plane.kubeconfig, "")
        world = World(n, plane.kubeconfig, "", http, plane)
    world.build_percent = args.build_percent
    install_kpack_crds(world.http.api)
    install_crds(world.http.api, [secretsync_crd()])
    return world


def close_world(world: World, keep: bool) -> None:
    if world.plane is not None and not keep:
        world.plane.stop()
    elif world.plane is None and not keep:
        # An external cluster: delete what we made (a cluster without a namespace controller keeps them Terminating).
        names = [world.ns(i) for i in range(world.n)] + [world.source_ns] + world_extra_namespaces(world)
        names += [f"{world.ns_prefix}-new{j:03d}" for j in range(1, world.new_namespaces + 1)]
        with ThreadPoolExecutor(SEED_THREADS) as pool:
            list(pool.map(lambda name: _delete_quietly(world.http, f"/api/v1/namespaces/{name}"), names))


def world_extra_namespaces(world: World) -> list[str]:
    return [f"{world.ns_prefix}-lv{k}" for k in range(1, 40)]


def _delete_quietly(http: Http, path: str) -> None:
    from kubernetes.client.exceptions import ApiException

    with contextlib.suppress(ApiException):
        http.raw("DELETE", path)


def make_namespace(http: Http, name: str) -> None:
    http.raw("POST", "/api/v1/namespaces", body={"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})


def make_sources(http: Http, namespace: str, names: list[str], revision: int = 0) -> None:
    make_namespace(http, namespace)
    for name in names:
        http.raw("POST", f"/api/v1/namespaces/{namespace}/secrets", body=source_body(name, revision))


def seed(world: World) -> dict[str, Any]:
    started = time.monotonic()
    make_sources(world.http, world.source_ns, world.source_names)

    def one(index: int) -> int:
        name = world.ns(index)
        make_namespace(world.http, name)
        if not has_build(index, world.build_percent):
            return 1
        world.http.raw("POST", f"/apis/kpack.io/v1alpha2/namespaces/{name}/images", body=image_body(name))
        return 2

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        created = sum(pool.map(one, range(world.n)))
    seconds = time.monotonic() - started
    return {
        "seconds": round(seconds, 2),
        "objectsCreated": created + 1 + SOURCES,
        "perSecond": round((created + 1 + SOURCES) / seconds, 1),
        "threads": SEED_THREADS,
    }


def edit_source(world: World, name: str) -> None:
    """Replace the source's data (a new token), keeping its labels: one source edited."""
    path = f"/api/v1/namespaces/{world.source_ns}/secrets/{name}"
    current = world.http.json("GET", path)
    world.revision += 1
    body = source_body(name, world.revision)
    body["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
    world.http.raw("PUT", path, body=body)


def add_missing_builds(world: World) -> int:
    """Give every namespace seeded without builds an Image: all N become targets."""
    missing = [i for i in range(world.n) if not has_build(i, world.build_percent)]

    def one(index: int) -> None:
        name = world.ns(index)
        world.http.raw("POST", f"/apis/kpack.io/v1alpha2/namespaces/{name}/images", body=image_body(name))

    with ThreadPoolExecutor(SEED_THREADS) as pool:
        list(pool.map(one, missing))
    world.extra_builds += len(missing)
    return len(missing)


def add_build_namespace(world: World) -> str:
    """One more namespace with an Image: the everyday change a run picks up (3 new copies)."""
    world.new_namespaces += 1
    name = f"{world.ns_prefix}-new{world.new_namespaces:03d}"
    make_namespace(world.http, name)
    world.http.raw("POST", f"/apis/kpack.io/v1alpha2/namespaces/{name}/images", body=image_body(name))
    return name


def list_objects(world: World, instance: str = "") -> dict[str, int]:
    """How many objects each of syncjob's LISTs returns: the floor for its page count."""
    from syncjob.objects import managed_selector

    http = world.http
    return {
        "sources": http.count(f"/api/v1/namespaces/{world.source_ns}/secrets", f"{SYNC_LABEL}=true"),
        "namespaces": http.count("/api/v1/namespaces"),
        "builds": http.count("/apis/kpack.io/v1alpha2/builds"),
        "images": http.count("/apis/kpack.io/v1alpha2/images"),
        "copies": http.count("/api/v1/secrets", managed_selector(instance or world.instance)),
    }


def expected_list_pages(objects: dict[str, int], limit: int = PAGE) -> int:
    """3 + K LISTs (sources, namespaces, copies; builds, images) plus one request per further page."""
    return sum(max(1, math.ceil(count / limit)) for count in objects.values())


def trailing_pages_allowed(objects: dict[str, int], limit: int = PAGE) -> int:
    """A LIST whose objects fill its last page exactly may get a continue token and one empty page more
    (the watch cache cannot tell whether later keys match a label selector)."""
    return sum(1 for count in objects.values() if count and count % limit == 0)


# --- running syncjob --------------------------------------------------------------------------


def writes_of(requests: dict[str, int]) -> int:
    return sum(int(requests.get(v, 0)) for v in WRITE_VERBS)


def run_job(
    world: World,
    label: str,
    job_args: list[str] | None = None,
    *,
    spec: dict[str, Any] | None = None,
    quiet: bool = False,
    root: Path = ROOT,
) -> dict[str, Any]:
    """One syncjob process (`python -m syncjob`, or the bench worker when `spec` patches it), measured."""
    args = [*(job_args or world.job_args()), "-o", "json"]
    report_path = None
    if spec is None:
        cmd = [sys.executable, "-m", "syncjob", *args]
    else:
        handle, name = tempfile.mkstemp(prefix="syncjob-bench-", suffix=".json")
        os.close(handle)
        report_path = Path(name)
        cmd = [sys.executable, str(BENCH_FILE), WORKER, json.dumps({**spec, "report": name}), *args]
    quiet_wait = world.meter.wait_quiet()
    before, cpu_before = scrape(world.http), world.cp_cpu()
    world.meter.start()
    measured = measure_process(cmd, root=root)
    others = world.meter.others()
    after, cpu_after = scrape(world.http), world.cp_cpu()
    try:
        doc = json.loads(measured.stdout)
    except ValueError as e:
        tail = measured.stderr.decode(errors="replace")[-3000:]
        raise RuntimeError(f"{label}: syncjob printed no JSON (exit {measured.exit_code}):\n{tail}") from e
    summary = doc["summary"]
    requests = {k: v for k, v in summary["requests"].items() if k != "total"}
    duration = float(summary["durationSeconds"])
    writes = writes_of(requests)
    result: dict[str, Any] = {
        "label": label,
        "command": shlex.join(["python", *cmd[1:]]) if spec is None else f"bench worker {json.dumps(spec)}",
        "exitCode": measured.exit_code,
        "inProcessSeconds": duration,
        "processSeconds": round(measured.wall, 3),
        "peakRssMiB": round(measured.rss_mib, 1),
        "jobCpuSeconds": round(measured.cpu, 2),
        "clientRequests": requests,
        "writes": writes,
        "writesPerSecond": round(writes / duration, 1) if writes and duration else 0.0,
        "actions": summary["actions"],
        "targets": summary["targets"],
        "sources": summary["sources"],
        "server": server_view(before, after),
        "controlPlaneCpuSeconds": {k: round(cpu_after[k] - cpu_before.get(k, 0.0), 2) for k in cpu_after},
        # CPU-seconds used meanwhile by processes that are not this benchmark's (its job, cluster, self).
        "otherCpuSeconds": others,
        "otherCpuCores": round(others / measured.wall, 2) if measured.wall else 0.0,
        "quietWaitSeconds": quiet_wait,
    }
    if report_path is not None:
        with contextlib.suppress(OSError, ValueError):
            result["worker"] = json.loads(report_path.read_text())
        report_path.unlink(missing_ok=True)
    if not quiet:
        log(
            f"N={world.n} {label}: {duration:.2f}s in-process, {measured.wall:.2f}s process, "
            f"{measured.rss_mib:.0f} MiB, requests {requests}, exit {measured.exit_code}, "
            f"other processes {result['otherCpuCores']} cores"
        )
    return result


@contextlib.contextmanager
def job_logging() -> Iterator[None]:
    """syncjob's JSON logging as the CLI sets it up (INFO), written to /dev/null."""
    import logging

    from syncjob.logs import LOGGER_NAME, setup_logging

    with open(os.devnull, "w") as sink:
        setup_logging("INFO")
        for handler in logging.getLogger(LOGGER_NAME).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(sink)
        try:
            yield
        finally:
            logging.getLogger(LOGGER_NAME).handlers.clear()


def run_inprocess(world: World, job_args: list[str] | None = None) -> dict[str, Any]:
    """syncjob.runner.execute in this process, Settings built as the CLI builds them."""
    from syncjob import cli
    from syncjob.runner import execute

    parsed = cli.build_parser().parse_args([*(job_args or world.job_args()), "-o", "json"])
    settings = cli.settings_from(cli.resolve(parsed, {}))
    with job_logging():
        started = time.perf_counter()
        outcome = execute(settings, io.StringIO(), output="json")
        wall = time.perf_counter() - started
    requests = dict(outcome.summary.requests)
    return {"seconds": round(wall, 3), "clientRequests": requests, "writes": writes_of(requests)}


def import_floor() -> dict[str, Any]:
    """What importing syncjob's runner (and with it the kubernetes client) costs a process."""
    samples = [measure_process([sys.executable, "-c", "import syncjob.cli, syncjob.runner"]) for _ in range(3)]
    bare = measure_process([sys.executable, "-c", "pass"])
    return {
        "importSeconds": round(statistics.median(s.wall for s in samples), 3),
        "importPeakRssMiB": round(statistics.median(s.rss_mib for s in samples), 1),
        "bareInterpreterSeconds": round(bare.wall, 3),
        "bareInterpreterRssMiB": round(bare.rss_mib, 1),
    }


# --- one size ---------------------------------------------------------------------------------


def steady_inprocess(world: World, repeats: int = STEADY_REPEATS) -> dict[str, Any]:
    runs = [run_inprocess(world) for _ in range(repeats)]
    seconds = [r["seconds"] for r in runs]
    return {
        "runs": runs,
        "medianSeconds": round(statistics.median(seconds), 3),
        "minSeconds": min(seconds),
        "writes": sum(r["writes"] for r in runs),
    }


def bench_size(world: World, *, top_up: bool) -> dict[str, Any]:
    n = world.n
    log(f"N={n}: seeding {n} namespaces ({world.build_percent} % with an Image) and {SOURCES} sources")
    seeded = seed(world)
    log(f"N={n}: seeded {seeded['objectsCreated']} objects in {seeded['seconds']}s ({seeded['perSecond']}/s)")
    expected_targets = world.build_namespaces
    runs: dict[str, Any] = {}

    runs["initial"] = run_job(world, "initial")
    objects = list_objects(world)
    runs["steady"] = run_job(world, "steady")
    runs["steady"]["objectsListed"] = objects
    runs["steady"]["expectedListRequests"] = expected_list_pages(objects)
    inproc = steady_inprocess(world)
    runs["steady"]["inProcessExecute"] = inproc
    log(f"N={n} steady in this process (execute): median {inproc['medianSeconds']}s of {STEADY_REPEATS}")

    edited = world.source_names[0]
    edit_source(world, edited)
    runs["afterEdit"] = run_job(world, f"after editing {edited}")
    runs["afterEdit"]["editedSource"] = edited

    added = add_build_namespace(world)
    runs["newNamespace"] = run_job(world, f"after adding build namespace {added}")

    if top_up and world.build_percent < 100:
        added = add_missing_builds(world)
        log(f"N={n}: added an Image to the {added} namespaces without builds (all {n} are targets now)")
        runs["topUp"] = run_job(world, "top-up (new targets)")
        objects_all = list_objects(world)
        runs["steadyAllBuilds"] = run_job(world, "steady, every namespace a target")
        runs["steadyAllBuilds"]["objectsListed"] = objects_all
        runs["steadyAllBuilds"]["expectedListRequests"] = expected_list_pages(objects_all)
        runs["steadyAllBuilds"]["inProcessExecute"] = steady_inprocess(world)
    return {
        "n": n,
        "buildNamespacesSeeded": expected_targets,
        "seed": seeded,
        "controlPlaneRssMiB": world.cp_rss(),
        "runs": runs,
    }


# --- levers -----------------------------------------------------------------------------------

# Steady-state levers: each a worker spec (patches applied in the child). The "before" of every pair
# is the baseline worker run (same harness, no patch), measured interleaved with the others.
STEADY_LEVERS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "copies LIST limit=5000": {"patches": {"copies_limit": 5000}},
    "resourceVersion=0 LISTs": {"patches": {"rv0": True}},
    "full (not metadata-only) build LISTs": {"patches": {"builds_full": True}},
    "proposed: prefetch the next page": {"patches": {"prefetch": True}},
    "proposed: Source.digest cached": {"patches": {"digest_cache": True}},
    "proposed: desired metadata once per source": {"patches": {"desired_cache": True}},
    "proposed: sort keys by (namespace, name)": {"patches": {"sort_key": True}},
    "proposed: -o json one action per line": {"patches": {"json_lines": True}},
    "proposed: gc.freeze() after imports": {"patches": {"gc_freeze": True}},
    "proposed: gc.freeze() + gc threshold 10000": {"patches": {"gc_freeze_threshold": 10000}},
    "new dependency: orjson for responses": {"patches": {"orjson": True}},
    "proposed: digest + gc.freeze()": {"patches": {"digest_cache": True, "gc_freeze": True}},
    "proposed: digest + gc.freeze() + JSON lines": {
        "patches": {"digest_cache": True, "gc_freeze": True, "json_lines": True}
    },
    "proposed: ... + orjson": {
        "patches": {"digest_cache": True, "gc_freeze": True, "json_lines": True, "orjson": True}
    },
}

# After one new build namespace: read_occupants lists every Secret with a copy's name.
NEW_NAMESPACE_LEVERS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "proposed: occupant LISTs metadata-only, limit 5000": {"patches": {"occupants_metadata": True}},
    "proposed: ... and without our own copies": {"patches": {"occupants_exclude_own": True}},
}
NEW_NAMESPACE_REPEATS = 2

# Initial-sync levers: concurrency and connection pool (syncjob sets pool = max(concurrency, 4)),
# logging, and the client's per-request overhead. Each run: a fresh instance, LEVER_SCOPE namespaces.
INITIAL_LEVERS: list[tuple[str, list[str], dict[str, Any]]] = [
    ("concurrency 8, pool 8 (default)", ["--concurrency", "8"], {}),
    ("concurrency 8, pool 2", ["--concurrency", "8"], {"pool": 2}),
    ("concurrency 4, pool 4", ["--concurrency", "4"], {}),
    ("concurrency 16, pool 16", ["--concurrency", "16"], {}),
    ("concurrency 8, --log-level WARNING", ["--concurrency", "8", "--log-level", "WARNING"], {}),
    ("proposed: log results from the main thread", ["--concurrency", "8"], {"log_main_thread": True}),
    ("proposed: requests straight to urllib3", ["--concurrency", "8"], {"direct_http": True}),
    ("proposed: gc.freeze() after imports", ["--concurrency", "8"], {"gc_freeze": True}),
]
INITIAL_REPEATS = 2


def lever_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    first = runs[0]
    worker = first.get("worker") or {}
    return {
        "repeats": len(runs),
        # The minimum: the machine is shared (see otherCpuCores), and noise only ever adds time.
        "inProcessSeconds": min(r["inProcessSeconds"] for r in runs),
        "inProcessSecondsMedian": round(statistics.median(r["inProcessSeconds"] for r in runs), 3),
        "inProcessSecondsAll": [r["inProcessSeconds"] for r in runs],
        "otherCpuCoresAll": [r["otherCpuCores"] for r in runs],
        "processSeconds": min(r["processSeconds"] for r in runs),
        "peakRssMiB": round(statistics.median(r["peakRssMiB"] for r in runs), 1),
        "jobCpuSeconds": round(statistics.median(r["jobCpuSeconds"] for r in runs), 2),
        "clientRequests": first["clientRequests"],
        "serverRequests": first["server"]["requests"],
        "listsServedFrom": first["server"]["listsServedFrom"],
        "etcdRequests": first["server"]["etcdRequests"],
        "writes": first["writes"],
        "apiserverCpuSeconds": round(
            statistics.median(r["controlPlaneCpuSeconds"].get("kube-apiserver", 0.0) for r in runs), 2
        ),
        "listBytes": worker.get("listBytes"),
        "phases": worker.get("phases"),
        "calls": worker.get("calls"),
    }


def lever_available(spec: dict[str, Any]) -> bool:
    if "orjson" in (spec.get("patches") or {}):
        try:
            import orjson  # noqa: F401
        except ImportError:
            return False
    return True


def steady_levers(world: World) -> dict[str, Any]:
    levers = {name: spec for name, spec in STEADY_LEVERS.items() if lever_available(spec)}
    skipped = sorted(set(STEADY_LEVERS) - set(levers))
    if skipped:
        log(f"skipping {skipped}: orjson is not installed (.venv/bin/pip install orjson to measure it)")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in levers}
    for repeat in range(LEVER_REPEATS):
        for name, spec in levers.items():
            runs[name].append(run_job(world, f"steady lever {name} #{repeat + 1}", spec=spec, quiet=True))
    out = {name: lever_summary(r) for name, r in runs.items()}
    for name, s in out.items():
        log(
            f"N={world.n} steady lever {name}: {s['inProcessSeconds']}s in-process, {s['peakRssMiB']} MiB, "
            f"requests {s['clientRequests']}"
        )
    return out


def new_namespace_levers(world: World) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in NEW_NAMESPACE_LEVERS}
    for repeat in range(NEW_NAMESPACE_REPEATS):
        for name, spec in NEW_NAMESPACE_LEVERS.items():
            added = add_build_namespace(world)
            runs[name].append(run_job(world, f"new-namespace lever {name} #{repeat + 1} ({added})", spec=spec))
    return {name: lever_summary(r) for name, r in runs.items()}


COMPARE_REPEATS = {"steady": 5, "newNamespace": 3, "initial": 2}


def compare_trees(world: World, other: Path, first_k: int) -> tuple[dict[str, Any], int]:
    """This tree's syncjob against another checkout's (e.g. one with proposed changes), as plain
    `python -m syncjob` processes, interleaved: steady state, one new build namespace, and an
    initial sync of a fresh instance over LEVER_SCOPE namespaces."""
    trees = {"this tree": ROOT, f"other: {other}": other.resolve()}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {t: {k: [] for k in COMPARE_REPEATS} for t in trees}
    for repeat in range(COMPARE_REPEATS["steady"]):
        for tree, root in trees.items():
            runs[tree]["steady"].append(run_job(world, f"{tree} steady #{repeat + 1}", quiet=True, root=root))
    for repeat in range(COMPARE_REPEATS["newNamespace"]):
        for tree, root in trees.items():
            added = add_build_namespace(world)
            label = f"{tree} new namespace {added} #{repeat + 1}"
            runs[tree]["newNamespace"].append(run_job(world, label, quiet=True, root=root))
    include = f"{world.ns_prefix}-00*" if world.n > LEVER_SCOPE else (world.include or f"{world.ns_prefix}-*")
    k = first_k
    for repeat in range(COMPARE_REPEATS["initial"]):
        for tree, root in trees.items():
            source_ns, instance, _ = fresh_instance(world, k)
            k += 1
            args = world.job_args(instance=instance, source_ns=source_ns, include=include)
            runs[tree]["initial"].append(run_job(world, f"{tree} initial #{repeat + 1}", args, quiet=True, root=root))
    out: dict[str, Any] = {}
    for tree, by_scenario in runs.items():
        out[tree] = {}
        for scenario, scenario_runs in by_scenario.items():
            summary = lever_summary(scenario_runs)
            rates = [r["writesPerSecond"] for r in scenario_runs]
            summary["writesPerSecond"] = max(rates)
            summary["writesPerSecondAll"] = rates
            out[tree][scenario] = summary
            log(f"N={world.n} compare {tree} {scenario}: min {summary['inProcessSeconds']}s "
                f"{summary['inProcessSecondsAll']}, {summary['peakRssMiB']} MiB, {summary['clientRequests']}, "
                f"{rates} writes/s")  # fmt: skip
    return out, k


def fresh_instance(world: World, k: int) -> tuple[str, str, list[str]]:
    """A source namespace, instance and source names of their own: an initial sync on a warm cluster."""
    source_ns = f"{world.ns_prefix}-lv{k}"
    instance = f"{world.instance}-lv{k}"
    names = [f"lv{k}-regcred-{i}" for i in range(SOURCES)]
    make_sources(world.http, source_ns, names)
    return source_ns, instance, names


def initial_levers(world: World, first_k: int) -> tuple[dict[str, Any], int]:
    scope = min(world.n, LEVER_SCOPE)
    include = f"{world.ns_prefix}-00*" if world.n > LEVER_SCOPE else (world.include or f"{world.ns_prefix}-*")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in INITIAL_LEVERS}
    k = first_k
    for repeat in range(INITIAL_REPEATS):
        for name, flags, patches in INITIAL_LEVERS:
            source_ns, instance, _ = fresh_instance(world, k)
            k += 1
            args = [*world.job_args(instance=instance, source_ns=source_ns, include=include), *flags]
            label = f"initial lever {name} #{repeat + 1}"
            runs[name].append(run_job(world, label, args, spec={"patches": patches}, quiet=True))
    out: dict[str, Any] = {}
    for name, lever_runs in runs.items():
        summary = lever_summary(lever_runs)
        rates = [r["writesPerSecond"] for r in lever_runs]
        workers = [r.get("worker") or {} for r in lever_runs]
        summary.update({
            "writesPerSecond": max(rates),
            "writesPerSecondMedian": round(statistics.median(rates), 1),
            "writesPerSecondAll": rates,
            "targets": lever_runs[0]["targets"],
            "connectionsOpened": workers[0].get("connectionsOpened"),
            "poolFullDiscards": workers[0].get("poolFullDiscards"),
            "controlPlaneCpuSeconds": lever_runs[0]["controlPlaneCpuSeconds"],
            "jobCpuMsPerWrite": round(
                1000 * statistics.median(r["jobCpuSeconds"] / r["writes"] for r in lever_runs if r["writes"]), 2
            ),
        })  # fmt: skip
        out[name] = summary
        log(f"N={world.n} initial lever {name} ({scope} namespaces): {lever_runs[0]['writes']} writes, "
            f"{rates} writes/s, {summary['peakRssMiB']} MiB, {summary['connectionsOpened']} connections, "
            f"{summary['jobCpuMsPerWrite']} ms job CPU per write")  # fmt: skip
    return out, k


def steady_profiles(world: World, results_stem: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        import pyinstrument  # noqa: F401

        steady_profiler = "pyinstrument"
    except ImportError:
        steady_profiler = "cprofile"
    for label, profiler in (
        ("steady", steady_profiler),
        ("steady-cprofile", "cprofile"),
        ("steady-memory", "tracemalloc"),
    ):
        run = run_job(world, f"profile {label}", spec={"profile": profiler})
        out[label] = profile_entry(run, profiler, results_stem, label)
    return out


def initial_profile(world: World, k: int, results_stem: Path) -> tuple[dict[str, Any], int]:
    """The initial sync at full scope on a fresh instance (every build namespace gets M new copies),
    under cProfile in the main thread and every apply thread."""
    source_ns, instance, _ = fresh_instance(world, k)
    args = world.job_args(instance=instance, source_ns=source_ns)
    run = run_job(world, "profile initial (cProfile, all threads)", args, spec={"profile": "cprofile"})
    return profile_entry(run, "cprofile", results_stem, "initial"), k + 1


def profile_entry(run: dict[str, Any], profiler: str, results_stem: Path, label: str) -> dict[str, Any]:
    worker = run.get("worker") or {}
    entry = {
        "profiler": profiler,
        "inProcessSeconds": run["inProcessSeconds"],
        "processSeconds": run["processSeconds"],
        "peakRssMiB": run["peakRssMiB"],
        "jobCpuSeconds": run["jobCpuSeconds"],
        "writes": run["writes"],
        "clientRequests": run["clientRequests"],
        "controlPlaneCpuSeconds": run["controlPlaneCpuSeconds"],
        "phases": worker.get("phases"),
        "calls": worker.get("calls"),
        "listBytes": worker.get("listBytes"),
        "memory": worker.get("memory"),
    }
    text = worker.get("profile")
    if text and label:
        path = results_stem.with_name(f"{results_stem.name}-profile-{label}.txt")
        path.write_text(text)
        entry["profileFile"] = str(path.relative_to(ROOT))
        entry["top"] = worker.get("top")
    return entry


# --- targets ----------------------------------------------------------------------------------


@dataclass
class Target:
    what: str
    met: bool | None  # None: not measured in this run
    detail: str
    n: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "target": self.what, "met": self.met, "detail": self.detail}


def check_targets(sizes: list[dict[str, Any]]) -> list[Target]:
    out: list[Target] = []
    for size in sizes:
        n, runs = size["n"], size["runs"]
        for key in ("steady", "steadyAllBuilds"):
            if key not in runs:
                continue
            steady = runs[key]
            reqs = steady["clientRequests"]
            lists, discovery = int(reqs.get("list", 0)), int(reqs.get("discovery", 0))
            # Per run and SecretSync, besides the LISTs: GET the SecretSync (--policy) and the proof key, and
            # PATCH the SecretSync's status. Anything beyond that is a finding.
            per_run = {"get": 2, "status": 1}
            others = {k: v for k, v in reqs.items() if k not in ("list", "discovery") and v > per_run.get(k, 0)}
            expected = steady["expectedListRequests"]
            slack = trailing_pages_allowed(steady["objectsListed"])
            server_lists = steady["server"]["requests"].get("LIST", 0)
            which = "steady" if key == "steady" else "steady (every namespace a target)"
            out.append(
                Target(
                    "steady-state requests <= 3 + K LISTs plus extra pages (K=2)",
                    lists <= expected + slack and not others,
                    f"{which}: {lists} LIST requests (server saw {server_lists}) for {steady['objectsListed']} objects "
                    f"= {expected} pages of {PAGE}"
                    + (f" (+{slack} empty last page allowed)" if slack else "")
                    + f"; other verbs beyond GET SecretSync + GET proof key + PATCH status: {others or 'none'}; "
                    + f"plus {discovery} discovery GET(s) "
                    "(reported separately, not counted)",
                    n,
                )
            )
            server_writes = sum(steady["server"]["requests"].get(v, 0) for v in SERVER_WRITE_VERBS)
            inproc_writes = steady.get("inProcessExecute", {}).get("writes", 0)
            out.append(
                Target(
                    "0 writes in the steady state",
                    steady["writes"] == 0 and server_writes == 0 and inproc_writes == 0,
                    f"{which}: client {steady['writes']}, server {server_writes}, in-process runs {inproc_writes}",
                    n,
                )
            )
            if n == 5000:
                copies = steady["objectsListed"]["copies"]
                secs, rss = steady["inProcessSeconds"], steady["peakRssMiB"]
                warm = steady.get("inProcessExecute", {}).get("medianSeconds")
                out.append(
                    Target(
                        "steady state at N=5000 <= 2 s in-process",
                        secs <= 2.0,
                        f"{which}, {copies} copies: {secs}s (execute() inside `python -m syncjob`); "
                        f"{warm}s median of execute() in the bench process; {steady['processSeconds']}s whole process",
                        n,
                    )
                )
                out.append(
                    Target(
                        "steady state at N=5000 <= 150 MB peak RSS",
                        rss * 1.048576 <= 150.0,
                        f"{which}, {copies} copies: {rss} MiB = {rss * 1.048576:.0f} MB peak RSS of the job process",
                        n,
                    )
                )
        initial = runs["initial"]
        want = initial["targets"] * SOURCES + 1  # and the proof key, made by the first run in a source namespace
        out.append(
            Target(
                "initial sync writes == N_targets x M (+ the proof key)",
                initial["writes"] == want and initial["targets"] == size["buildNamespacesSeeded"],
                f"{initial['writes']} writes; {initial['targets']} targets "
                f"(seeded {size['buildNamespacesSeeded']} build namespaces) x {SOURCES} + 1 = {want}",
                n,
            )
        )
        out.append(
            Target(
                "initial sync >= 300 writes/s at concurrency 8",
                initial["writesPerSecond"] >= 300,
                f"{initial['writesPerSecond']} writes/s = {initial['writes']} writes / {initial['inProcessSeconds']}s "
                "(the whole execute(), reads included)",
                n,
            )
        )
        edit = runs["afterEdit"]
        updates = int(edit["clientRequests"].get("update", 0))
        out.append(
            Target(
                "after one source edit, writes == that source's targets only",
                edit["writes"] == edit["targets"] and updates == edit["writes"],
                f"{edit['writes']} writes ({updates} updates) for {edit['targets']} targets of {edit['editedSource']}",
                n,
            )
        )
    if not any(s["n"] == 5000 for s in sizes):
        out.append(Target("steady state at N=5000 <= 2 s and <= 150 MB", None, "N=5000 not in this run"))
    return out


# --- output -----------------------------------------------------------------------------------


def short_requests(requests: dict[str, int]) -> str:
    order = (
        "list",
        "discovery",
        "get",
        "create",
        "update",
        "delete",
        "patch",
        "LIST",
        "GET",
        "POST",
        "PUT",
        "DELETE",
        "PATCH",
    )
    return " ".join(f"{k}={requests[k]}" for k in order if requests.get(k)) or "-"


TABLE_RUNS = (
    ("initial", "initial sync"),
    ("steady", "steady state"),
    ("afterEdit", "after 1 source edit"),
    ("newNamespace", "1 new build namespace"),
    ("topUp", "top-up to 100 % builds"),
    ("steadyAllBuilds", "steady, 100 % builds"),
)


def table_rows(sizes: list[dict[str, Any]]) -> list[list[str]]:
    rows = [
        [
            "N",
            "run",
            "targets",
            "copies",
            "in-proc s",
            "process s",
            "RSS MiB",
            "job CPU s",
            "client requests",
            "server requests",
            "writes",
            "writes/s",
            "apiserver+etcd CPU s",
            "others (cores)",
        ]
    ]
    for size in sizes:
        for key, label in TABLE_RUNS:
            run = size["runs"].get(key)
            if run is None:
                continue
            cp = run["controlPlaneCpuSeconds"]
            copies = run.get("objectsListed", {}).get("copies", run["targets"] * SOURCES)
            inproc = f"{run['inProcessSeconds']:.2f}"
            if "inProcessExecute" in run:
                inproc += f" ({run['inProcessExecute']['medianSeconds']:.2f})"
            rows.append(
                [
                    str(size["n"]),
                    label,
                    str(run["targets"]),
                    str(copies),
                    inproc,
                    f"{run['processSeconds']:.2f}",
                    f"{run['peakRssMiB']:.0f}",
                    f"{run['jobCpuSeconds']:.2f}",
                    short_requests(run["clientRequests"]),
                    short_requests(run["server"]["requests"]),
                    str(run["writes"]),
                    f"{run['writesPerSecond']:.0f}" if run["writes"] else "-",
                    f"{cp.get('kube-apiserver', 0):.1f}+{cp.get('etcd', 0):.1f}" if cp else "n/a",
                    f"{run['otherCpuCores']:.1f}",
                ]
            )
    return rows


def render(rows: list[list[str]], markdown: bool = False) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    if markdown:
        lines = ["| " + " | ".join(rows[0]) + " |", "|" + "|".join("---" for _ in rows[0]) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(lines)
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def lever_rows(levers: dict[str, Any]) -> list[list[str]]:
    rows = [["lever", "in-proc s (min)", "median", "process s", "RSS MiB", "job CPU s", "apiserver CPU s",
             "client requests", "writes/s", "conns", "others (cores)"]]  # fmt: skip
    for group in ("steady", "newNamespace", "initial"):
        for name, s in (levers.get(group) or {}).items():
            rows.append([
                f"{group}: {name}", f"{s['inProcessSeconds']:.3f}", f"{s['inProcessSecondsMedian']:.3f}",
                f"{s['processSeconds']:.2f}", f"{s['peakRssMiB']:.0f}", f"{s['jobCpuSeconds']:.2f}",
                f"{s['apiserverCpuSeconds']:.2f}", short_requests(s["clientRequests"]),
                f"{s['writesPerSecond']:.0f}" if s.get("writesPerSecond") else "-",
                str(s.get("connectionsOpened") if s.get("connectionsOpened") is not None else "-"),
                f"{max(s['otherCpuCoresAll']):.1f}",
            ])  # fmt: skip
    return rows


def breakdown(title: str, lever: dict[str, Any] | None) -> list[str]:
    """Phase and request timings of a worker run, for the console."""
    if not lever or not lever.get("phases"):
        return []
    lines = [f"{title} (in-process {lever['inProcessSeconds']}s):"]
    for name, p in sorted(lever["phases"].items(), key=lambda item: -item[1]["seconds"]):
        lines.append(f"  {p['seconds']:8.3f}s  {name} ({p['calls']} calls)")
    for name, p in sorted((lever.get("calls") or {}).items(), key=lambda item: -item[1]["seconds"])[:8]:
        size = (lever.get("listBytes") or {}).get(name, 0)
        lines.append(f"  {p['seconds']:8.3f}s  request: {name} x{p['calls']}, {size / 2**20:.1f} MiB of JSON")
    return lines


def machine(world: World | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpusUsable": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpuModel"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memoryGiB"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    for package in ("kubernetes", "urllib3", "tenacity", "python-json-logger", "pyinstrument"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            info[f"{package}Version"] = importlib.metadata.version(package)
    if world is not None:
        with contextlib.suppress(Exception):  # a description, never a failure
            info["apiserverVersion"] = world.http.json("GET", "/version").get("gitVersion")
        if world.plane is not None:
            from tests.controlplane.cluster import pinned_versions

            info["kubernetesPinned"], info["etcdVersion"] = pinned_versions()
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "syncjob"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        info["gitCommit"] = commit.stdout.strip()
        info["syncjobDirty"] = bool(dirty.stdout.strip())
    return info


# --- the worker: one syncjob run in a child process, patched ----------------------------------


class Phases:
    """Wall time per phase of a run (wrappers around syncjob's functions), thread-safe."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.count: Counter[str] = Counter()
        self.lock = threading.Lock()

    def add(self, name: str, seconds: float) -> None:
        with self.lock:
            self.seconds[name] += seconds
            self.count[name] += 1

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - started)

        return wrapper

    def as_dict(self) -> dict[str, Any]:
        return {k: {"seconds": round(v, 4), "calls": self.count[k]} for k, v in sorted(self.seconds.items())}


def _call_key(verb: str, what: str) -> str:
    if verb != "list":
        return verb
    return re.sub(r"Secrets named \S+ ", "Secrets named <name> ", what)


def _wrap_attr(owner: Any, name: str, label: str, phases: Phases, missing: list[str]) -> None:
    """Time owner.name under `label`; a name that a refactor removed is reported, not fatal."""
    fn = getattr(owner, name, None)
    if fn is None:
        missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
        return
    setattr(owner, name, phases.wrap(label, fn))


def instrument(report: dict[str, Any]) -> Callable[[], None]:
    """Always on in the worker: wall time per phase and per request kind, response bytes, JSON
    parse time, TLS connections opened and connections dropped from a full pool."""
    import logging

    import urllib3.connectionpool

    import syncjob.kube.client as kc
    import syncjob.kube.read as kr
    from syncjob import runner

    phases, calls = Phases(), Phases()
    list_bytes: Counter[str] = Counter()
    local = threading.local()
    missing: list[str] = []
    for owner, name, label in (
        (runner, "make_kube", "connect (kubeconfig, client)"),
        (runner, "read_snapshot", "read snapshot (LISTs)"),
        (runner, "read_occupants", "read occupants (LISTs by name)"),
        (runner.Planner, "plan", "plan"),
        (runner.Applier, "apply", "apply (writes, logging)"),
        (runner, "render_json", "render JSON (-o json)"),
        (runner, "log_event", "log_event (summed over threads)"),
        (kr, "copy_from", "copy_from incl. digest (inside read)"),
    ):
        _wrap_attr(owner, name, label, phases, missing)

    original_call = kc.Kube.call

    def call(self: Any, verb: str, method: str, path: str, **kwargs: Any) -> Any:
        local.key = _call_key(verb, str(kwargs.get("what", "")))
        started = time.perf_counter()
        try:
            return original_call(self, verb, method, path, **kwargs)
        finally:
            calls.add(local.key, time.perf_counter() - started)

    kc.Kube.call = call

    inner_loads = kc.json.loads  # the stdlib's, or what a lever put there

    class TimedJson:
        dumps = staticmethod(json.dumps)

        @staticmethod
        def loads(raw: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner_loads(raw)
            finally:
                key = getattr(local, "key", "?")
                with calls.lock:
                    list_bytes[key] += len(raw)
                phases.add("JSON parse (inside requests)", time.perf_counter() - started)

    kc.json = TimedJson  # type: ignore[assignment]

    opened: Counter[str] = Counter()
    original_new_conn = urllib3.connectionpool.HTTPSConnectionPool._new_conn

    def new_conn(self: Any) -> Any:
        with calls.lock:
            opened["n"] += 1
        return original_new_conn(self)

    urllib3.connectionpool.HTTPSConnectionPool._new_conn = new_conn

    class FullPool(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "pool is full" in record.getMessage():
                with calls.lock:
                    opened["discarded"] += 1

    logging.getLogger("urllib3.connectionpool").addHandler(FullPool(logging.WARNING))

    def finalise() -> None:
        report["phases"] = phases.as_dict()
        report["calls"] = calls.as_dict()
        report["listBytes"] = dict(sorted(list_bytes.items()))
        report["connectionsOpened"] = opened["n"]
        report["poolFullDiscards"] = opened["discarded"]
        report["notInstrumented"] = missing

    return finalise


# Levers: each patches syncjob in the worker process only. "Proposed" ones stand in for a change to
# syncjob/ (the diff is in docs/performance.md); the rest are settings syncjob could choose.


def lever_list_pages(copies_limit: int = 0, list_limit: int = 0, rv0: bool = False) -> None:
    """Kube.list_pages with another page size (for the copies LIST or for every LIST) and/or
    resourceVersion=0 on the first page (served from the watch cache, possibly stale)."""
    import syncjob.kube.client as kc

    original_list_pages, original_call = kc.Kube.list_pages, kc.Kube.call

    def list_pages(self: Any, path: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        if list_limit:
            kwargs["limit"] = list_limit
        if copies_limit and path == "/api/v1/secrets" and kwargs.get("label_selector"):
            kwargs["limit"] = copies_limit
        return original_list_pages(self, path, **kwargs)

    def call(self: Any, verb: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        query = kwargs.get("query") or []
        if verb == "list" and not any(key == "continue" for key, _ in query):
            kwargs["query"] = [*query, ("resourceVersion", "0")]
        return original_call(self, verb, method, path, **kwargs)

    kc.Kube.list_pages = list_pages  # type: ignore[method-assign]
    if rv0:
        kc.Kube.call = call  # type: ignore[method-assign]


def lever_builds_full() -> None:
    """Whole build objects instead of PartialObjectMetadataList."""
    import syncjob.kube.read as kr

    kr.METADATA_ONLY = "application/json"


def lever_pool(size: int) -> None:
    """The connection pool's maxsize (syncjob: max(concurrency, 4))."""
    from kubernetes import client as k8s

    from syncjob import runner

    original = runner.load_api_client

    def load_api_client(kubeconfig: Any, context: str, pool_size: int) -> Any:
        api = original(kubeconfig, context, pool_size)
        api.configuration.connection_pool_maxsize = size
        return k8s.ApiClient(api.configuration)

    runner.load_api_client = load_api_client


def lever_digest_cache() -> None:
    """Proposed (model.py): Source.digest computed once per source, not once per use."""
    from syncjob.model import Source, content_digest

    prop = functools.cached_property(lambda self: content_digest(self.type, self.data))
    prop.__set_name__(Source, "digest")
    Source.digest = prop  # type: ignore[assignment, method-assign]


def lever_desired_cache() -> None:
    """Proposed (plan.py): a source's desired labels and annotations computed once per run."""
    import syncjob.plan as kp

    for name in ("desired_labels", "desired_annotations"):
        original = getattr(kp, name)
        cache: dict[tuple[int, int], dict[str, str]] = {}

        def cached(source: Any, settings: Any, _original: Any = original, _cache: Any = cache) -> dict[str, str]:
            key = (id(source), id(settings))
            if key not in _cache:
                _cache[key] = _original(source, settings)
            return dict(_cache[key])

        setattr(kp, name, cached)


def lever_sort_key() -> None:
    """Proposed (plan.py): sort keys with key=attrgetter("namespace", "name") (C tuple compares)
    instead of the dataclass's generated Ref.__lt__ (a Python call per comparison)."""
    import builtins
    import operator

    import syncjob.plan as kp
    from syncjob.model import Ref

    by_ref = operator.attrgetter("namespace", "name")

    def fast_sorted(iterable: Any, /, *, key: Any = None, reverse: bool = False) -> list[Any]:
        items = list(iterable)
        if key is None and items and type(items[0]) is Ref:
            key = by_ref
        return builtins.sorted(items, key=key, reverse=reverse)

    kp.sorted = fast_sorted  # type: ignore[attr-defined]


def lever_json_lines() -> None:
    """Proposed (report.py): -o json with one action per line. json.dumps(indent=2) runs CPython's
    pure-Python encoder; without indent the C encoder does the work."""
    from syncjob import report, runner

    def render_json(results: Any, summary: Any) -> str:
        head = json.dumps(summary.as_dict(), indent=2).replace("\n", "\n  ")
        actions = ",\n".join("    " + json.dumps(report.result_dict(r)) for r in results)
        return '{\n  "summary": ' + head + ',\n  "actions": [\n' + actions + ("\n" if actions else "") + "  ]\n}\n"

    runner.render_json = render_json


def lever_log_main_thread() -> None:
    """Proposed (apply.py): log each write's result from the main thread, not from the 8 apply
    threads (which then queue on the log handler's lock). Here: after all writes; in syncjob: as
    they complete (concurrent.futures.as_completed)."""
    from syncjob import runner

    original = runner.Applier.apply

    def apply(self: Any, actions: Any, on_result: Any = None) -> Any:
        results = original(self, actions)
        if on_result is not None:
            for result in results:
                if result.action.kind.writes:
                    on_result(result)
        return results

    runner.Applier.apply = apply


def lever_direct_http() -> None:
    """Proposed (kube/client.py): send requests with the ApiClient's urllib3 pool and auth
    settings directly, skipping ApiClient.call_api (sanitize_for_serialization of every body,
    parameter munging) - same TLS, pool, auth and errors."""
    import urllib.parse

    import urllib3
    from kubernetes.client.exceptions import ApiException
    from kubernetes.client.rest import RESTResponse

    import syncjob.kube.client as kc

    class Direct:
        def __init__(self, api: Any) -> None:
            self.api = api
            self.configuration = api.configuration
            self.pool = api.rest_client.pool_manager

        def call_api(self, path: str, method: str, *, query_params: Any = None, header_params: Any = None,
                     body: Any = None, auth_settings: Any = None, _preload_content: bool = False,
                     _request_timeout: Any = None) -> Any:  # fmt: skip
            url = self.configuration.host + path
            if query_params:
                url += "?" + urllib.parse.urlencode(query_params)
            headers = dict(header_params or {})
            for name in auth_settings or ():
                auth = self.configuration.auth_settings().get(name)
                if auth and auth.get("value"):
                    headers[auth["key"]] = auth["value"]
            data = json.dumps(body).encode() if body is not None else None
            connect, read = _request_timeout or (None, None)
            response = self.pool.request(
                method, url, body=data, headers=headers, preload_content=False,
                timeout=urllib3.Timeout(connect=connect, read=read), retries=False,
            )  # fmt: skip
            if not 200 <= response.status <= 299:
                error = ApiException(http_resp=RESTResponse(response))
                error.body = error.body.decode("utf-8") if isinstance(error.body, bytes) else error.body
                raise error
            return response

    original_init = kc.Kube.__init__

    def init(self: Any, api: Any, **kwargs: Any) -> None:
        original_init(self, Direct(api), **kwargs)

    kc.Kube.__init__ = init  # type: ignore[method-assign]


def lever_prefetch() -> None:
    """Proposed (kube/client.py): request the next page while the current one is processed (one
    page ahead, in a helper thread), so the API server encodes page k+1 while we parse page k."""
    import syncjob.kube.client as kc

    def list_pages(self: Any, path: str, *, what: str, label_selector: str = "", field_selector: str = "",
                   accept: str = "application/json", limit: int = PAGE) -> Iterator[dict[str, Any]]:  # fmt: skip
        def fetch(token: str) -> dict[str, Any]:
            query = kc.list_query(limit, label_selector, field_selector, token)
            page: dict[str, Any] = self.call("list", "GET", path, what=what, query=query, accept=accept)
            return page

        with ThreadPoolExecutor(1, thread_name_prefix="prefetch") as pool:
            future = pool.submit(fetch, "")
            while True:
                page = future.result()
                token = (page.get("metadata") or {}).get("continue") or ""
                if token:
                    future = pool.submit(fetch, token)
                yield from page.get("items") or []
                if not token:
                    return

    kc.Kube.list_pages = list_pages


def lever_occupants(exclude_own: bool) -> None:
    """Proposed (kube/read.py, read_occupants): the by-name LISTs ask for metadata only (an occupant
    needs no data) in pages of 5000, and with exclude_own also for `syncjob.dev/instance!=<instance>`,
    so the server leaves out our own copies (today every copy of that name, data included, is read
    and dropped client-side). A Secret the selector hides that still blocks a create gets a 409,
    which the applier already answers by reading it and planning again."""
    import syncjob.kube.read as kr
    from syncjob import runner
    from syncjob.model import INSTANCE_LABEL

    original_listing, original_read = kr._listing, runner.read_occupants
    state: dict[str, str] = {}

    def read_occupants(kube: Any, instance: str, keys: Any) -> Any:
        state["instance"] = instance
        return original_read(kube, instance, keys)

    def listing(kube: Any, path: str, what: str, rbac: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        if path == "/api/v1/secrets" and str(kwargs.get("field_selector", "")).startswith("metadata.name="):
            kwargs.update(accept=METADATA_ONLY, limit=5000)
            if exclude_own and state.get("instance"):
                kwargs["label_selector"] = f"{INSTANCE_LABEL}!={state['instance']}"
        return original_listing(kube, path, what, rbac, **kwargs)

    kr._listing = listing
    runner.read_occupants = read_occupants


def lever_gc(threshold: int = 0) -> None:
    """Proposed (cli.py, once the kube layer is imported): gc.freeze() - the ~100k objects the
    kubernetes client creates at import move to a permanent generation, so the cyclic collector,
    which runs every few hundred allocations while JSON pages are parsed, stops walking them.
    With threshold: also gc.set_threshold(threshold) (fewer young-generation collections)."""
    import gc

    from syncjob import runner

    original = runner.execute

    def execute(*args: Any, **kwargs: Any) -> Any:
        gc.freeze()
        if threshold:
            gc.set_threshold(threshold)
        return original(*args, **kwargs)

    runner.execute = execute  # cli.main imports execute from runner when it is called


def lever_orjson() -> None:
    """A new dependency (orjson, C): parse responses with orjson.loads. Skipped if not installed."""
    import orjson

    import syncjob.kube.client as kc

    class Orjson:
        loads = staticmethod(orjson.loads)
        dumps = staticmethod(json.dumps)

    kc.json = Orjson  # type: ignore[assignment]


LEVERS: dict[str, Callable[..., None]] = {
    "gc_freeze": lambda v: lever_gc(),
    "gc_freeze_threshold": lambda v: lever_gc(int(v)),
    "orjson": lambda v: lever_orjson(),
    "prefetch": lambda v: lever_prefetch(),
    "occupants_metadata": lambda v: lever_occupants(exclude_own=False),
    "occupants_exclude_own": lambda v: lever_occupants(exclude_own=True),
    "copies_limit": lambda v: lever_list_pages(copies_limit=int(v)),
    "list_limit": lambda v: lever_list_pages(list_limit=int(v)),
    "rv0": lambda v: lever_list_pages(rv0=bool(v)),
    "builds_full": lambda v: lever_builds_full(),
    "pool": lambda v: lever_pool(int(v)),
    "digest_cache": lambda v: lever_digest_cache(),
    "desired_cache": lambda v: lever_desired_cache(),
    "sort_key": lambda v: lever_sort_key(),
    "json_lines": lambda v: lever_json_lines(),
    "log_main_thread": lambda v: lever_log_main_thread(),
    "direct_http": lambda v: lever_direct_http(),
}


def worker_patch(spec: dict[str, Any], report: dict[str, Any]) -> Callable[[], None]:
    """The spec's levers, then the instrumentation around whatever they put in place."""
    for name, value in (spec.get("patches") or {}).items():
        LEVERS[name](value)
    return instrument(report)


class ThreadProfiles:
    """cProfile for the main thread and every apply thread, merged (cProfile sees one thread each)."""

    def __init__(self) -> None:
        import cProfile

        self.main = cProfile.Profile()
        self.threads: list[Any] = []
        self.local = threading.local()

    def install(self) -> None:
        import cProfile

        import syncjob.kube.apply as ka

        profiles, local = self.threads, self.local
        base = ka.ThreadPoolExecutor

        class ProfiledPool(base):  # type: ignore[misc, valid-type]
            def map(self, fn: Callable[..., Any], *iterables: Any, **kwargs: Any) -> Any:
                def profiled(*args: Any) -> Any:
                    profile = getattr(local, "profile", None)
                    if profile is None:
                        profile = local.profile = cProfile.Profile()
                        profiles.append(profile)
                    profile.enable()
                    try:
                        return fn(*args)
                    finally:
                        profile.disable()

                return super().map(profiled, *iterables, **kwargs)

        ka.ThreadPoolExecutor = ProfiledPool

    def text(self) -> tuple[str, list[dict[str, Any]]]:
        import pstats

        stats = pstats.Stats(self.main)
        for profile in self.threads:
            stats.add(profile)
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        out.write(f"cProfile, main thread + {len(self.threads)} apply threads merged (times summed over threads)\n")
        stats.sort_stats("tottime").print_stats(35)
        stats.sort_stats("cumulative").print_stats(45)
        top = []
        entries = stats.stats  # type: ignore[attr-defined]
        for (filename, line, func), (_, calls, tottime, cumtime, _) in sorted(
            entries.items(), key=lambda item: item[1][2], reverse=True
        )[:15]:
            where = filename.replace(str(ROOT) + "/", "").split("site-packages/")[-1]
            top.append(
                {
                    "function": f"{where}:{line}({func})",
                    "calls": calls,
                    "tottime": round(tottime, 3),
                    "cumtime": round(cumtime, 3),
                }
            )
        return out.getvalue(), top


def worker_main(spec_text: str, job_argv: list[str]) -> int:
    spec = json.loads(spec_text)
    report: dict[str, Any] = {"spec": spec}
    finalise = worker_patch(spec, report)
    from syncjob import cli

    profiler = spec.get("profile") or ""
    code = 0
    if profiler == "pyinstrument":
        from pyinstrument import Profiler

        pyi = Profiler(interval=0.0005)
        pyi.start()
        try:
            code = cli.main(job_argv)
        finally:
            pyi.stop()
            report["profile"] = pyi.output_text(unicode=False, color=False, show_all=False)
    elif profiler == "cprofile":
        profiles = ThreadProfiles()
        profiles.install()
        profiles.main.enable()
        try:
            code = cli.main(job_argv)
        finally:
            profiles.main.disable()
            report["profile"], report["top"] = profiles.text()
    elif profiler == "tracemalloc":
        code = traced_run(cli.main, job_argv, report)
    else:
        code = cli.main(job_argv)
    finalise()
    Path(spec["report"]).write_text(json.dumps(report))
    return code


def traced_run(main: Callable[[list[str]], int], job_argv: list[str], report: dict[str, Any]) -> int:
    """Python allocations: the peak, and the biggest holders while the plan and the snapshot are alive."""
    import tracemalloc

    from syncjob import runner

    original_plan = runner.Planner.plan
    memory: dict[str, Any] = {}

    def plan(self: Any) -> Any:
        result = original_plan(self)
        if "atPlan" not in memory:
            current, peak = tracemalloc.get_traced_memory()
            snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])
            memory["atPlan"] = {"currentMiB": round(current / 2**20, 1), "peakMiB": round(peak / 2**20, 1)}
            memory["topAtPlan"] = [
                {
                    "where": str(stat.traceback).replace(str(ROOT) + "/", "").split("site-packages/")[-1],
                    "MiB": round(stat.size / 2**20, 2),
                    "blocks": stat.count,
                }
                for stat in snapshot.statistics("lineno")[:12]
            ]
        return result

    runner.Planner.plan = plan
    tracemalloc.start()
    try:
        return main(job_argv)
    finally:
        current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        memory["end"] = {"currentMiB": round(current / 2**20, 1), "peakMiB": round(peak / 2**20, 1)}
        report["memory"] = memory


# --- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="N=500 only")
    parser.add_argument("--sizes", default="500,1000,5000", help="comma-separated N (default 500,1000,5000)")
    parser.add_argument(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None,
        help="use this cluster instead of starting the test control plane (default: KUBECONFIG)",
    )
    parser.add_argument("--context", default="", help="kubeconfig context")
    parser.add_argument("--build-percent", type=int, default=BUILD_PERCENT, help="namespaces with builds (90)")
    parser.add_argument("--no-levers", dest="levers", action="store_false", help="skip the lever pairs")
    parser.add_argument("--no-profile", dest="profile", action="store_false", help="skip the profiles")
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="TREE",
        help="also run another checkout's syncjob (e.g. with proposed changes) against this one",
    )
    parser.add_argument("--keep", action="store_true", help="leave the clusters / namespaces in place")
    parser.add_argument("--results", type=Path, default=RESULTS_DIR, help="where the JSON goes (bench/results)")
    args = parser.parse_args(argv)
    args.sizes_list = [500] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]
    return args


def main(argv: list[str]) -> int:
    if argv and argv[0] == WORKER:
        return worker_main(argv[1], argv[2:])
    args = parse_args(argv)
    started = time.monotonic()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    args.results.mkdir(parents=True, exist_ok=True)
    results_stem = args.results / stamp
    run_id = stamp[-7:-1].lower()
    sizes: list[dict[str, Any]] = []
    levers: dict[str, Any] = {}
    profile_out: dict[str, Any] = {}
    machine_info: dict[str, Any] = {}
    largest = max(args.sizes_list)
    log("measuring the import floor (python -c 'import syncjob.runner')")
    floor = import_floor()
    meter = LoadMeter(dict)
    with tempfile.TemporaryDirectory(prefix="syncjob-bench-") as workroot:
        for n in sorted(args.sizes_list):
            world = open_world(n, args, run_id, Path(workroot))
            meter.control_plane = world.cp_cpu
            world.meter = meter
            try:
                if not machine_info:
                    machine_info = machine(world)
                size = bench_size(world, top_up=n == largest)
                sizes.append(size)
                k = 1
                if n == largest and args.levers:
                    levers["n"] = n
                    levers["steady"] = steady_levers(world)
                if n == largest and args.profile:
                    profile_out = {"n": n, **steady_profiles(world, results_stem)}
                if n == largest and args.levers:
                    levers["newNamespace"] = new_namespace_levers(world)
                if n == largest and args.compare:
                    levers["n"] = n
                    levers["compare"], k = compare_trees(world, args.compare, k)
                if n == largest and args.levers:
                    # Last: each initial-sync lever leaves ~2,700 more Secrets in the cluster.
                    levers["initialScopeNamespaces"] = min(n, LEVER_SCOPE)
                    levers["initial"], k = initial_levers(world, k)
                if n == largest and args.profile:
                    profile_out["initial"], k = initial_profile(world, k, results_stem)
                size["controlPlaneRssMiBAtEnd"] = world.cp_rss()
            finally:
                close_world(world, args.keep)
    targets = check_targets(sizes)
    command = "bench/run.py " + " ".join(argv) if argv else "bench/run.py"
    doc = {
        "timestamp": stamp,
        "command": f".venv/bin/python {command}".strip(),
        "totalSeconds": round(time.monotonic() - started, 1),
        "machine": machine_info,
        "importFloor": floor,
        "settings": {
            "sources": SOURCES,
            "buildPercent": args.build_percent,
            "seedThreads": SEED_THREADS,
            "pageSize": PAGE,
            "concurrency": 8,
            "cluster": "external (--kubeconfig)" if args.kubeconfig else "fresh test control plane per N",
            "serverRequestsFilter": "apiserver_request_total summed by verb over resources secrets, namespaces, "
            "images.kpack.io, builds.kpack.io; discovery GETs are not in that metric (see authenticatedRequests)",
        },
        "sizes": sizes,
        "levers": levers,
        "profiles": profile_out,
        "targets": [t.as_dict() for t in targets],
        "table": table_rows(sizes),
    }
    out_path = results_stem.with_suffix(".json")
    out_path.write_text(json.dumps(doc, indent=2) + "\n")

    print()
    print(render(table_rows(sizes)))
    print(
        "\nin-proc s: execute() inside the job process (summary durationSeconds); in brackets the median of "
        f"{STEADY_REPEATS} execute() calls in the bench process. server requests: apiserver_request_total delta "
        "for secrets/namespaces/images/builds."
    )
    if levers.get("steady"):
        print(
            f"\nLevers at N={levers['n']} (steady: min and median of {LEVER_REPEATS}; initial: best of "
            f"{INITIAL_REPEATS}, {levers.get('initialScopeNamespaces')} namespaces, fresh instance each):"
        )
        print(render(lever_rows(levers)))
    if levers.get("compare"):
        rows = [["tree", "scenario", "in-proc s (min)", "median", "all", "RSS MiB", "job CPU s", "client requests",
                 "writes/s (best)"]]  # fmt: skip
        for tree, scenarios in levers["compare"].items():
            for scenario, c in scenarios.items():
                rows.append([tree, scenario, f"{c['inProcessSeconds']:.3f}", f"{c['inProcessSecondsMedian']:.3f}",
                             " ".join(f"{x:.2f}" for x in c["inProcessSecondsAll"]), f"{c['peakRssMiB']:.0f}",
                             f"{c['jobCpuSeconds']:.2f}", short_requests(c["clientRequests"]),
                             f"{c['writesPerSecond']:.0f}" if c["writesPerSecond"] else "-"])  # fmt: skip
        print(f"\nThis tree against {args.compare} at N={levers['n']} (interleaved):")
        print(render(rows))
    if levers.get("steady"):
        print()
        print(
            "\n".join(
                breakdown(f"Where the steady state's time goes at N={levers['n']}", levers["steady"].get("baseline"))
            )
        )
        first = next(iter((levers.get("initial") or {}).values()), None)
        print("\n".join(breakdown("Where an initial sync's time goes (lever baseline, first run)", first)))
    print("\nTargets:")
    for t in targets:
        state = "n/a    " if t.met is None else ("MET    " if t.met else "NOT MET")
        print(f"  {state} {'' if t.n is None else f'N={t.n}: '}{t.what} — {t.detail}")
    print(f"\nimport floor: {floor}")
    print(
        f"wrote {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path} in {doc['totalSeconds']}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
