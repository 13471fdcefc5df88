"""A cluster dump file → snapshot: the same snapshot type the live reader makes.

Takes what `kubectl get namespaces,secrets,builds.kpack.io,images.kpack.io -A -o yaml` prints (a
`kind: List`), several YAML documents, or JSON. Selection mirrors what the API server does for a
live run, so a plan from a dump matches a plan from the cluster it came from.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from syncjob.config import BuildResource, Settings
from syncjob.errors import ConfigError
from syncjob.model import Ref, Snapshot
from syncjob.objects import (
    copy_from,
    is_own_copy,
    namespace_from,
    occupant_from,
    source_from,
)


def _items(doc: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(doc, dict):
        return
    if doc.get("kind") == "List" or (doc.get("kind", "").endswith("List") and "items" in doc):
        for item in doc.get("items") or []:
            yield from _items(item)
    elif doc.get("kind"):
        yield doc


def load_objects(path: Path) -> list[dict[str, Any]]:
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"--snapshot {path}: cannot read it ({e.strerror})") from e
    try:
        docs = [json.loads(text)] if text.lstrip().startswith("{") else list(yaml.safe_load_all(text))
    except (ValueError, yaml.YAMLError) as e:
        # The parser's message can quote the line it choked on, which may hold secret data.
        raise ConfigError(f"--snapshot {path}: not valid YAML or JSON ({type(e).__name__})") from None
    return [item for doc in docs for item in _items(doc)]


def _is_build(obj: dict[str, Any], resources: tuple[BuildResource, ...]) -> bool:
    group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
    plural = str(obj.get("kind", "")).lower() + "s"
    return any(r.group == group and r.plural == plural and (not r.version or r.version == version) for r in resources)


def read_snapshot_file(path: Path, settings: Settings) -> Snapshot:
    objects = load_objects(path)
    secrets = [o for o in objects if o.get("kind") == "Secret" and o.get("apiVersion", "v1") == "v1"]
    namespaces = {n.name: n for n in (namespace_from(o) for o in objects if o.get("kind") == "Namespace")}
    for obj in objects:  # a dump without Namespace objects still implies the namespaces it names
        ns = (obj.get("metadata") or {}).get("namespace")
        if ns and ns not in namespaces:
            namespaces[ns] = namespace_from({"metadata": {"name": ns}})
    if settings.namespace_selector:
        namespaces = {k: v for k, v in namespaces.items() if settings.parsed_namespace_selector.matches(v.labels)}

    by_ref = {source_from(s).ref: s for s in secrets}
    sources = {
        ref: source_from(s)
        for ref, s in by_ref.items()
        if ref.namespace == settings.source_namespace
        and settings.parsed_source_selector.matches((s.get("metadata") or {}).get("labels") or {})
    }
    missing: list[Ref] = []
    for ref in settings.sources:
        if ref in by_ref:
            sources[ref] = source_from(by_ref[ref])
        else:
            missing.append(ref)

    builds = None
    if settings.by_builds:
        builds = frozenset(
            str((o.get("metadata") or {}).get("namespace", ""))
            for o in objects
            if _is_build(o, settings.build_resources)
        )
    return Snapshot(
        sources=tuple(sources.values()),
        namespaces=tuple(namespaces.values()),
        build_namespaces=builds,
        copies=tuple(copy_from(s) for s in secrets if is_own_copy(s, settings.instance)),
        occupants=tuple(occupant_from(s) for s in secrets if not is_own_copy(s, settings.instance)),
        missing_sources=tuple(missing),
    )
