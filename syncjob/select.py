"""Which namespaces are targets: builds or selectors, then globs, opt-outs and terminating ones."""

from __future__ import annotations

from dataclasses import dataclass

from syncjob.config import Settings
from syncjob.model import IGNORE_ANNOTATION, Namespace, Snapshot
from syncjob.selector import matches_any_glob


@dataclass(frozen=True)
class TargetDecision:
    namespace: str
    target: bool
    terminating: bool = False
    reason: str = ""  # why it is not a target (or why it is skipped)


def decide(ns: Namespace, snapshot: Snapshot, settings: Settings) -> TargetDecision:
    name = ns.name
    if name in settings.source_namespaces:
        return TargetDecision(name, False, reason="namespace holds sources")
    if matches_any_glob(name, settings.excluded):
        return TargetDecision(name, False, reason="namespace excluded")
    if settings.include and not matches_any_glob(name, settings.include):
        return TargetDecision(name, False, reason="namespace not in --include")
    if ns.annotations.get(IGNORE_ANNOTATION, "").lower() == "true":
        return TargetDecision(name, False, reason=f"namespace opted out ({IGNORE_ANNOTATION})")
    if settings.namespace_selector and not settings.parsed_namespace_selector.matches(ns.labels):
        return TargetDecision(name, False, reason="namespace does not match --namespace-selector")
    if settings.by_builds and name not in (snapshot.build_namespaces or frozenset()):
        return TargetDecision(name, False, reason="namespace has no builds")
    if ns.terminating:
        return TargetDecision(name, True, terminating=True, reason="namespace is terminating")
    return TargetDecision(name, True)


def decide_all(snapshot: Snapshot, settings: Settings) -> dict[str, TargetDecision]:
    return {ns.name: decide(ns, snapshot, settings) for ns in snapshot.namespaces}


def gone(name: str) -> TargetDecision:
    """A namespace the snapshot does not list (deleted, or filtered out server-side)."""
    return TargetDecision(name, False, reason="namespace not found or not selected")
