"""`syncjob create-source`: a Docker config → a correct, labelled source Secret, in one command.

Replaces `rm ~/.docker/config.json; docker login; kubectl apply`: the config is validated exactly as
`syncjob run` validates sources (`validate_source`), reduced to the named registries and to their
credentials, and printed as a Secret manifest, or created/updated on the cluster with --apply.

The manifest on stdout necessarily holds the credential (base64), like
`kubectl create secret --dry-run=client -o yaml`: it is the artifact asked for. Nothing else this
command prints (errors, warnings, the --apply confirmation) ever contains a credential.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import yaml

from syncjob.errors import EXIT_OK, ApiError, ConfigError, SyncjobError
from syncjob.model import DOCKERCONFIGJSON, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Source, frozen_map
from syncjob.policy import DEFAULT_SOURCE_NAMESPACE, DEFAULT_SOURCE_SELECTOR
from syncjob.selector import is_dns_label, is_dns_subdomain
from syncjob.validate import validate_source

if TYPE_CHECKING:
    from syncjob.kube.client import Kube

((SYNC_LABEL_KEY, SYNC_LABEL_VALUE),) = DEFAULT_SOURCE_SELECTOR["matchLabels"].items()
DATA_KEY = ".dockerconfigjson"
# Per-registry fields that carry credentials; everything else in an entry (email, ...) is dropped.
CREDENTIAL_FIELDS = ("auth", "username", "password", "identitytoken", "registrytoken")
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
# Docker Hub goes by several names; `docker login` stores it under the first.
DOCKER_HUB = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")

READ_ONLY_WARNING = (
    "WARNING: a synced source is copied into every build namespace: use a read-only (pull-only) robot "
    "account or token, never a personal or push-capable login."
)
DESCRIPTION = """\
Turn a Docker config into a labelled kubernetes.io/dockerconfigjson source Secret, validated exactly as
`syncjob run` validates sources. Only the named registries and their credentials are kept; credsStore,
credHelpers, HttpHeaders, psFormat and every other setting are dropped.

Without --apply the Secret is printed as YAML on stdout. That manifest CONTAINS THE CREDENTIAL (base64
is an encoding, not encryption), like `kubectl create secret --dry-run=client -o yaml`: do not commit
or paste it. With --apply it is created, or updated in place, and only a one-line confirmation is
printed.
"""
EPILOG = """\
examples:
  DOCKER_CONFIG=$(mktemp -d) docker login registry.example.com     # a plain config, no keychain
  syncjob create-source registry-credentials --from-docker-config "$DOCKER_CONFIG" --apply
  syncjob create-source regcred --from-docker-config ~/.docker/config.json --registry ghcr.io > regcred.yaml
  printf %s "$TOKEN" | syncjob create-source regcred --docker-server ghcr.io \\
      --docker-username robot --docker-password-stdin --apply

exit codes:
  0  done
  1  the API server refused the write
  2  bad input: unreadable or invalid config, unknown registry, bad flags, cluster unreachable
"""


class _RefusePasswordFlag(argparse.Action):
    """--docker-password VALUE: remembered as 'given', never stored, never echoed."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, True)


