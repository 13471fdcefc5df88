"""Paginated LISTs → snapshot. One LIST per kind, selected server-side; no GET per namespace."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

from syncjob.config import BuildResource, Settings
from syncjob.errors import ApiError, ClusterUnreachable, ConfigError, ForbiddenToList
from syncjob.kube.client import Kube
from syncjob.model import INSTANCE_LABEL, Copy, Occupant, Ref, ServiceAccount, Snapshot, Source
from syncjob.objects import (
    copy_from,
    is_own_copy,
    managed_selector,
    namespace_from,
    occupant_from,
    service_account_from,
    source_from,
)

# Build objects only mark a namespace: ask for metadata, not whole (possibly large) objects.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


def _listing(kube: Kube, path: str, what: str, rbac: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    try:
        yield from kube.list_pages(path, what=what, **kwargs)
    except ApiError as e:
        if e.status in (401, 403):
            raise ForbiddenToList(
                f"{what}: forbidden (HTTP {e.status}). The job's identity needs {rbac}; "
                "see k8s/cronjob.yaml for the ClusterRole"
            ) from e
        if e.status == 404:
            raise  # the caller knows what a missing collection means
        # Without a complete read there is no safe plan: the run is unusable, not partial.
        raise ClusterUnreachable(f"{e}; nothing was changed") from e


def read_sources(kube: Kube, settings: Settings) -> tuple[list[Source], list[Ref]]:
    ns = settings.source_namespace
    found = {
        s.ref: s
        for s in map(
            source_from,
            _listing(
                kube,
                f"/api/v1/namespaces/{ns}/secrets",
                f"list Secrets in {ns} matching {settings.source_selector!r}",
                "list on secrets",
                label_selector=settings.source_selector,
            ),
        )
    }
    missing: list[Ref] = []
    for ref in settings.sources:
        if ref in found:
            continue
        try:
            obj = kube.call(
                "get", "GET", f"/api/v1/namespaces/{ref.namespace}/secrets/{ref.name}", what=f"get Secret {ref}"
            )
        except ApiError as e:
            if e.status == 404:
                missing.append(ref)
                continue
            if e.status == 403:
                raise ForbiddenToList(f"get Secret {ref}: forbidden; the job's identity needs get on secrets") from e
            raise
        found[ref] = source_from(obj)
    return list(found.values()), missing


def resolve_version(kube: Kube, resource: BuildResource) -> str:
    """The group's preferred version (one discovery GET), unless the flag named a version."""
    if resource.version:
        return resource.version
    try:
        group = kube.call("discovery", "GET", f"/apis/{resource.group}", what=f"discover API group {resource.group}")
    except ApiError as e:
        if e.status == 404:
            raise ConfigError(
                f"--build-resource {resource}: the API server does not serve group {resource.group!r}. "
                "Install the CRDs (kpack for the defaults), or choose targets with --build-resource, "
                "--all-namespaces or --namespace-selector"
            ) from e
        raise
    return str((group.get("preferredVersion") or {}).get("version") or "")


def read_build_namespaces(kube: Kube, settings: Settings) -> frozenset[str]:
    namespaces: set[str] = set()
    versions: dict[str, str] = {}  # one discovery GET per API group, not per kind
    for resource in settings.build_resources:
        if resource.version:
            version = resource.version
        else:
            version = versions.get(resource.group) or resolve_version(kube, resource)
            versions[resource.group] = version
        path = f"/apis/{resource.group}/{version}/{resource.plural}"
        try:
            for item in _listing(
                kube, path, f"list {resource}", f"list on {resource.plural}.{resource.group}", accept=METADATA_ONLY
            ):
                namespaces.add(str((item.get("metadata") or {}).get("namespace", "")))
        except ApiError as e:
            if e.status == 404:
                raise ConfigError(
                    f"--build-resource {resource}: the API server does not serve {resource.plural} in "
                    f"{resource.group}/{version}; check the name (kubectl api-resources --api-group={resource.group})"
                ) from e
            raise
    namespaces.discard("")
    return frozenset(namespaces)


