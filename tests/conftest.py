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

from tests.controlplane.cluster import MISSING_MESSAGE, ControlPlane, find_binaries, start_control_plane

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


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """One etcd + kube-apiserver for the whole session (admin: user `admin`, group system:masters)."""
    _skip_or_fail_without_binaries()
    plane = start_control_plane(tmp_path_factory.mktemp("controlplane"))
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
