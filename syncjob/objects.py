"""Kubernetes objects as JSON dicts → snapshot dataclasses. Shared by the live reader and the dump reader."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from syncjob.model import (
    INSTANCE_LABEL,
    MANAGED_BY_LABEL,
    MANAGED_BY_VALUE,
    Copy,
    Namespace,
    Occupant,
    ServiceAccount,
    Source,
    content_digest,
    frozen_map,
)
from syncjob.proof import PROOF_KEY_FIELD

Obj = Mapping[str, Any]


def _meta(obj: Obj) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _str_map(value: Any) -> Mapping[str, str]:
    return frozen_map({str(k): str(v) for k, v in (value or {}).items()})


def secret_type(obj: Obj) -> str:
    return str(obj.get("type") or "Opaque")


def secret_data(obj: Obj) -> Mapping[str, str]:
    return _str_map(obj.get("data"))


def source_from(obj: Obj) -> Source:
    meta = _meta(obj)
    return Source(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        type=secret_type(obj),
        data=secret_data(obj),
        labels=_str_map(meta.get("labels")),
        annotations=_str_map(meta.get("annotations")),
        resource_version=str(meta.get("resourceVersion", "")),
        creation_timestamp=str(meta.get("creationTimestamp", "")),
    )


def copy_from(obj: Obj) -> Copy:
    meta = _meta(obj)
    return Copy(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        type=secret_type(obj),
        digest=content_digest(secret_type(obj), secret_data(obj)),
        labels=_str_map(meta.get("labels")),
        annotations=_str_map(meta.get("annotations")),
        immutable=bool(obj.get("immutable")),
    )


def occupant_from(obj: Obj) -> Occupant:
    meta = _meta(obj)
    labels = meta.get("labels") or {}
    return Occupant(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        managed_by=str(labels.get(MANAGED_BY_LABEL, "")),
        instance=str(labels.get(INSTANCE_LABEL, "")),
    )


def namespace_from(obj: Obj) -> Namespace:
    meta = _meta(obj)
    phase = "Terminating" if meta.get("deletionTimestamp") else str((obj.get("status") or {}).get("phase") or "Active")
    return Namespace(
        name=str(meta.get("name", "")),
        phase=phase,
        labels=_str_map(meta.get("labels")),
        annotations=_str_map(meta.get("annotations")),
    )


def managed_selector(instance: str) -> str:
    """The server-side label selector for this instance's copies."""
    return f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE},{INSTANCE_LABEL}={instance}"


def is_own_copy(obj: Obj, instance: str) -> bool:
    labels = _meta(obj).get("labels") or {}
    return labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE and labels.get(INSTANCE_LABEL) == instance


def service_account_from(obj: Obj) -> ServiceAccount:
    meta = _meta(obj)
    refs = tuple(str(r.get("name", "")) for r in obj.get("imagePullSecrets") or [] if isinstance(r, dict))
    return ServiceAccount(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        resource_version=str(meta.get("resourceVersion", "")),
        image_pull_secrets=refs,
        annotations=_str_map(meta.get("annotations")),
    )


def is_syncjob_own(source: Source) -> bool:
    """A Secret syncjob made for itself (its proof key, a copy): never a source, whatever the selector."""
    return source.labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE


def proof_key_from(obj: Obj) -> bytes | None:
    """The key in a proof-key Secret (syncjob/proof.py); None when it is empty or damaged: it proves nothing."""
    try:
        return base64.b64decode(str((obj.get("data") or {}).get(PROOF_KEY_FIELD, "")), validate=True) or None
    except (binascii.Error, ValueError):
        return None
