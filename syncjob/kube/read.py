"""Paginated LISTs → snapshot. One LIST per kind, selected server-side; no GET per namespace.

A run with several SecretSyncs reads namespaces, build kinds and discovery once (ReadMemo).
"""

from __future__ import annotations

import base64
import re
import secrets
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from syncjob.config import BuildResource
from syncjob.errors import ApiError, ClusterUnreachable, ConfigError, ConversionFailed, ForbiddenToList
from syncjob.kube.client import Kube
from syncjob.model import (
    INSTANCE_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    Copy,
    Namespace,
    Occupant,
    Ref,
    ServiceAccount,
    Snapshot,
    Source,
)
from syncjob.objects import (
    copy_from,
    is_own_copy,
    is_syncjob_own,
    managed_selector,
    namespace_from,
    occupant_from,
    proof_key_from,
    service_account_from,
    source_from,
)
from syncjob.policy import GROUP, PLURAL, VERSION, Policy
from syncjob.proof import PROOF_KEY_FIELD, PROOF_KEY_LABEL, PROOF_KEY_SECRET

# Build objects only mark a namespace: ask for metadata, not whole (possibly large) objects.
METADATA_ONLY = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
# Every group, version and resource in one response (Kubernetes 1.30+); older servers answer with a
# plain APIGroupList and the reader asks group by group instead.
AGGREGATED_DISCOVERY = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
POLICIES_PATH = f"/apis/{GROUP}/{VERSION}/{PLURAL}"


@dataclass
class ReadMemo:
    """What one run reads once and every policy shares."""

    namespaces: dict[str, list[Namespace]] = field(default_factory=dict)  # by label selector
    build_namespaces: dict[tuple[str, str, str], frozenset[str]] = field(default_factory=dict)
    served: dict[str, list[tuple[str, frozenset[str]]]] | None = None  # group → [(version, plurals)]
    proof_keys: dict[str, bytes | None] = field(default_factory=dict)  # by source namespace


