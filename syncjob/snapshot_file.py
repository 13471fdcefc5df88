"""A cluster dump file → snapshot: the same snapshot type the live reader makes.

Takes what `kubectl get secretsyncs,namespaces,secrets,builds.kpack.io,images.kpack.io -A -o yaml`
prints (a `kind: List`), several YAML documents, or JSON. Selection mirrors what the API server does
for a live run, so a plan from a dump matches a plan from the cluster it came from. The same loader
reads `--policy-file`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from syncjob.config import BuildResource
from syncjob.errors import ConfigError
from syncjob.model import Ref, Snapshot
from syncjob.objects import (
    copy_from,
    is_own_copy,
    is_syncjob_own,
    namespace_from,
    occupant_from,
    proof_key_from,
    source_from,
)
from syncjob.policy import InvalidPolicy, Policy, is_secretsync, policy_from
from syncjob.proof import PROOF_KEY_SECRET


def _items(doc: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(doc, dict):
        return
    if doc.get("kind") == "List" or (doc.get("kind", "").endswith("List") and "items" in doc):
        for item in doc.get("items") or []:
            yield from _items(item)
    elif doc.get("kind"):
        yield doc


def load_objects(path: Path, flag: str = "--snapshot") -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{flag} {path}: cannot read it ({e.strerror})") from e
    try:
        docs = [json.loads(text)] if text.lstrip().startswith("{") else list(yaml.safe_load_all(text))
    except (ValueError, yaml.YAMLError) as e:
        # The parser's message can quote the line it choked on, which may hold secret data.
        raise ConfigError(f"{flag} {path}: not valid YAML or JSON ({type(e).__name__})") from None
    return [item for doc in docs for item in _items(doc)]


def policies_in(objects: list[dict[str, Any]], origin: str) -> list[tuple[Policy | InvalidPolicy, dict[str, Any]]]:
    """The SecretSync objects among `objects`, each with the status it carries."""
    return [(policy_from(o, origin), dict(o.get("status") or {})) for o in objects if is_secretsync(o)]


def load_policy_file(path: Path) -> list[tuple[Policy | InvalidPolicy, dict[str, Any]]]:
    found = policies_in(load_objects(path, "--policy-file"), "file")
    if not found:
        raise ConfigError(f"--policy-file {path}: holds no SecretSync (apiVersion syncjob.dev/v1alpha1)")
    return found


def _is_build(obj: dict[str, Any], resources: tuple[BuildResource, ...]) -> bool:
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    plural = str(obj.get("kind", "")).lower() + "s"
    return any(r.group == group and r.plural == plural and (not r.version or r.version == version) for r in resources)


def snapshot_from_objects(objects: list[dict[str, Any]], policy: Policy) -> Snapshot:
    secrets = [o for o in objects if o.get("kind") == "Secret" and o.get("apiVersion", "v1") == "v1"]
    namespaces = {n.name: n for n in (namespace_from(o) for o in objects if o.get("kind") == "Namespace")}
    for obj in objects:  # a dump without Namespace objects still implies the namespaces it names
        ns = (obj.get("metadata") or {}).get("namespace")
        if ns and ns not in namespaces:
            namespaces[ns] = namespace_from({"metadata": {"name": ns}})
    if policy.namespace_selector is not None:
        selector = policy.namespace_selector
        namespaces = {k: v for k, v in namespaces.items() if selector.matches(v.labels)}

    by_ref = {source_from(s).ref: s for s in secrets}
    sources = {
        ref: source
        for ref, s in by_ref.items()
        if ref.namespace == policy.source_namespace
        and policy.source_selector.matches((s.get("metadata") or {}).get("labels") or {})
        and not is_syncjob_own(source := source_from(s))
    }
    key_secret = by_ref.get(Ref(policy.source_namespace, PROOF_KEY_SECRET))
    key = proof_key_from(key_secret) if key_secret else None
    missing: list[Ref] = []
    for ref in policy.sources:
        if ref in by_ref:
            sources[ref] = source_from(by_ref[ref])
        else:
            missing.append(ref)

    builds = None
    if policy.by_builds:
        builds = frozenset(
            str((o.get("metadata") or {}).get("namespace", "")) for o in objects if _is_build(o, policy.build_resources)
        )
    return Snapshot(
        sources=tuple(sources.values()),
        namespaces=tuple(namespaces.values()),
        build_namespaces=builds,
        copies=tuple(copy_from(s) for s in secrets if is_own_copy(s, policy.instance)),
        occupants=tuple(occupant_from(s) for s in secrets if not is_own_copy(s, policy.instance)),
        missing_sources=tuple(missing),
        proof_key=key,
    )
