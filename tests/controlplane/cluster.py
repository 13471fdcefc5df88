"""A throwaway Kubernetes control plane (etcd + kube-apiserver, nothing else) for syncjob's tests.

The binaries are built from source by ``scripts/build-controlplane`` into a cache outside the
repository; their versions live only in ``tests/controlplane/go.mod``, which this module reads the
same way the build script does.

There is no kube-controller-manager, scheduler or kubelet: no ``default`` ServiceAccount appears in
new namespaces, pods stay Pending, and a deleted namespace stays Terminating forever. Tests create
what they need.

Only the standard library is needed to start and stop the processes (``scripts/cluster`` may run
under a bare ``python3``); the ``kubernetes`` client is imported only by the client helpers.
"""

from __future__ import annotations

import atexit
import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from kubernetes import client as k8s

MODULE_DIR = Path(__file__).resolve().parent
REPO_ROOT = MODULE_DIR.parent.parent
GO_MOD = MODULE_DIR / "go.mod"
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-controlplane"

CONTEXT_NAME = "syncjob-test"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc"
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
# Order matters: started in this order, stopped in reverse.
PROCESS_NAMES = ("etcd", "kube-apiserver")


class ControlPlaneError(RuntimeError):
    """The control plane could not be started (or found)."""


# --- where the binaries are -------------------------------------------------------------------


def pinned_versions(go_mod: Path = GO_MOD) -> tuple[str, str]:
    """(kubernetes, etcd) versions from go.mod, parsed like scripts/build-controlplane's awk."""
    k8s_version = etcd_version = ""
    for line in go_mod.read_text().splitlines():
        fields = line.split("//", 1)[0].split()
        if len(fields) >= 3 and fields[0] == "require" and fields[1] == "k8s.io/kubernetes":
            k8s_version = fields[2]
        elif len(fields) >= 2 and fields[0] == "go.etcd.io/etcd/server/v3":
            etcd_version = fields[1]
    if not k8s_version or not etcd_version:
        raise ControlPlaneError(f"cannot read the kubernetes/etcd versions from {go_mod}")
    return k8s_version, etcd_version


def cache_dir() -> Path:
    # Like the script's ${SYNCJOB_CONTROLPLANE_DIR:-...}: unset and empty both mean the default.
    return Path(os.environ.get("SYNCJOB_CONTROLPLANE_DIR") or Path.home() / ".cache/syncjob/controlplane")


def bin_dir() -> Path:
    k8s_version, etcd_version = pinned_versions()
    return cache_dir() / f"kubernetes-{k8s_version}-etcd-{etcd_version}" / "bin"


def find_binaries() -> Path | None:
    """The bin dir holding both kube-apiserver and etcd for the pinned versions, or None."""
    directory = bin_dir()
    if all(os.access(directory / name, os.X_OK) and (directory / name).is_file() for name in PROCESS_NAMES):
        return directory
    return None


def _missing_message() -> str:
    try:
        where = str(bin_dir())
    except (OSError, ControlPlaneError):
        where = f"{cache_dir()}/kubernetes-<version>-etcd-<version>/bin"
    return (
        f"kube-apiserver and etcd not found in {where}; build them once with "
        "`scripts/build-controlplane` (needs Go; a few minutes on 2 cores). "
        "Set SYNCJOB_CONTROLPLANE_DIR to use another cache."
    )


MISSING_MESSAGE = _missing_message()