def _listing(kube: Kube, path: str, what: str, rbac: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    try:
        yield from kube.list_pages(path, what=what, **kwargs)
    except ApiError as e:
        if e.status in (401, 403):
            raise ForbiddenToList(
                f"{what}: forbidden (HTTP {e.status}). The job's identity needs {rbac}; "
                "see the ClusterRole in k8s/cronjob.yaml"
            ) from e
        if e.status == 404:
            raise  # the caller knows what a missing collection means
        if "conversion webhook" in e.message:
            raise conversion_failed(what, e.message) from e
        # Without a complete read there is no safe plan: the run is unusable, not partial.
        raise ClusterUnreachable(f"{e}; nothing was changed") from e


_WEBHOOK_SERVICE = re.compile(r"https://([a-z0-9-]+)\.([a-z0-9-]+)\.svc")
_STORAGE_KEY = re.compile(r"Key: (/registry/[^\s,]+)")


def conversion_failed(what: str, message: str) -> ConversionFailed:
    service = _WEBHOOK_SERVICE.search(message)
    key = _STORAGE_KEY.search(message)
    named = f" (service {service.group(2)}/{service.group(1)})" if service else ""
    example = f", e.g. for {key.group(1)}" if key else ""
    return ConversionFailed(
        f"{what}: the API server cannot convert these objects: their CRD's conversion webhook{named} failed"
        f"{example}. Its operator is probably being upgraded or its webhook is down; nothing was changed, "
        "and the next run tries again"
    )


def read_policy_objects(kube: Kube, names: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Every SecretSync, or the named ones (a name that does not exist is a ConfigError)."""
    wanted = sorted(set(names))
    try:
        if not wanted:
            return list(_listing(kube, POLICIES_PATH, "list SecretSyncs", f"list on {PLURAL}.{GROUP}"))
        found = []
        for name in wanted:
            try:
                found.append(kube.call("get", "GET", f"{POLICIES_PATH}/{name}", what=f"get SecretSync {name}"))
            except ApiError as e:
                if e.status == 404 and "secretsyncs" in e.message.lower() and "not found" in e.message.lower():
                    raise ConfigError(
                        f"SecretSync {name!r} not found; `kubectl get secretsyncs` lists the ones there are"
                    ) from e
                raise
        return found
    except ApiError as e:
        if e.status == 404:
            raise ConfigError(
                f"the SecretSync API ({PLURAL}.{GROUP}) is not installed; install it with "
                "`kubectl apply -f k8s/cronjob.yaml`"
            ) from e
        if e.status in (401, 403):
            raise ForbiddenToList(
                f"{e.what}: forbidden; the job's identity needs get and list on {PLURAL}.{GROUP}"
            ) from e
        raise ClusterUnreachable(f"{e}; nothing was changed") from e


def read_sources(kube: Kube, policy: Policy) -> tuple[list[Source], list[Ref]]:
    ns = policy.source_namespace
    selector = policy.source_selector.text
    found = {
        s.ref: s
        for s in map(
            source_from,
            _listing(
                kube,
                f"/api/v1/namespaces/{ns}/secrets",
                f"list Secrets in {ns} matching {selector!r}",
                "list on secrets",
                label_selector=selector,
            ),
        )
        if not is_syncjob_own(s)
    }
    missing: list[Ref] = []
    for ref in policy.sources:
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


def _served_aggregated(doc: dict[str, Any]) -> dict[str, list[tuple[str, frozenset[str]]]]:
    served: dict[str, list[tuple[str, frozenset[str]]]] = {}
    for group in doc.get("items") or []:
        name = str((group.get("metadata") or {}).get("name", ""))
        served[name] = [
            (str(v.get("version", "")), frozenset(str(r.get("resource", "")) for r in v.get("resources") or []))
            for v in group.get("versions") or []  # listed in the server's order of preference
        ]
    return served


def _served_by_group(kube: Kube, group: str) -> list[tuple[str, frozenset[str]]]:
    """The fallback for servers without aggregated discovery: one GET for the group, one per version."""
    try:
        doc = kube.call("discovery", "GET", f"/apis/{group}", what=f"discover API group {group}")
    except ApiError as e:
        if e.status == 404:
            return []
        raise
    preferred = str((doc.get("preferredVersion") or {}).get("version") or "")
    versions = [str(v.get("version", "")) for v in doc.get("versions") or []]
    ordered = [preferred, *(v for v in versions if v != preferred)] if preferred else versions
    result = []
    for version in ordered:
        resources = kube.call("discovery", "GET", f"/apis/{group}/{version}", what=f"discover {group}/{version}")
        result.append((version, frozenset(str(r.get("name", "")) for r in resources.get("resources") or [])))
    return result


def resolve_versions(kube: Kube, resources: Iterable[BuildResource], memo: ReadMemo) -> dict[BuildResource, str]:
    """Each build kind's version, per resource (not per group: Tekton's customruns are served only at
    v1beta1 while tekton.dev prefers v1): the first version in the server's order that serves it."""
    unresolved = [r for r in resources if not r.version]
    resolved = {r: r.version for r in resources if r.version}
    if not unresolved:
        return resolved
    if memo.served is None:
        doc = kube.call("discovery", "GET", "/apis", what="discover API groups", accept=AGGREGATED_DISCOVERY)
        if doc.get("kind") == "APIGroupDiscoveryList":
            memo.served = _served_aggregated(doc)
        else:
            groups = {r.group for r in unresolved}
            memo.served = {g: _served_by_group(kube, g) for g in sorted(groups)}
    for resource in unresolved:
        versions = memo.served.get(resource.group)
        if versions is None and resource.group not in memo.served:
            memo.served[resource.group] = versions = _served_by_group(kube, resource.group)
        if not versions:
            raise ConfigError(
                f"spec.targets.builds {resource}: the API server does not serve group {resource.group!r}. "
                "Install its CRDs (kpack for the defaults), or choose targets another way "
                "(spec.targets.builds, allNamespaces or namespaceSelector)"
            )
        version = next((v for v, plurals in versions if resource.plural in plurals), "")
        if not version:
            offered = sorted({p for _, plurals in versions for p in plurals if "/" not in p})
            raise ConfigError(
                f"spec.targets.builds {resource}: group {resource.group} has no resource {resource.plural!r} "
                f"(it serves {', '.join(offered) or 'none'}); check the name with "
                f"`kubectl api-resources --api-group={resource.group}`"
            )
        resolved[resource] = version
    return resolved


def read_build_namespaces(kube: Kube, policy: Policy, memo: ReadMemo) -> frozenset[str]:
    namespaces: set[str] = set()
    versions = resolve_versions(kube, policy.build_resources, memo)
    for resource in policy.build_resources:
        version = versions[resource]
        key = (resource.group, version, resource.plural)
        if key not in memo.build_namespaces:
            memo.build_namespaces[key] = _read_build_kind(kube, resource, version)
        namespaces |= memo.build_namespaces[key]
    namespaces.discard("")
    return frozenset(namespaces)


def _read_build_kind(kube: Kube, resource: BuildResource, version: str) -> frozenset[str]:
    path = f"/apis/{resource.group}/{version}/{resource.plural}"
    rule = (
        f"list on {resource.plural}.{resource.group}: add the rule "
        f"{{apiGroups: [{resource.group}], resources: [{resource.plural}], verbs: [list]}} to the ClusterRole syncjob"
    )
    try:
        return frozenset(
            str((item.get("metadata") or {}).get("namespace", ""))
            for item in _listing(kube, path, f"list {resource.plural}.{version}.{resource.group}", rule,
                                 accept=METADATA_ONLY)
        )  # fmt: skip
    except ApiError as e:
        if e.status == 404:
            raise ConfigError(
                f"spec.targets.builds {resource}: the API server does not serve {resource.plural} in "
                f"{resource.group}/{version}; check the name (kubectl api-resources --api-group={resource.group})"
            ) from e
        raise


def read_namespaces(kube: Kube, policy: Policy, memo: ReadMemo) -> list[Namespace]:
    selector = policy.namespace_selector.text if policy.namespace_selector is not None else ""
    if selector not in memo.namespaces:
        memo.namespaces[selector] = [
            namespace_from(obj)
            for obj in _listing(kube, "/api/v1/namespaces", "list namespaces", "list on namespaces",
                                label_selector=selector)
        ]  # fmt: skip
    return memo.namespaces[selector]


def read_copies(kube: Kube, instance: str) -> list[Copy]:
    return [
        copy_from(obj)
        for obj in _listing(
            kube,
            "/api/v1/secrets",
            f"list the copies of SecretSync {instance} in all namespaces",
            "list on secrets in all namespaces",
            label_selector=managed_selector(instance),
        )
    ]


def read_proof_key(kube: Kube, namespace: str, *, create: bool, memo: ReadMemo) -> bytes | None:
    """The key that proves copies (syncjob/proof.py), made on first need unless this is a dry-run."""
    if namespace not in memo.proof_keys:
        key = _get_proof_key(kube, namespace)
        if key is None and create:
            body = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {
                    "name": PROOF_KEY_SECRET,
                    "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, PROOF_KEY_LABEL: "true"},
                    "annotations": {"syncjob.dev/purpose": "proves which Secrets syncjob copied; keep it secret"},
                },
                "type": "Opaque",
                "data": {PROOF_KEY_FIELD: base64.b64encode(secrets.token_bytes(32)).decode()},
            }
            what = f"create Secret {namespace}/{PROOF_KEY_SECRET}"
            try:
                kube.call("create", "POST", f"/api/v1/namespaces/{namespace}/secrets", what=what, body=body)
                key = _get_proof_key(kube, namespace)
            except ApiError as e:
                if e.status == 409:  # another run made it first: read theirs
                    key = _get_proof_key(kube, namespace)
                elif e.status != 404:  # 404: the namespace does not exist (nor do sources in it); no key
                    raise
        memo.proof_keys[namespace] = key
    return memo.proof_keys[namespace]