def read_copies(kube: Kube, settings: Settings) -> list[Copy]:
    return [
        copy_from(obj)
        for obj in _listing(
            kube,
            "/api/v1/secrets",
            "list this instance's copies in all namespaces",
            "list on secrets in all namespaces",
            label_selector=managed_selector(settings.instance),
        )
    ]


def read_snapshot(kube: Kube, settings: Settings) -> Snapshot:
    sources, missing = read_sources(kube, settings)
    namespaces = [
        namespace_from(obj)
        for obj in _listing(
            kube,
            "/api/v1/namespaces",
            "list namespaces",
            "list on namespaces",
            label_selector=settings.namespace_selector,
        )
    ]
    builds = read_build_namespaces(kube, settings) if settings.by_builds else None
    return Snapshot(
        sources=tuple(sources),
        namespaces=tuple(namespaces),
        build_namespaces=builds,
        copies=tuple(read_copies(kube, settings)),
        missing_sources=tuple(missing),
        service_accounts=tuple(read_service_accounts(kube, settings.patch_service_accounts)),
    )


def read_service_accounts(kube: Kube, names: tuple[str, ...]) -> list[ServiceAccount]:
    """One LIST per ServiceAccount name, across all namespaces, selected by field server-side."""
    return [
        service_account_from(obj)
        for name in names
        for obj in _listing(
            kube,
            "/api/v1/serviceaccounts",
            f"list ServiceAccounts named {name} in all namespaces",
            "list on serviceaccounts in all namespaces (the optional role in k8s/cronjob.yaml)",
            field_selector=f"metadata.name={name}",
        )
    ]


def read_service_account(kube: Kube, key: Ref) -> ServiceAccount | None:
    try:
        obj = kube.call(
            "get",
            "GET",
            f"/api/v1/namespaces/{key.namespace}/serviceaccounts/{key.name}",
            what=f"get ServiceAccount {key}",
        )
    except ApiError as e:
        if e.status == 404:
            return None
        raise
    return service_account_from(obj)


def read_occupants(kube: Kube, settings: Settings, keys: Iterable[Ref]) -> list[Occupant]:
    """Secrets that are not ours, sitting where a planned copy would go.

    Only asked for keys the plan would create, so a steady state costs nothing here: one LIST per
    distinct name, selected by field server-side, across all namespaces.
    """
    by_name: dict[str, set[str]] = defaultdict(set)
    for key in keys:
        by_name[key.name].add(key.namespace)
    occupants: list[Occupant] = []
    for name, namespaces in sorted(by_name.items()):
        for obj in _listing(
            kube,
            "/api/v1/secrets",
            f"list Secrets named {name} in all namespaces",
            "list on secrets in all namespaces",
            field_selector=f"metadata.name={name}",
            # Not our own copies (the server leaves them out: they were every copy of this name,
            # data included), and metadata only: an occupant is a name, a uid and labels. A Secret
            # labelled with our instance but not managed by syncjob is left out too; a create onto
            # it gets 409, and the applier reads it and plans again (a conflict), as for any race.
            label_selector=f"{INSTANCE_LABEL}!={settings.instance}",
            accept=METADATA_ONLY,
            limit=5000,
        ):
            occupant = occupant_from(obj)
            if occupant.namespace in namespaces and not is_own_copy(obj, settings.instance):
                occupants.append(occupant)
    return occupants


def read_one(kube: Kube, settings: Settings, key: Ref) -> tuple[Copy | None, Occupant | None]:
    """A fresh look at one key after a 409: our copy, someone else's Secret, or nothing."""
    try:
        obj = kube.call(
            "get", "GET", f"/api/v1/namespaces/{key.namespace}/secrets/{key.name}", what=f"get Secret {key}"
        )
    except ApiError as e:
        if e.status == 404:
            return None, None
        raise
    if is_own_copy(obj, settings.instance):
        return copy_from(obj), None
    return None, occupant_from(obj)