def build_binaries() -> Path:
    """Run scripts/build-controlplane (a no-op when built); its progress goes to our stderr."""
    result = subprocess.run(
        [str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, check=False
    )
    if result.returncode != 0:
        raise ControlPlaneError(f"{BUILD_SCRIPT} failed with exit code {result.returncode}")
    found = find_binaries()
    if found is None:
        raise ControlPlaneError(f"{BUILD_SCRIPT} finished but the binaries are missing: {MISSING_MESSAGE}")
    return found


# --- small helpers ----------------------------------------------------------------------------


def _free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (all held open together so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<cannot read {path}: {exc}>"
    return "\n".join(text.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _pid_cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def rss_kib(pid: int) -> int | None:
    """Resident set size of a process in KiB (VmRSS), or None when unknown."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _pdeathsig_setter() -> Callable[[], None] | None:
    """A preexec_fn giving the child SIGKILL when its parent dies (even by SIGKILL); Linux only.

    SIGKILL, not SIGTERM: both processes get it at once, and a kube-apiserver shutting down
    gracefully while etcd goes away hangs in a pre-shutdown hook (deleting its identity lease)
    forever. Their state is throwaway. libc is looked up here, in the parent, so the forked child
    only makes one C call.
    """
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def set_pdeathsig() -> None:  # pragma: no cover - runs in the forked child
        prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0)

    return set_pdeathsig


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def kubeconfig_document(server: str, ca_file: Path, token: str, user: str, namespace: str | None = None) -> str:
    """A kubeconfig (JSON, which is valid YAML) with the CA embedded and a bearer token."""
    context: dict[str, Any] = {"cluster": CONTEXT_NAME, "user": user}
    if namespace:
        context["namespace"] = namespace
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CONTEXT_NAME,
                "cluster": {
                    "server": server,
                    "certificate-authority-data": base64.b64encode(ca_file.read_bytes()).decode(),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": CONTEXT_NAME, "context": context}],
        "current-context": CONTEXT_NAME,
        "preferences": {},
    }
    return json.dumps(document, indent=2) + "\n"


# --- the handle -------------------------------------------------------------------------------

_STATE_FILE = "state.json"
# Everything start_control_plane creates in its workdir; only these are removed on a fresh start.
_WORKDIR_ENTRIES = (
    "etcd-data",
    "certs",
    "etcd.log",
    "kube-apiserver.log",
    "tokens.csv",
    "service-account.key",
    "kubeconfig",
    "kubeconfigs",
    _STATE_FILE,
)


class ControlPlane:
    """A running etcd + kube-apiserver. Get one from start_control_plane() or ControlPlane.load()."""

    def __init__(
        self,
        workdir: Path,
        *,
        server: str,
        ca_file: Path,
        admin_token: str,
        kubeconfig: Path,
        pids: Mapping[str, int] | None = None,
        processes: Mapping[str, subprocess.Popen[bytes]] | None = None,
        startup_seconds: float | None = None,
    ) -> None:
        self.workdir = workdir
        self.server = server
        self.ca_file = ca_file
        self.admin_token = admin_token
        self.kubeconfig = kubeconfig
        self._pids = dict(pids or {})
        self._processes = dict(processes or {})
        self.startup_seconds = startup_seconds
        self._stopped = False
        self._lock = threading.Lock()
        self._ns_counter = 0

    def __repr__(self) -> str:
        return f"ControlPlane(server={self.server!r}, pids={self._pids}, workdir={str(self.workdir)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- processes

    @property
    def pids(self) -> dict[str, int]:
        """{"etcd": pid, "kube-apiserver": pid}"""
        return dict(self._pids)

    @property
    def etcd_data_dir(self) -> Path:
        return self.workdir / "etcd-data"

    def log_file(self, name: str) -> Path:
        return self.workdir / f"{name}.log"

    def _owns(self, pid: int) -> bool:
        """Guard against PID reuse: our processes carry the workdir in their command line."""
        return str(self.workdir) in _pid_cmdline(pid)

    def alive(self) -> dict[str, bool]:
        result = {}
        for name, pid in self._pids.items():
            proc = self._processes.get(name)
            if proc is not None:
                result[name] = proc.poll() is None
            else:
                result[name] = _pid_alive(pid) and self._owns(pid)
        return result

    def is_up(self) -> bool:
        return bool(self._pids) and all(self.alive().values())

    def rss_kib(self) -> dict[str, int | None]:
        return {name: rss_kib(pid) for name, pid in self._pids.items()}

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the apiserver then etcd; SIGKILL whatever is left after the deadline. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for name in reversed(PROCESS_NAMES):
            if name in self._pids:
                self._stop_one(name, timeout)

    def _stop_one(self, name: str, timeout: float) -> None:
        pid = self._pids[name]
        proc = self._processes.get(name)
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            return
        # Not our child (e.g. `scripts/cluster down`): signal by PID, poll for it to go away.
        if not (_pid_alive(pid) and self._owns(pid)):
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                return
            time.sleep(0.1)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 5
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    # -- persisted state (for scripts/cluster)

    def save_state(self) -> Path:
        path = self.workdir / _STATE_FILE
        state = {
            "server": self.server,
            "ca_file": str(self.ca_file),
            "admin_token": self.admin_token,
            "kubeconfig": str(self.kubeconfig),
            "pids": self._pids,
            "startup_seconds": self.startup_seconds,
        }
        _write_private(path, json.dumps(state, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, workdir: Path) -> ControlPlane | None:
        """The control plane described by workdir/state.json (running or not), or None."""
        try:
            state = json.loads((workdir / _STATE_FILE).read_text())
            return cls(
                workdir=workdir,
                server=state["server"],
                ca_file=Path(state["ca_file"]),
                admin_token=state["admin_token"],
                kubeconfig=Path(state["kubeconfig"]),
                pids={str(k): int(v) for k, v in state["pids"].items()},
                startup_seconds=state.get("startup_seconds"),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def forget_state(self) -> None:
        (self.workdir / _STATE_FILE).unlink(missing_ok=True)

    # -- HTTP without the client library

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def get_raw(self, path: str, timeout: float = 5.0) -> tuple[int, str]:
        """GET path as admin with urllib; returns (status, body)."""
        request = urllib.request.Request(self.server + path, headers={"Authorization": f"Bearer {self.admin_token}"})
        try:
            with urllib.request.urlopen(request, context=self.ssl_context(), timeout=timeout) as response:
                return response.status, response.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    # -- kubernetes client helpers

    def _client_for_token(self, token: str) -> k8s.ApiClient:
        from kubernetes import client

        configuration = client.Configuration()
        configuration.host = self.server
        configuration.ssl_ca_cert = str(self.ca_file)
        configuration.verify_ssl = True
        # Since kubernetes 36 the client reads 'BearerToken' (and looks the prefix up by that key).
        configuration.api_key = {"BearerToken": token}
        configuration.api_key_prefix = {"BearerToken": "Bearer"}
        configuration.retries = False
        return client.ApiClient(configuration)

    def admin_client(self) -> k8s.ApiClient:
        """A new client authenticated as user `admin` (group system:masters)."""
        return self._client_for_token(self.admin_token)

    def ensure_service_account(self, namespace: str, name: str) -> None:
        from kubernetes import client

        with self.admin_client() as api:
            core = client.CoreV1Api(api)
            body = client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
            try:
                core.create_namespaced_service_account(namespace, body)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise

    def service_account_token(
        self, namespace: str, name: str, *, create: bool = True, expiration_seconds: int = 3600
    ) -> str:
        """A bound token for ServiceAccount namespace/name (TokenRequest API); creates the SA if asked."""
        from kubernetes import client

        if create:
            self.ensure_service_account(namespace, name)
        request = client.AuthenticationV1TokenRequest(
            # Empty audiences: the API server's own (--api-audiences, defaulting to the issuer).
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=expiration_seconds)
        )
        with self.admin_client() as api:
            response = client.CoreV1Api(api).create_namespaced_service_account_token(name, namespace, request)
        token: str = response.status.token
        return token

    def service_account_client(
        self, namespace: str, name: str, *, create: bool = True, expiration_seconds: int = 3600
    ) -> k8s.ApiClient:
        """A new client authenticated as system:serviceaccount:namespace:name."""
        token = self.service_account_token(namespace, name, create=create, expiration_seconds=expiration_seconds)
        return self._client_for_token(token)

    def service_account_kubeconfig(
        self, namespace: str, name: str, *, create: bool = True, expiration_seconds: int = 3600
    ) -> Path:
        """Write a kubeconfig for ServiceAccount namespace/name (context syncjob-test, default
        namespace = the SA's) into the workdir and return its path."""
        token = self.service_account_token(namespace, name, create=create, expiration_seconds=expiration_seconds)
        path = self.workdir / "kubeconfigs" / f"sa-{namespace}-{name}-{secrets.token_hex(3)}.kubeconfig"
        user = f"system:serviceaccount:{namespace}:{name}"
        _write_private(path, kubeconfig_document(self.server, self.ca_file, token, user, namespace))
        return path

    def new_namespace(
        self,
        prefix: str = "t",
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> str:
        """Create a uniquely named namespace and return its name."""
        from kubernetes import client

        if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?", prefix):
            raise ValueError(f"namespace prefix {prefix!r} is not a short DNS label")
        with self.admin_client() as api:
            core = client.CoreV1Api(api)
            for _ in range(5):
                with self._lock:
                    self._ns_counter += 1
                    number = self._ns_counter
                name = f"{prefix}-{number}-{secrets.token_hex(3)}"
                body = client.V1Namespace(
                    metadata=client.V1ObjectMeta(
                        name=name,
                        labels=dict(labels) if labels else None,
                        annotations=dict(annotations) if annotations else None,
                    )
                )
                try:
                    core.create_namespace(body)
                except client.ApiException as exc:
                    if exc.status == 409:
                        continue
                    raise
                return name
        raise ControlPlaneError(f"could not find a free namespace name with prefix {prefix!r}")


# --- starting ---------------------------------------------------------------------------------


def _prepare_workdir(workdir: Path) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    for entry in _WORKDIR_ENTRIES:
        path = workdir / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _generate_service_account_key(path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise ControlPlaneError("the `openssl` command is needed to make the service-account signing key")
    result = subprocess.run(
        [openssl, "genrsa", "-out", str(path), "2048"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ControlPlaneError(f"openssl genrsa failed: {result.stdout}")
    path.chmod(0o600)


def _spawn(argv: list[str], log: Path, *, detach: bool) -> subprocess.Popen[bytes]:
    with open(log, "ab") as log_handle:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C in the terminal reaches only us, and we stop them in order.
            start_new_session=True,
            # Not detached: die with the test process even when it is killed with SIGKILL (e.g. by a
            # CI timeout), when neither atexit nor a finally block runs. Started from the main thread
            # (fixtures run there), where the usual preexec_fn-with-threads hazard does not apply.
            preexec_fn=None if detach else _pdeathsig_setter(),  # noqa: PLW1509
            cwd=log.parent,
        )


def _wait_until(
    plane: ControlPlane,
    check: Callable[[], tuple[bool, str]],
    what: str,
    deadline: float,
) -> None:
    last = ""
    while True:
        for name, proc in plane._processes.items():
            code = proc.poll()
            if code is not None:
                raise ControlPlaneError(
                    f"{name} exited with code {code} while waiting for {what}; "
                    f"last lines of {plane.log_file(name)}:\n{_tail(plane.log_file(name))}"
                )
        ok, last = check()
        if ok:
            return
        if time.monotonic() >= deadline:
            logs = "\n".join(
                f"--- last lines of {plane.log_file(name)}:\n{_tail(plane.log_file(name), 25)}"
                for name in plane._processes
            )
            raise ControlPlaneError(f"timed out waiting for {what}; last answer: {last}\n{logs}")
        time.sleep(0.1)


def start_control_plane(
    workdir: Path | str,
    *,
    binaries: Path | None = None,
    detach: bool = False,
    ready_timeout: float = READY_TIMEOUT,
) -> ControlPlane:
    """Start etcd and kube-apiserver on free 127.0.0.1 ports with all state and logs in workdir.

    Returns once /readyz answers 200 (or raises ControlPlaneError with the logs' tails). Unless
    ``detach`` is true the processes are tied to this process: they are stopped at interpreter exit
    (atexit), on SIGTERM, and - on Linux - when this process dies. With ``detach`` they outlive it
    (for scripts/cluster) and only stop() or a signal ends them.
    """
    workdir = Path(workdir).resolve()
    bin_path = binaries or find_binaries()
    if bin_path is None:
        raise ControlPlaneError(MISSING_MESSAGE)
    _prepare_workdir(workdir)
    started = time.monotonic()

    client_port, peer_port, secure_port = _free_ports(3)
    etcd_url = f"http://127.0.0.1:{client_port}"
    peer_url = f"http://127.0.0.1:{peer_port}"
    server = f"https://127.0.0.1:{secure_port}"
    cert_dir = workdir / "certs"
    cert_dir.mkdir()
    ca_file = cert_dir / "apiserver.crt"
    admin_token = secrets.token_hex(24)
    tokens = workdir / "tokens.csv"
    _write_private(tokens, f'{admin_token},admin,admin,"system:masters"\n')
    sa_key = workdir / "service-account.key"
    _generate_service_account_key(sa_key)

    plane = ControlPlane(
        workdir=workdir,
        server=server,
        ca_file=ca_file,
        admin_token=admin_token,
        kubeconfig=workdir / "kubeconfig",
    )
    if not detach:
        _register_cleanup(plane)
    try:
        etcd = _spawn(
            [
                str(bin_path / "etcd"),
                "--name=default",
                f"--data-dir={workdir / 'etcd-data'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                "--quota-backend-bytes=2147483648",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
            plane.log_file("etcd"),
            detach=detach,
        )
        plane._processes["etcd"] = etcd
        plane._pids["etcd"] = etcd.pid

        def etcd_healthy() -> tuple[bool, str]:
            try:
                with urllib.request.urlopen(etcd_url + "/health", timeout=2) as response:
                    body = response.read().decode(errors="replace")
                return json.loads(body).get("health") == "true", body
            except (OSError, ValueError) as exc:
                return False, repr(exc)

        _wait_until(plane, etcd_healthy, f"etcd at {etcd_url}", started + ready_timeout)

        apiserver = _spawn(
            [
                str(bin_path / "kube-apiserver"),
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={secure_port}",
                f"--cert-dir={cert_dir}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
                f"--service-account-key-file={sa_key}",
                f"--service-account-signing-key-file={sa_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--endpoint-reconciler-type=none",
                # As on kubeadm clusters, so Pod Security admission (not pod validation) is what
                # refuses a privileged pod in a restricted namespace.
                "--allow-privileged=true",
                "--profiling=false",
            ],
            plane.log_file("kube-apiserver"),
            detach=detach,
        )
        plane._processes["kube-apiserver"] = apiserver
        plane._pids["kube-apiserver"] = apiserver.pid

        def apiserver_ready() -> tuple[bool, str]:
            if not ca_file.exists():
                return False, f"{ca_file} not written yet"
            try:
                status, body = plane.get_raw("/readyz?verbose", timeout=2)
            except (OSError, ssl.SSLError) as exc:
                return False, repr(exc)
            return status == 200, f"HTTP {status}: {body[-2000:]}"

        _wait_until(plane, apiserver_ready, f"kube-apiserver {server}/readyz", started + ready_timeout)
        plane.startup_seconds = time.monotonic() - started
        _write_private(plane.kubeconfig, kubeconfig_document(server, ca_file, admin_token, "admin"))
        plane.save_state()
    except BaseException:
        plane.stop()
        raise
    return plane


# --- cleanup when the owning process goes away ------------------------------------------------

_live: list[ControlPlane] = []


def _stop_all() -> None:
    for plane in _live:
        plane.stop()


def _on_sigterm(signum: int, frame: object) -> None:
    _stop_all()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _register_cleanup(plane: ControlPlane) -> None:
    first = not _live
    _live.append(plane)
    if not first:
        return
    atexit.register(_stop_all)
    # Only take SIGTERM over when nobody else has, and only from the main thread (a Python rule).
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
