"""Plain-data builders for planner tests: no mocks, no server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from syncjob.model import (
    DOCKERCONFIGJSON,
    Copy,
    Namespace,
    Occupant,
    Snapshot,
    Source,
    frozen_map,
)
from syncjob.policy import Policy
from syncjob.selector import selector_from_spec

# Every credential a test puts into a Secret, in every form it travels in; the leak scan
# (tests/test_zz_no_leaks.py) looks for each of them in everything syncjob printed.
SEEDED_SECRETS: set[str] = set()


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def seed(*values: str) -> None:
    for value in values:
        SEEDED_SECRETS.update({value, b64(value)})


def docker_config(
    user: str = "robot", password: str = "s3cret", registry: str = "registry.example.com"
) -> dict[str, str]:
    config = {"auths": {registry: {"auth": b64(f"{user}:{password}")}}}
    seed(password, f"{user}:{password}", json.dumps(config))
    return {".dockerconfigjson": b64(json.dumps(config))}


def source(
    name: str = "regcred",
    namespace: str = "build-service",
    *,
    uid: str | None = None,
    type: str = DOCKERCONFIGJSON,
    data: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> Source:
    return Source(
        namespace=namespace,
        name=name,
        uid=uid or f"uid-{namespace}-{name}",
        type=type,
        data=frozen_map(data if data is not None else docker_config()),
        labels=frozen_map(labels or {"com.vmware.tanzu.buildservice.sync": "true"}),
        annotations=frozen_map(annotations),
    )


def policy(name: str = "syncjob", *, namespace_selector: dict[str, Any] | None = None, **fields: Any) -> Policy:
    """A Policy as a SecretSync with these fields would parse to (a selector as the spec writes it)."""
    where = "spec.targets.namespaceSelector"
    selector = selector_from_spec(namespace_selector, where) if namespace_selector is not None else None
    return Policy(name=name, namespace_selector=selector, **fields)


# The proof key of planner tests' snapshots (cluster() below), and the proof a copy carries, worked out
# here from its definition (an HMAC-SHA256 of six lines) rather than with syncjob's own helper.
PROOF_KEY = b"test-proof-key-0123456789abcdef!"


def proof_for(  # noqa: PLR0917 - the six lines of the proof, in their order
    namespace: str, name: str, owner_ns: str, owner_name: str, owner_uid: str, instance: str = "syncjob"
) -> str:
    message = f"{instance}\n{namespace}\n{name}\n{owner_ns}\n{owner_name}\n{owner_uid}".encode()
    return hmac.new(PROOF_KEY, message, hashlib.sha256).hexdigest()


def copy_of(src: Source, namespace: str, instance: str = "syncjob", **overrides: object) -> Copy:
    """The copy syncjob would have written for `src` in `namespace`, with optional drift. Spelled out
    literally, not with the planner's helpers: a test must not take its expectation from the code under test."""
    fields: dict[str, object] = {
        "namespace": namespace,
        "name": src.name,
        "uid": f"copy-{namespace}-{src.name}",
        "resource_version": "7",
        "type": src.type,
        "digest": src.digest,
        "labels": frozen_map({"app.kubernetes.io/managed-by": "syncjob", "syncjob.dev/instance": instance}),
        "annotations": frozen_map(
            {
                "syncjob.dev/source-namespace": src.namespace,
                "syncjob.dev/source-name": src.name,
                "syncjob.dev/source-uid": src.uid,
                "syncjob.dev/source-digest": src.digest,
                "syncjob.dev/proof": proof_for(namespace, src.name, src.namespace, src.name, src.uid, instance),
            }
        ),
    }
    fields.update(overrides)
    return Copy(**fields)  # type: ignore[arg-type]


def ns(name: str, *, phase: str = "Active", labels: dict[str, str] | None = None,
       annotations: dict[str, str] | None = None) -> Namespace:  # fmt: skip
    return Namespace(name, phase, frozen_map(labels), frozen_map(annotations))


def occupant(namespace: str, name: str = "regcred", managed_by: str = "", instance: str = "") -> Occupant:
    return Occupant(namespace, name, f"foreign-{namespace}-{name}", managed_by, instance)


def cluster(
    sources: list[Source],
    namespaces: list[str | object],
    builds: list[str],
    copies: list[Copy] | None = None,
    occupants: list[Occupant] | None = None,
) -> Snapshot:
    namespace_objs = tuple(n if isinstance(n, Namespace) else ns(str(n)) for n in ["build-service", *namespaces])
    return Snapshot(
        sources=tuple(sources),
        namespaces=namespace_objs,
        build_namespaces=frozenset(builds),
        copies=tuple(copies or ()),
        occupants=tuple(occupants or ()),
        proof_key=PROOF_KEY,
    )
