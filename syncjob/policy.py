"""SecretSync objects → Policy: the intent every run, `status` and dry-run read.

One SecretSync is one instance: its metadata.name labels its copies. The CRD's schema refuses what
it can at `kubectl apply`; this module applies the same defaults (a policy file or a dump carries
none) and judges what the schema cannot, naming the field and the fix.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from syncjob.config import BuildResource
from syncjob.errors import ConfigError
from syncjob.model import DOCKERCFG, DOCKERCONFIGJSON, Ref
from syncjob.selector import LabelSelector, is_dns_label, is_dns_subdomain, selector_from_spec

GROUP = "syncjob.dev"
VERSION = "v1alpha1"
KIND = "SecretSync"
PLURAL = "secretsyncs"
API_VERSION = f"{GROUP}/{VERSION}"

DEFAULT_SOURCE_NAMESPACE = "build-service"
DEFAULT_SOURCE_SELECTOR: Mapping[str, Any] = {"matchLabels": {"com.vmware.tanzu.buildservice.sync": "true"}}
DEFAULT_TYPES = (DOCKERCONFIGJSON, DOCKERCFG)
DEFAULT_BUILD_RESOURCES = ("builds.kpack.io", "images.kpack.io")
ALWAYS_EXCLUDED = ("kube-system", "kube-public", "kube-node-lease")
SERVICE_ACCOUNT_TOKEN = "kubernetes.io/service-account-token"
CONFLICT_POLICIES = ("Report", "Fail")
DEFAULT_POLICY_FILE = "k8s/policies/default.yaml"

_TYPE_RE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?$")
_GLOB_RE = re.compile(r"^[a-z0-9*?][-a-z0-9*?]{0,62}$")
_INSTANCE_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class Policy:
    """What one SecretSync asks for, defaults applied. Field names follow the spec's."""

    name: str  # metadata.name: the instance its copies carry
    source_namespace: str = DEFAULT_SOURCE_NAMESPACE
    source_selector: LabelSelector = field(
        default_factory=lambda: selector_from_spec(DEFAULT_SOURCE_SELECTOR, "spec.sources.selector")
    )
    sources: tuple[Ref, ...] = ()  # spec.sources.names
    types: tuple[str, ...] = DEFAULT_TYPES
    build_resources: tuple[BuildResource, ...] = tuple(BuildResource.parse(r) for r in DEFAULT_BUILD_RESOURCES)
    all_namespaces: bool = False
    namespace_selector: LabelSelector | None = None
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    patch_service_accounts: tuple[str, ...] = ()
    create_service_accounts: bool = False
    copy_labels: tuple[str, ...] = ()
    copy_annotations: tuple[str, ...] = ()
    conflict_policy: str = "Report"
    max_delete: int | None = None  # None: more than 10 and more than 25 % of the provable copies
    # Where it came from: "cluster" (status is written), "file" or "snapshot" (never written).
    origin: str = "cluster"
    generation: int = 0

    @property
    def instance(self) -> str:
        return self.name

    @property
    def by_builds(self) -> bool:
        return not self.all_namespaces and self.namespace_selector is None

    @property
    def excluded(self) -> tuple[str, ...]:
        return ALWAYS_EXCLUDED + self.exclude


@dataclass(frozen=True)
class InvalidPolicy:
    """A SecretSync the job cannot act on: its message names the field and the fix."""

    name: str
    message: str
    origin: str = "cluster"
    generation: int = 0


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{where}: expected a list of strings")
    return tuple(v.strip() for v in value)


