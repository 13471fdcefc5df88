"""Shared fixtures. Tests that use the `cluster` fixture run against a real kube-apiserver + etcd
(tests/controlplane); they are marked `cluster` automatically.

Without the binaries those tests are skipped with instructions - except in CI (env CI non-empty) or
with SYNCJOB_REQUIRE_CLUSTER=1, where they fail instead: a missing cluster must never look green.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
from kubernetes import client

from tests import leakscan
from tests.controlplane.cluster import (
    MISSING_MESSAGE,
    ControlPlane,
    ControlPlaneError,
    find_binaries,
    start_control_plane,
)

pytest_plugins = ["tests.sync_env"]  # the sync tests' fixtures: env, kpack


def _cluster_required() -> bool:
    return bool(os.environ.get("CI")) or os.environ.get("SYNCJOB_REQUIRE_CLUSTER") == "1"


def _skip_or_fail_without_binaries() -> None:
    if find_binaries() is not None:
        return
    if _cluster_required():
        pytest.fail(
            f"{MISSING_MESSAGE} (required here because CI or SYNCJOB_REQUIRE_CLUSTER=1 is set)",
            pytrace=False,
        )
    pytest.skip(MISSING_MESSAGE)


def pytest_configure(config: pytest.Config) -> None:
    leakscan.capture_log_records()
    # pyproject.toml may declare it too (--strict-markers); register it only once.
    if not any(str(line).startswith("cluster:") for line in config.getini("markers")):
        config.addinivalue_line("markers", "cluster: needs the test control plane (kube-apiserver + etcd)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Covers tests marked `cluster` by hand that do not request the fixture.
    if item.get_closest_marker("cluster") is not None:
        _skip_or_fail_without_binaries()


def _start_with_retry(tmp_path_factory: pytest.TempPathFactory, attempts: int = 3) -> ControlPlane:
    """The ports are picked free, then bound by etcd and the apiserver a moment later: another process
    may take one in between. A start that fails is tried again on fresh ports."""
    for attempt in range(1, attempts + 1):
        try:
            return start_control_plane(tmp_path_factory.mktemp("controlplane"))
        except ControlPlaneError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One etcd + kube-apiserver for the whole session (admin: user `admin`, group system:masters)."""
    _skip_or_fail_without_binaries()
    plane = _start_with_retry(tmp_path_factory)
    try:
        yield plane
    finally:
        plane.stop()
        # Keep the logs for debugging; drop etcd's preallocated WAL (64 MB a run).
        shutil.rmtree(plane.etcd_data_dir, ignore_errors=True)


@pytest.fixture
def ns(cluster: ControlPlane) -> str:
    """A fresh namespace for this test (never deleted: without a namespace controller it would
    stay Terminating anyway, and the cluster is thrown away at the end of the session)."""
    return cluster.new_namespace()


@pytest.fixture
def admin_api(cluster: ControlPlane) -> Iterator[client.ApiClient]:
    with cluster.admin_client() as api:
        yield api


@pytest.fixture
def core(admin_api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(admin_api)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The leak scan, over the whole session whatever ran: a seeded value in any output fails the run."""
    found = leakscan.hits([*leakscan.ALL_OUTPUTS, *leakscan.LOG_RECORDS])
    scanned = sum(map(len, leakscan.ALL_OUTPUTS)) + sum(map(len, leakscan.LOG_RECORDS))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    line = (
        f"leak scan: {len(leakscan.SEEDED_SECRETS)} seeded values, {scanned} bytes of output and logs, "
        f"{len(found)} found"
    )
    if reporter is not None:
        reporter.write_line(line + (f": {found[:5]}" if found else ""), red=bool(found), green=not found)
    if found:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