def add_parser(subparsers: Any) -> None:
    """Register `create-source` on the subparsers object of the `syncjob` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "create-source",
        help="make a labelled source Secret from a Docker config (prints it, or --apply)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # No prefix matching: `--docker-password X` must never be read as `--docker-password-stdin`
        # followed by a stray argument that argparse would echo in its error message.
        allow_abbrev=False,
    )
    parser.add_argument("name", metavar="NAME", help="name of the Secret")
    parser.add_argument(
        "--from-docker-config",
        metavar="PATH",
        type=Path,
        help="a Docker config.json, or a directory holding one (like DOCKER_CONFIG)",
    )
    parser.add_argument(
        "--registry",
        metavar="HOST",
        action="append",
        default=[],
        help="keep only this registry of the config (repeatable, commas accepted; default: all of them)",
    )
    parser.add_argument("--docker-server", metavar="HOST", help="registry, instead of --from-docker-config")
    parser.add_argument("--docker-username", metavar="USER", help="user name for --docker-server")
    parser.add_argument(
        "--docker-password-stdin",
        action="store_true",
        help="read the password or token for --docker-server from stdin (never from the command line)",
    )
    parser.add_argument(
        "--docker-password", nargs="?", action=_RefusePasswordFlag, default=False, help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--namespace",
        "-n",
        metavar="NS",
        default=DEFAULT_SOURCE_NAMESPACE,
        help="namespace of the Secret (default %(default)s, where `syncjob run` looks)",
    )
    parser.add_argument(
        "--apply", action="store_true", help="create or update the Secret on the cluster; print no credential"
    )
    parser.add_argument(
        "--kubeconfig",
        metavar="PATH",
        type=Path,
        help="with --apply (default: in-cluster, then KUBECONFIG, ~/.kube/config)",
    )
    parser.add_argument("--context", metavar="NAME", default="", help="kubeconfig context, with --apply")


# --- the config ---------------------------------------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _source(config: Any, namespace: str, name: str) -> Source:
    """The Secret as `syncjob run` would see it, for `validate_source`."""
    data = {DATA_KEY: _b64(json.dumps(config, separators=(",", ":")))}
    return Source(namespace=namespace, name=name, uid="", type=DOCKERCONFIGJSON, data=frozen_map(data))


def _refuse(namespace: str, name: str, problems: Sequence[str], hint: str = "") -> ConfigError:
    text = "; ".join(problems)
    return ConfigError(f"source {namespace}/{name} would be refused by `syncjob run`: it {text}{hint}")


CREATE_SOURCE_HINT = (
    '. Here: after that `docker login`, run `syncjob create-source NAME --from-docker-config "$DOCKER_CONFIG"`, '
    "or give the credential with --docker-server, --docker-username and --docker-password-stdin"
)


def read_docker_config(path: Path) -> Any:
    """The parsed JSON of a config.json (or of DIR/config.json). Errors never quote the file's content."""
    path = path.expanduser()
    if path.is_dir():
        path = path / "config.json"
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"--from-docker-config {path}: cannot read it ({e.strerror or type(e).__name__})") from None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"--from-docker-config {path}: not valid JSON (line {e.lineno}, column {e.colno})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--from-docker-config {path}: not UTF-8 text") from None


def _host(registry: str) -> str:
    """`https://ghcr.io/v2/` → `ghcr.io`; Docker Hub's aliases → `docker.io`."""
    host = registry.strip().lower()
    if "://" in host:
        host = host.split("://", 1)[1]
    host = host.split("/", 1)[0]
    return "docker.io" if host in DOCKER_HUB else host


def select_registries(auths: Mapping[str, Any], wanted: Sequence[str]) -> dict[str, Any]:
    """The entries of `auths` named by `wanted` (exact key, or the same host), in the config's order."""
    if not wanted:
        return dict(auths)
    chosen: dict[str, Any] = {}
    for registry in wanted:
        matches = [key for key in auths if key == registry] or [key for key in auths if _host(key) == _host(registry)]
        if not matches:
            available = ", ".join(sorted(auths)) or "none"
            raise ConfigError(f"--registry {registry}: not in the Docker config; it has: {available}")
        for key in matches:
            chosen[key] = auths[key]
    return {key: entry for key, entry in auths.items() if key in chosen}


def normalise_entry(entry: Any) -> Any:
    """Only credential fields; `username` + `password` also as `auth` (base64 of user:password)."""
    if not isinstance(entry, dict):
        return entry  # validate_source names the registry and the problem
    kept = {k: entry[k] for k in CREDENTIAL_FIELDS if entry.get(k)}
    if "auth" not in kept and isinstance(kept.get("username"), str) and isinstance(kept.get("password"), str):
        kept["auth"] = _b64(f"{kept['username']}:{kept['password']}")
    return kept


def _has_credentials(entry: Any) -> bool:
    return isinstance(entry, dict) and any(entry.get(k) for k in CREDENTIAL_FIELDS)


