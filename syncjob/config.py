"""Run settings: how one invocation runs (flags and SYNCJOB_* env), never what it syncs.

What to sync lives in SecretSync objects (syncjob/policy.py); nothing here can change a plan.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from syncjob.errors import ConfigError
from syncjob.selector import is_dns_label, is_dns_subdomain

DEFAULT_CONCURRENCY = 8

_VERSION_RE = re.compile(r"^v\d+((alpha|beta)\d+)?$")


@dataclass(frozen=True)
class BuildResource:
    """A kind whose objects mark a namespace as one that runs builds: `plural[.version].group`."""

    plural: str
    group: str
    version: str = ""  # empty: the newest version that serves this resource, found by discovery

    def __str__(self) -> str:
        return ".".join(p for p in (self.plural, self.version, self.group) if p)

    @classmethod
    def parse(cls, text: str, where: str = "spec.targets.builds") -> BuildResource:
        parts = text.strip().split(".")
        if len(parts) < 2 or not all(parts):
            raise ConfigError(
                f"{where}: {text!r} is not PLURAL.GROUP or PLURAL.VERSION.GROUP, "
                "e.g. builds.kpack.io or pipelineruns.v1.tekton.dev"
            )
        plural, rest = parts[0], parts[1:]
        version = ""
        if len(rest) > 1 and _VERSION_RE.match(rest[0]):
            version, rest = rest[0], rest[1:]
        group = ".".join(rest)
        if not is_dns_label(plural) or not is_dns_subdomain(group):
            raise ConfigError(f"{where}: {text!r}: {plural!r}.{group!r} is not a resource name")
        return cls(plural, group, version)


@dataclass(frozen=True)
class RunSettings:
    """How one invocation runs. Two invocations with different RunSettings plan the same changes
    (only --max-delete, a one-run release of the mass-deletion guard, lets more deletes through)."""

    policies: tuple[str, ...] = ()  # --policy NAME: only these SecretSyncs (default: every one)
    policy_file: Path | None = None  # --policy-file: local SecretSyncs instead of the cluster's (plan only)
    concurrency: int = DEFAULT_CONCURRENCY
    dry_run: str = ""  # "", "client" or "server"
    max_delete: int | None = None  # overrides spec.maxDelete for this run
    timeout: float | None = None
    kubeconfig: Path | None = None
    context: str = ""
    snapshot: Path | None = None
    output: str = ""  # "table", "json" or "" (table on a terminal, nothing otherwise)
    events: bool = False
    metrics_textfile: Path | None = None
    pushgateway: str = ""

    def __post_init__(self) -> None:
        for name in self.policies:
            if not is_dns_subdomain(name):
                raise ConfigError(f"--policy {name!r} is not a SecretSync name")
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
        if self.snapshot is not None and self.dry_run == "server":
            raise ConfigError("--snapshot plans against a file; --dry-run=server needs a cluster")
        if self.policy_file is not None and self.snapshot is None and not self.dry_run:
            # A local policy may preview a change, never apply it: the cluster's SecretSync is the intent.
            raise ConfigError(
                f"--policy-file {self.policy_file} only plans: add --dry-run to preview it, or make it the "
                f"cluster's policy with `kubectl apply -f {self.policy_file}`"
            )

    @property
    def effective_dry_run(self) -> str:
        """A snapshot file implies a client-side dry-run: there is nothing to write to."""
        return "client" if self.snapshot is not None else self.dry_run
