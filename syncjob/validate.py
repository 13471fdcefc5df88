"""Which sources may fan out. A bad edit of a registry secret must not reach every build namespace.

Messages name the secret, the registry and the fix; they never quote a value.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from syncjob.model import DOCKERCFG, DOCKERCONFIGJSON, Source

MAX_SECRET_BYTES = 1024 * 1024  # the API server's limit on a Secret's data
LOGIN_HINT = (
    "recreate it from a plain config file: `DOCKER_CONFIG=$(mktemp -d) docker login REGISTRY`, then "
    "`kubectl create secret docker-registry` from that file, or `syncjob create-source`"
)


def _b64(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _check_entry(registry: str, entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return f"entry for registry {registry!r} is not a JSON object"
    if entry.get("identitytoken") or entry.get("registrytoken"):
        return None
    auth = entry.get("auth")
    if auth:
        raw = _b64(auth) if isinstance(auth, str) else None
        if raw is None:
            return f"'auth' for registry {registry!r} is not valid base64; it must encode 'user:password'"
        user, sep, password = raw.decode("utf-8", "replace").partition(":")
        if not sep or not user or not password:
            return f"'auth' for registry {registry!r} does not decode to 'user:password'"
        return None
    if entry.get("username") and entry.get("password"):
        return None
    return (
        f"registry {registry!r} has no credentials: it needs 'auth' (base64 of user:password), "
        "'username' and 'password', or 'identitytoken'"
    )


def _check_auths(auths: Mapping[str, Any]) -> list[str]:
    return [m for registry, entry in sorted(auths.items()) if (m := _check_entry(registry, entry))]


def _parse_json(source: Source, key: str) -> tuple[Any, str | None]:
    if key not in source.data:
        return None, f"has no {key!r} key; a {source.type} Secret keeps its config there"
    raw = _b64(source.data[key])
    if raw is None:
        return None, f"{key!r} is not valid base64"
    try:
        return json.loads(raw), None
    except (ValueError, UnicodeDecodeError):
        return None, f"{key!r} is not valid JSON; regenerate it with `docker login` or `syncjob create-source`"


def validate_dockerconfigjson(source: Source) -> list[str]:
    config, error = _parse_json(source, ".dockerconfigjson")
    if error:
        return [error]
    if not isinstance(config, dict):
        return ["'.dockerconfigjson' is not a JSON object"]
    auths = config.get("auths")
    if not auths:
        if config.get("credsStore") or config.get("credHelpers"):
            return [
                "holds only 'credsStore'/'credHelpers' and no credentials (Docker Desktop keeps them in the OS "
                "keychain, which Kubernetes cannot read); " + LOGIN_HINT
            ]
        return ["has an empty 'auths'; " + LOGIN_HINT]
    if not isinstance(auths, dict):
        return ["'auths' is not a JSON object"]
    return _check_auths(auths)


def validate_dockercfg(source: Source) -> list[str]:
    config, error = _parse_json(source, ".dockercfg")
    if error:
        return [error]
    if not isinstance(config, dict) or not config:
        return ['\'.dockercfg\' holds no registries (legacy shape: {"REGISTRY": {"auth": ...}})']
    if "auths" in config:
        return ["'.dockercfg' uses the new 'auths' shape; store it as type kubernetes.io/dockerconfigjson"]
    return _check_auths(config)


def validate_source(source: Source) -> list[str]:
    """Problems that stop this source from fanning out; empty when it is fine."""
    # Decoded size from the base64 length (padding '=' carries no data): no need to decode 1 MiB to count it.
    size = sum(len(v) * 3 // 4 - (len(v) - len(v.rstrip("="))) for v in source.data.values())
    if size > MAX_SECRET_BYTES:
        return [f"its data is about {size} bytes, over the 1 MiB Secret limit; split it into several Secrets"]
    if source.type == DOCKERCONFIGJSON:
        return validate_dockerconfigjson(source)
    if source.type == DOCKERCFG:
        return validate_dockercfg(source)
    return []