def _get_proof_key(kube: Kube, namespace: str) -> bytes | None:
    what = f"get Secret {namespace}/{PROOF_KEY_SECRET}"
    try:
        obj = kube.call("get", "GET", f"/api/v1/namespaces/{namespace}/secrets/{PROOF_KEY_SECRET}", what=what)
    except ApiError as e:
        if e.status == 404:
            return None
        if e.status in (401, 403):
            raise ForbiddenToList(
                f"{what}: forbidden (HTTP {e.status}). The job's identity needs get and create on secrets in "
                f"{namespace} (its proof key); see the ClusterRole in k8s/cronjob.yaml"
            ) from e
        raise
    return proof_key_from(obj)


def read_snapshot(kube: Kube, policy: Policy, memo: ReadMemo | None = None, *, create_key: bool = False) -> Snapshot:
    memo = memo if memo is not None else ReadMemo()
    proof_key = read_proof_key(kube, policy.source_namespace, create=create_key, memo=memo)
    sources, missing = read_sources(kube, policy)
    namespaces = read_namespaces(kube, policy, memo)
    builds = read_build_namespaces(kube, policy, memo) if policy.by_builds else None
    return Snapshot(
        sources=tuple(sources),
        namespaces=tuple(namespaces),
        build_namespaces=builds,
        copies=tuple(read_copies(kube, policy.instance)),
        missing_sources=tuple(missing),
        service_accounts=tuple(read_service_accounts(kube, policy.patch_service_accounts)),
        proof_key=proof_key,
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


def read_occupants(kube: Kube, instance: str, keys: Iterable[Ref]) -> list[Occupant]:
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
            label_selector=f"{INSTANCE_LABEL}!={instance}",
            accept=METADATA_ONLY,
            limit=5000,
        ):
            occupant = occupant_from(obj)
            if occupant.namespace in namespaces and not is_own_copy(obj, instance):
                occupants.append(occupant)
    return occupants


def read_one(kube: Kube, instance: str, key: Ref) -> tuple[Copy | None, Occupant | None]:
    """A fresh look at one key after a 409: our copy, someone else's Secret, or nothing."""
    try:
        obj = kube.call(
            "get", "GET", f"/api/v1/namespaces/{key.namespace}/secrets/{key.name}", what=f"get Secret {key}"
        )
    except ApiError as e:
        if e.status == 404:
            return None, None
        raise
    if is_own_copy(obj, instance):
        return copy_from(obj), None
    return None, occupant_from(obj)