def config_from_docker_config(config: Any, registries: Sequence[str], namespace: str, name: str) -> dict[str, Any]:
    """The `.dockerconfigjson` to store: validated as the engine validates, reduced to `auths`."""
    auths = config.get("auths") if isinstance(config, dict) else None
    keychain = isinstance(config, dict) and bool(config.get("credsStore") or config.get("credHelpers"))
    if not auths or not isinstance(auths, dict):
        # Not a JSON object, no `auths`, or only credsStore/credHelpers: the engine's own message.
        problems = validate_source(_source(config, namespace, name)) or ["has no 'auths'"]
        raise _refuse(namespace, name, problems, CREATE_SOURCE_HINT)
    selected = select_registries(auths, registries)
    if keychain and not any(_has_credentials(e) for e in selected.values()):
        # Docker Desktop: `auths` lists the registries with empty entries, the secrets are in the keychain.
        helpers = {k: v for k, v in config.items() if k in ("credsStore", "credHelpers")}
        raise _refuse(namespace, name, validate_source(_source(helpers, namespace, name)), CREATE_SOURCE_HINT)
    result = {"auths": {registry: normalise_entry(entry) for registry, entry in selected.items()}}
    problems = validate_source(_source(result, namespace, name))
    if problems:
        raise _refuse(namespace, name, problems, CREATE_SOURCE_HINT if keychain else "")
    return result


def config_from_credentials(server: str, username: str, password: str, namespace: str, name: str) -> dict[str, Any]:
    entry = {"username": username, "password": password, "auth": _b64(f"{username}:{password}")}
    result = {"auths": {server: entry}}
    problems = validate_source(_source(result, namespace, name))
    if problems:
        raise _refuse(namespace, name, problems)
    return result


def read_password(stdin: TextIO) -> str:
    """Like `docker login --password-stdin`: the whole input, without its final newline."""
    password = stdin.read()
    password = password.removesuffix("\n").removesuffix("\r")
    if not password:
        raise ConfigError("--docker-password-stdin: stdin was empty; pipe the password or token in")
    if "\n" in password:
        raise ConfigError("--docker-password-stdin: stdin holds more than one line; pipe only the password")
    return password


# --- the Secret ---------------------------------------------------------------------------------


def secret_manifest(name: str, namespace: str, config: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {SYNC_LABEL_KEY: SYNC_LABEL_VALUE}},
        "type": DOCKERCONFIGJSON,
        "data": {DATA_KEY: _b64(json.dumps(config, separators=(",", ":")))},
    }


