"""Snapshot and action dataclasses: the plain data every other module stands on.

Nothing here does I/O. Secret data is held only for sources (they are few, and the applier needs
their bytes); copies and other secrets are reduced to a digest when they are read.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# One prefix for every key syncjob owns.
PREFIX = "syncjob.dev"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "syncjob"
INSTANCE_LABEL = f"{PREFIX}/instance"
SOURCE_NAMESPACE_ANNOTATION = f"{PREFIX}/source-namespace"
SOURCE_NAME_ANNOTATION = f"{PREFIX}/source-name"
SOURCE_UID_ANNOTATION = f"{PREFIX}/source-uid"
SOURCE_DIGEST_ANNOTATION = f"{PREFIX}/source-digest"
PROOF_ANNOTATION = f"{PREFIX}/proof"  # see syncjob/proof.py
IGNORE_ANNOTATION = f"{PREFIX}/ignore"
# On a source: globs (comma-separated) that narrow where it goes; they never widen the policy's targets.
INCLUDE_ANNOTATION = f"{PREFIX}/include"
EXCLUDE_ANNOTATION = f"{PREFIX}/exclude"
# On a ServiceAccount: the imagePullSecrets this instance added (comma-separated), so that it only
# ever removes references it made. One key per instance: "syncjob.dev/pull-secrets.<instance>".
PULL_SECRETS_ANNOTATION_PREFIX = f"{PREFIX}/pull-secrets."
SECRET = "Secret"
SERVICE_ACCOUNT = "ServiceAccount"

DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
DOCKERCFG = "kubernetes.io/dockercfg"

EMPTY: Mapping[str, str] = MappingProxyType({})


def frozen_map(values: Mapping[str, str] | None) -> Mapping[str, str]:
    return MappingProxyType(dict(values or {}))


def content_digest(secret_type: str, data: Mapping[str, str]) -> str:
    """A stable digest of a Secret's type and data (base64 values as the API returns them)."""
    canonical = json.dumps([secret_type, sorted(data.items())], separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, order=True)
class Ref:
    """namespace/name of an object."""

    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Source:
    """A Secret to fan out. `data` holds base64 values as the API returns them."""

    namespace: str
    name: str
    uid: str
    type: str
    data: Mapping[str, str] = field(repr=False, compare=False)
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    annotations: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    resource_version: str = ""
    creation_timestamp: str = ""

    @property
    def ref(self) -> Ref:
        return Ref(self.namespace, self.name)

    @functools.cached_property
    def digest(self) -> str:
        """Computed once per source (the planner asks for it for every key)."""
        return content_digest(self.type, self.data)


@dataclass(frozen=True)
class Namespace:
    name: str
    phase: str = "Active"
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    annotations: Mapping[str, str] = field(default_factory=lambda: EMPTY)

    @property
    def terminating(self) -> bool:
        return self.phase == "Terminating"


@dataclass(frozen=True)
class Copy:
    """A Secret carrying this instance's managed labels. Its data is kept only as a digest."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    type: str
    digest: str
    labels: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    annotations: Mapping[str, str] = field(default_factory=lambda: EMPTY)
    immutable: bool = False

    @property
    def ref(self) -> Ref:
        return Ref(self.namespace, self.name)

    @property
    def owner(self) -> Ref | None:
        """The source named by the owner annotations, or None when they are missing."""
        ns = self.annotations.get(SOURCE_NAMESPACE_ANNOTATION, "")
        name = self.annotations.get(SOURCE_NAME_ANNOTATION, "")
        uid = self.annotations.get(SOURCE_UID_ANNOTATION, "")
        return Ref(ns, name) if ns and name and uid else None

    @property
    def owner_uid(self) -> str:
        return self.annotations.get(SOURCE_UID_ANNOTATION, "")


@dataclass(frozen=True)
class Occupant:
    """A Secret that is not this instance's copy, sitting where a copy would go."""

    namespace: str
    name: str
    uid: str
    managed_by: str = ""  # the managed-by label, if any: names another tool or another instance
    instance: str = ""
    unproven: bool = False  # carries this instance's labels, but its proof does not verify

    @property
    def ref(self) -> Ref:
        return Ref(self.namespace, self.name)


