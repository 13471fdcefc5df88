"""Which namespaces are targets: builds or selectors, then globs, opt-outs and terminating ones;
and, per source, the narrowing its syncjob.dev/include and syncjob.dev/exclude annotations ask for."""

from __future__ import annotations

from dataclasses import dataclass

from syncjob.errors import ConfigError
from syncjob.model import EXCLUDE_ANNOTATION, IGNORE_ANNOTATION, INCLUDE_ANNOTATION, Namespace, Snapshot, Source
from syncjob.policy import Policy, check_globs
from syncjob.selector import matches_any_glob


@dataclass(frozen=True)
class TargetDecision:
    namespace: str
    target: bool
    terminating: bool = False
    reason: str = ""  # why it is not a target (or why it is skipped)


def decide(ns: Namespace, snapshot: Snapshot, policy: Policy) -> TargetDecision:
    name = ns.name
    if name == policy.source_namespace:
        return TargetDecision(name, False, reason="namespace holds sources")
    if matches_any_glob(name, policy.excluded):
        return TargetDecision(name, False, reason="namespace excluded")
    if policy.include and not matches_any_glob(name, policy.include):
        return TargetDecision(name, False, reason="namespace not in spec.targets.include")
    if ns.annotations.get(IGNORE_ANNOTATION, "").lower() == "true":
        return TargetDecision(name, False, reason=f"namespace opted out ({IGNORE_ANNOTATION})")
    if policy.namespace_selector is not None and not policy.namespace_selector.matches(ns.labels):
        return TargetDecision(name, False, reason="namespace does not match spec.targets.namespaceSelector")
    if policy.by_builds and name not in (snapshot.build_namespaces or frozenset()):
        return TargetDecision(name, False, reason="namespace has no builds")
    if ns.terminating:
        return TargetDecision(name, True, terminating=True, reason="namespace is terminating")
    return TargetDecision(name, True)


def decide_all(snapshot: Snapshot, policy: Policy) -> dict[str, TargetDecision]:
    return {ns.name: decide(ns, snapshot, policy) for ns in snapshot.namespaces}


def gone(name: str) -> TargetDecision:
    """A namespace the snapshot does not list (deleted, or filtered out server-side)."""
    return TargetDecision(name, False, reason="namespace not found or not selected")


@dataclass(frozen=True)
class SourceScope:
    """A source's own narrowing of the policy's targets (its annotations); empty include: no narrowing."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    def allows(self, namespace: str) -> bool:
        if self.include and not matches_any_glob(namespace, self.include):
            return False
        return not matches_any_glob(namespace, self.exclude)


def _globs(source: Source, key: str) -> tuple[str, ...]:
    value = source.annotations.get(key)
    if value is None:
        return ()
    globs = tuple(g.strip() for g in value.split(","))
    try:
        return check_globs(globs, f"annotation {key}")
    except ConfigError as e:
        raise ConfigError(f"{e}; write comma-separated globs, e.g. 'team-*,ci-?'") from None


def source_scope(source: Source) -> SourceScope:
    """Raises ConfigError for an annotation that is not a comma-separated list of namespace globs."""
    return SourceScope(_globs(source, INCLUDE_ANNOTATION), _globs(source, EXCLUDE_ANNOTATION))