def updated_secret(existing: Mapping[str, Any], manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The existing Secret with the new data and the sync label; its other metadata kept.

    Dropped: managedFields (the server keeps them) and kubectl's last-applied-configuration, which
    for a Secret holds the old credential itself.
    """
    metadata = dict(existing.get("metadata") or {})
    metadata.pop("managedFields", None)
    metadata["labels"] = {**(metadata.get("labels") or {}), SYNC_LABEL_KEY: SYNC_LABEL_VALUE}
    annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k != LAST_APPLIED}
    if annotations:
        metadata["annotations"] = annotations
    else:
        metadata.pop("annotations", None)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": manifest["type"],
        "data": dict(manifest["data"]),
    }


def _check_updatable(existing: Mapping[str, Any], namespace: str, name: str) -> None:
    metadata = existing.get("metadata") or {}
    labels = metadata.get("labels") or {}
    if labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE:
        raise ConfigError(
            f"Secret {namespace}/{name} is a copy that syncjob manages; syncjob run would overwrite or delete "
            "it. Create the source in the source namespace (--namespace) instead"
        )
    if existing.get("type") != DOCKERCONFIGJSON:
        raise ConfigError(
            f"Secret {namespace}/{name} exists with type {existing.get('type')}; a Secret's type cannot change. "
            "Delete it first, or choose another NAME"
        )
    if existing.get("immutable"):
        raise ConfigError(f"Secret {namespace}/{name} is immutable; delete it first, or choose another NAME")


def _same_metadata(existing: Mapping[str, Any], body: Mapping[str, Any]) -> bool:
    before = {k: v for k, v in (existing.get("metadata") or {}).items() if k != "managedFields"}
    return bool(before == body["metadata"])


def apply_secret(kube: Kube, manifest: Mapping[str, Any]) -> str:
    """Create the Secret, or update it if it exists (GET, then PUT with its resourceVersion).

    Returns "created", "updated" or "unchanged". One retry when someone else writes in between (409).
    """
    namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    collection = f"/api/v1/namespaces/{namespace}/secrets"
    for attempt in range(2):
        try:
            existing = kube.call("get", "GET", f"{collection}/{name}", what=f"get Secret {namespace}/{name}")
        except ApiError as e:
            if e.status != 404:
                raise
            existing = None
        try:
            if existing is None:
                kube.call("create", "POST", collection, what=f"create Secret {namespace}/{name}", body=dict(manifest))
                return "created"
            _check_updatable(existing, namespace, name)
            body = updated_secret(existing, manifest)
            if existing.get("data") == body["data"] and _same_metadata(existing, body):
                return "unchanged"
            kube.call("update", "PUT", f"{collection}/{name}", what=f"update Secret {namespace}/{name}", body=body)
            return "updated"
        except ApiError as e:
            if e.status == 409 and attempt == 0:
                continue  # created or changed by someone else meanwhile: read it again
            if e.status == 404 and existing is None:
                raise ConfigError(f"namespace {namespace} does not exist; create it, or pass --namespace") from None
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _make_kube(kubeconfig: Path | None, context: str) -> Kube:
    from syncjob.kube.client import Kube, load_api_client  # the kube layer loads only for --apply

    return Kube(load_api_client(kubeconfig, context, 1))


# --- the command ----------------------------------------------------------------------------------


def _split(values: Sequence[str]) -> list[str]:
    return [p.strip() for v in values for p in v.split(",") if p.strip()]


def build_config(args: argparse.Namespace, stdin: TextIO) -> dict[str, Any]:
    if args.docker_password:
        raise ConfigError(
            "--docker-password is not accepted: the command line is visible in `ps` and shell history. "
            "Pipe the password with --docker-password-stdin (and consider rotating the one you typed)"
        )
    given = {
        "--docker-server": args.docker_server,
        "--docker-username": args.docker_username,
        "--docker-password-stdin": args.docker_password_stdin,
    }
    direct = [flag for flag, value in given.items() if value]
    if args.from_docker_config is not None:
        if direct:
            raise ConfigError(f"--from-docker-config cannot be combined with {', '.join(direct)}")
        config = read_docker_config(args.from_docker_config)
        return config_from_docker_config(config, _split(args.registry), args.namespace, args.name)
    if not direct:
        raise ConfigError(
            "give --from-docker-config PATH, or --docker-server, --docker-username and --docker-password-stdin"
        )
    missing = [flag for flag in given if flag not in direct]
    if missing:
        raise ConfigError(f"{', '.join(direct)} also needs {', '.join(missing)}")
    if args.registry:
        raise ConfigError("--registry selects registries of --from-docker-config; with --docker-server it is not used")
    password = read_password(stdin)
    return config_from_credentials(args.docker_server, args.docker_username, password, args.namespace, args.name)


def run(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO | None = None) -> int:
    """`syncjob create-source`. Returns the exit code; errors are printed, never raised."""
    err = sys.stderr if stderr is None else stderr
    print(READ_ONLY_WARNING, file=err)
    try:
        if not is_dns_subdomain(args.name):
            raise ConfigError(f"NAME {args.name!r} is not a valid Secret name (lowercase DNS subdomain)")
        if not is_dns_label(args.namespace):
            raise ConfigError(f"--namespace {args.namespace!r} is not a valid namespace name")
        if not args.apply and (args.kubeconfig is not None or args.context):
            raise ConfigError("--kubeconfig and --context are used only with --apply")
        config = build_config(args, stdin)
        manifest = secret_manifest(args.name, args.namespace, config)
        if not args.apply:
            stdout.write(yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False, width=1 << 20))
            return EXIT_OK
        verdict = apply_secret(_make_kube(args.kubeconfig, args.context), manifest)
        registries = ", ".join(config["auths"])
        stdout.write(
            f"secret/{args.name} {verdict} in namespace {args.namespace} "
            f"(type {DOCKERCONFIGJSON}, label {SYNC_LABEL_KEY}={SYNC_LABEL_VALUE}, registries: {registries})\n"
        )
        if args.namespace != DEFAULT_SOURCE_NAMESPACE:
            print(
                f"NOTE: a SecretSync reads sources from {DEFAULT_SOURCE_NAMESPACE} unless its spec.sources.namespace "
                f"says otherwise; set that, or add {args.namespace}/{args.name} to spec.sources.names, "
                "to sync this one",
                file=err,
            )
        return EXIT_OK
    except SyncjobError as e:
        print(f"syncjob create-source: {e}", file=err)
        return e.exit_code