@dataclass(frozen=True)
class ServiceAccount:
    namespace: str
    name: str
    uid: str
    resource_version: str
    image_pull_secrets: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=lambda: EMPTY)

    @property
    def ref(self) -> Ref:
        return Ref(self.namespace, self.name)

    def added_by(self, instance: str) -> tuple[str, ...]:
        value = self.annotations.get(PULL_SECRETS_ANNOTATION_PREFIX + instance, "")
        return tuple(v for v in value.split(",") if v)


@dataclass(frozen=True)
class Snapshot:
    """What one run knows about the cluster."""

    sources: tuple[Source, ...] = ()
    namespaces: tuple[Namespace, ...] = ()
    # Namespaces holding at least one build object; None when targets are not chosen by builds.
    build_namespaces: frozenset[str] | None = None
    copies: tuple[Copy, ...] = ()
    occupants: tuple[Occupant, ...] = ()
    # Explicit --source entries that do not exist.
    missing_sources: tuple[Ref, ...] = ()
    # ServiceAccounts named by spec.serviceAccounts.patch, in every namespace.
    service_accounts: tuple[ServiceAccount, ...] = ()
    # The key that proves copies (syncjob/proof.py); None when it does not exist yet.
    proof_key: bytes | None = field(default=None, repr=False)


class Kind(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    RECREATE = "recreate"
    DELETE = "delete"
    CONFLICT = "conflict"
    SKIP = "skip"
    LEAVE = "leave"
    HOLD = "hold"  # a delete held back by the mass-deletion guard
    PATCH = "patch"  # a ServiceAccount's imagePullSecrets

    @property
    def writes(self) -> bool:
        return self in (Kind.CREATE, Kind.UPDATE, Kind.RECREATE, Kind.DELETE, Kind.PATCH)


@dataclass(frozen=True)
class Action:
    """One planned step for one (namespace, name). `expected_*` are the write's preconditions."""

    kind: Kind
    namespace: str
    name: str
    reason: str
    source: Ref | None = None
    expected_uid: str = ""
    expected_resource_version: str = ""
    resource: str = SECRET
    # ServiceAccount actions: the whole imagePullSecrets list to write and what syncjob added to it.
    pull_secrets: tuple[str, ...] = ()
    added: tuple[str, ...] = ()

    @property
    def ref(self) -> Ref:
        return Ref(self.namespace, self.name)

    @property
    def display_name(self) -> str:
        return self.name if self.resource == SECRET else f"{self.resource.lower()}/{self.name}"


class Outcome(enum.StrEnum):
    DONE = "done"
    PLANNED = "planned"  # client dry-run: nothing sent
    DRY_RUN = "dry-run"  # server dry-run: sent with dryRun=All and accepted
    FAILED = "failed"
    NOT_RUN = "not-run"  # the run's deadline came first
    REPORTED = "reported"  # conflicts, skips, holds: nothing to write


@dataclass(frozen=True)
class Result:
    action: Action
    outcome: Outcome
    error: str = ""
    policy: str = ""  # the SecretSync whose plan the action belongs to


@dataclass(frozen=True)
class SourceProblem:
    """A source that cannot fan out: invalid content, a type not enabled, or not found."""

    source: Ref
    message: str
    fatal: bool = True  # counts towards exit code 1


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    problems: tuple[SourceProblem, ...] = ()
    notes: tuple[str, ...] = ()  # run-level explanations, e.g. why deletes were held
    unproven: tuple[Ref, ...] = ()  # Secrets with this instance's labels that are not provably its copies

    def of_kind(self, *kinds: Kind) -> list[Action]:
        return [a for a in self.actions if a.kind in kinds]
