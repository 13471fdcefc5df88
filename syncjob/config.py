"""Settings: built once from flags and SYNCJOB_* environment variables, frozen, validated."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from syncjob.errors import ConfigError
from syncjob.model import DOCKERCFG, DOCKERCONFIGJSON, Ref
from syncjob.selector import (
    LabelSelector,
    is_dns_label,
    is_dns_subdomain,
    parse_label_selector,
)

DEFAULT_SOURCE_NAMESPACE = "build-service"
DEFAULT_SOURCE_SELECTOR = "com.vmware.tanzu.buildservice.sync=true"
DEFAULT_TYPES = (DOCKERCONFIGJSON, DOCKERCFG)
DEFAULT_BUILD_RESOURCES = ("builds.kpack.io", "images.kpack.io")
ALWAYS_EXCLUDED = ("kube-system", "kube-public", "kube-node-lease")
DEFAULT_INSTANCE = "syncjob"
DEFAULT_CONCURRENCY = 8

_VERSION_RE = re.compile(r"^v\d+((alpha|beta)\d+)?$")


@dataclass(frozen=True)
class BuildResource:
    """A kind whose objects mark a namespace as one that runs builds: `plural[.version].group`."""

    plural: str
    group: str
    version: str = ""  # empty: the server's preferred version, found by discovery

    def __str__(self) -> str:
        return ".".join(p for p in (self.plural, self.version, self.group) if p)

    @classmethod
    def parse(cls, text: str) -> BuildResource:
        parts = text.strip().split(".")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(
                f"--build-resource {text!r}: expected PLURAL.GROUP or PLURAL.VERSION.GROUP, "
                "e.g. builds.kpack.io or builds.v1alpha2.kpack.io"
            )
        plural, rest = parts[0], parts[1:]
        version = ""
        if len(rest) > 1 and _VERSION_RE.match(rest[0]):
            version, rest = rest[0], rest[1:]
        group = ".".join(rest)
        if not is_dns_label(plural) or not is_dns_subdomain(group):
            raise ConfigError(f"--build-resource {text!r}: {plural!r}.{group!r} is not a resource name")
        return cls(plural, group, version)


def parse_source_ref(text: str) -> Ref:
    ns, sep, name = text.strip().partition("/")
    if not sep or not is_dns_label(ns) or not is_dns_subdomain(name):
        raise ConfigError(f"--source {text!r}: expected NAMESPACE/NAME, e.g. build-service/registry-credentials")
    return Ref(ns, name)


@dataclass(frozen=True)
class Settings:
    source_namespace: str = DEFAULT_SOURCE_NAMESPACE
    source_selector: str = DEFAULT_SOURCE_SELECTOR
    sources: tuple[Ref, ...] = ()
    types: tuple[str, ...] = DEFAULT_TYPES
    build_resources: tuple[BuildResource, ...] = tuple(BuildResource.parse(r) for r in DEFAULT_BUILD_RESOURCES)
    all_namespaces: bool = False
    namespace_selector: str = ""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    instance: str = DEFAULT_INSTANCE
    concurrency: int = DEFAULT_CONCURRENCY
    dry_run: str = ""  # "", "client" or "server"
    max_delete: int | None = None  # None: more than 10 and more than 25 % of the managed copies
    timeout: float | None = None
    kubeconfig: Path | None = None
    context: str = ""
    snapshot: Path | None = None
    output: str = ""  # "table", "json" or "" (table on a terminal, nothing otherwise)
    copy_labels: tuple[str, ...] = ()
    copy_annotations: tuple[str, ...] = ()
    patch_service_accounts: tuple[str, ...] = ()
    create_service_accounts: bool = False
    events: bool = False
    metrics_textfile: Path | None = None
    pushgateway: str = ""
    parsed_source_selector: LabelSelector = field(init=False, compare=False, repr=False)
    parsed_namespace_selector: LabelSelector = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not is_dns_label(self.source_namespace):
            raise ConfigError(f"--source-namespace {self.source_namespace!r} is not a valid namespace name")
        object.__setattr__(
            self, "parsed_source_selector", parse_label_selector(self.source_selector, "--source-selector")
        )
        object.__setattr__(
            self,
            "parsed_namespace_selector",
            parse_label_selector(self.namespace_selector, "--namespace-selector"),
        )
        if self.all_namespaces and self.namespace_selector:
            raise ConfigError("--all-namespaces and --namespace-selector exclude each other; pick one")
        if not self.build_resources and not self.all_namespaces and not self.namespace_selector:
            raise ConfigError(
                "no way to choose targets: give --build-resource, --all-namespaces or --namespace-selector"
            )
        if not self.types:
            raise ConfigError("--types is empty; the default is " + ",".join(DEFAULT_TYPES))
        if not re.match(r"^[a-z0-9]([-a-z0-9.]{0,61}[a-z0-9])?$", self.instance):
            raise ConfigError(f"--instance {self.instance!r} must be a valid label value (lower case, '-', '.')")
        if not 1 <= self.concurrency <= 64:
            raise ConfigError(f"--concurrency {self.concurrency} must be between 1 and 64")
        if self.dry_run not in ("", "client", "server"):
            raise ConfigError(f"--dry-run={self.dry_run!r}: use --dry-run (client) or --dry-run=server")
        if self.max_delete is not None and self.max_delete < 0:
            raise ConfigError("--max-delete must be 0 or more")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError("--timeout must be a positive number of seconds")
        if self.output not in ("", "table", "json"):
            raise ConfigError(f"-o {self.output!r}: use table or json")
        for name in self.patch_service_accounts:
            if not is_dns_subdomain(name):
                raise ConfigError(f"--patch-service-accounts: {name!r} is not a ServiceAccount name")
        if self.create_service_accounts and not self.patch_service_accounts:
            raise ConfigError("--create-service-accounts needs --patch-service-accounts NAME[,NAME]")
        if self.snapshot is not None and self.dry_run == "server":
            raise ConfigError("--snapshot plans against a file; --dry-run=server needs a cluster")

    @property
    def source_namespaces(self) -> frozenset[str]:
        return frozenset({self.source_namespace, *(r.namespace for r in self.sources)})

    @property
    def by_builds(self) -> bool:
        return not self.all_namespaces and not self.namespace_selector

    @property
    def excluded(self) -> tuple[str, ...]:
        return ALWAYS_EXCLUDED + self.exclude

    @property
    def effective_dry_run(self) -> str:
        """A snapshot file implies a client-side dry-run: there is nothing to write to."""
        return "client" if self.snapshot is not None else self.dry_run