def _map(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected an object")
    return value


def _source_ref(text: str, where: str) -> Ref:
    ns, sep, name = text.partition("/")
    if not sep or not is_dns_label(ns) or not is_dns_subdomain(name):
        raise ConfigError(f"{where}: {text!r} is not NAMESPACE/NAME, e.g. build-service/registry-credentials")
    return Ref(ns, name)


def check_globs(globs: tuple[str, ...], where: str) -> tuple[str, ...]:
    for glob in globs:
        if not _GLOB_RE.match(glob):
            raise ConfigError(
                f"{where}: {glob!r} is not a namespace glob (lower-case letters, digits, '-', '*' and '?')"
            )
    return globs


def _types(value: Any) -> tuple[str, ...]:
    types = _strings(value, "spec.types") if value is not None else DEFAULT_TYPES
    if not types:
        raise ConfigError("spec.types is empty; leave it out for the default " + ", ".join(DEFAULT_TYPES))
    for t in types:
        if t == SERVICE_ACCOUNT_TOKEN:
            raise ConfigError(f"spec.types: {SERVICE_ACCOUNT_TOKEN} is never synced (a token copy is a new identity)")
        if not _TYPE_RE.match(t):
            raise ConfigError(f"spec.types: {t!r} is not a Secret type, e.g. Opaque or kubernetes.io/dockerconfigjson")
    return types


def _parse_spec(name: str, spec: Mapping[str, Any], origin: str, generation: int) -> Policy:
    if not _INSTANCE_RE.match(name):
        raise ConfigError(
            f"metadata.name {name!r}: a SecretSync's name labels its copies, so it must be a valid label value "
            "(at most 63 lower-case letters, digits, '-' and '.')"
        )
    known = {"sources", "types", "targets", "serviceAccounts", "copyMetadata", "conflictPolicy", "maxDelete"}
    unknown = set(spec) - known
    if unknown:
        raise ConfigError(f"spec: unknown field(s) {', '.join(sorted(unknown))}")

    sources = _map(spec.get("sources"), "spec.sources")
    source_namespace = str(sources.get("namespace") or DEFAULT_SOURCE_NAMESPACE)
    if not is_dns_label(source_namespace):
        raise ConfigError(f"spec.sources.namespace: {source_namespace!r} is not a namespace name")
    selector_spec = sources.get("selector")
    selector_spec = DEFAULT_SOURCE_SELECTOR if selector_spec is None else selector_spec
    source_selector = selector_from_spec(selector_spec, "spec.sources.selector")
    names = tuple(
        _source_ref(t, f"spec.sources.names[{i}]")
        for i, t in enumerate(_strings(sources.get("names"), "spec.sources.names"))
    )

    targets = _map(spec.get("targets"), "spec.targets")
    all_namespaces = targets.get("allNamespaces", False)
    if not isinstance(all_namespaces, bool):
        raise ConfigError("spec.targets.allNamespaces: expected true or false")
    has_selector = targets.get("namespaceSelector") is not None
    namespace_selector = (
        selector_from_spec(targets["namespaceSelector"], "spec.targets.namespaceSelector") if has_selector else None
    )
    if all_namespaces and has_selector:
        raise ConfigError("spec.targets: allNamespaces and namespaceSelector exclude each other; keep one")
    builds_given = targets.get("builds") is not None
    if builds_given and (all_namespaces or has_selector):
        raise ConfigError(
            "spec.targets.builds chooses targets by builds; allNamespaces and namespaceSelector choose them "
            "otherwise. Keep one way"
        )
    build_texts = _strings(targets.get("builds"), "spec.targets.builds") if builds_given else DEFAULT_BUILD_RESOURCES
    if not build_texts and not all_namespaces and not has_selector:
        raise ConfigError(
            "spec.targets.builds is empty: no way to choose targets. List build kinds, or set "
            "allNamespaces or namespaceSelector"
        )
    builds = tuple(BuildResource.parse(t, f"spec.targets.builds[{i}]") for i, t in enumerate(build_texts))

    accounts = _map(spec.get("serviceAccounts"), "spec.serviceAccounts")
    patch = _strings(accounts.get("patch"), "spec.serviceAccounts.patch")
    for account in patch:
        if not is_dns_subdomain(account):
            raise ConfigError(f"spec.serviceAccounts.patch: {account!r} is not a ServiceAccount name")
    create = accounts.get("create", False)
    if not isinstance(create, bool):
        raise ConfigError("spec.serviceAccounts.create: expected true or false")
    if create and not patch:
        raise ConfigError("spec.serviceAccounts.create needs spec.serviceAccounts.patch (the names to create)")

    copy = _map(spec.get("copyMetadata"), "spec.copyMetadata")
    conflict_policy = str(spec.get("conflictPolicy") or "Report")
    if conflict_policy not in CONFLICT_POLICIES:
        raise ConfigError(f"spec.conflictPolicy: {conflict_policy!r} is not one of {', '.join(CONFLICT_POLICIES)}")
    max_delete = spec.get("maxDelete")
    if max_delete is not None and (not isinstance(max_delete, int) or isinstance(max_delete, bool) or max_delete < 0):
        raise ConfigError("spec.maxDelete: expected a whole number, 0 or more")

    return Policy(
        name=name,
        source_namespace=source_namespace,
        source_selector=source_selector,
        sources=names,
        types=_types(spec.get("types")),
        build_resources=builds if not (all_namespaces or has_selector) else (),
        all_namespaces=all_namespaces,
        namespace_selector=namespace_selector,
        include=check_globs(_strings(targets.get("include"), "spec.targets.include"), "spec.targets.include"),
        exclude=check_globs(_strings(targets.get("exclude"), "spec.targets.exclude"), "spec.targets.exclude"),
        patch_service_accounts=patch,
        create_service_accounts=create,
        copy_labels=_strings(copy.get("labels"), "spec.copyMetadata.labels"),
        copy_annotations=_strings(copy.get("annotations"), "spec.copyMetadata.annotations"),
        conflict_policy=conflict_policy,
        max_delete=max_delete,
        origin=origin,
        generation=generation,
    )


def policy_from(obj: Mapping[str, Any], origin: str = "cluster") -> Policy | InvalidPolicy:
    """A SecretSync object (as the API or a YAML file gives it) → Policy, or InvalidPolicy saying why."""
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    name = str(meta.get("name") or "")
    generation = int(meta.get("generation") or 0)
    try:
        if not name:
            raise ConfigError("metadata.name is missing")
        return _parse_spec(name, _map(obj.get("spec"), "spec"), origin, generation)
    except ConfigError as e:
        return InvalidPolicy(name or "<unnamed>", str(e), origin, generation)


def is_secretsync(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") == KIND and str(obj.get("apiVersion", "")).startswith(f"{GROUP}/")
