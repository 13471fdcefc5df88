"""Flags + SYNCJOB_* environment → Settings; one run; exit codes.

Every flag of `run` also reads SYNCJOB_<FLAG> (dashes become underscores; flags win). Flags that
take a list accept commas, in the environment and on the command line.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from syncjob import __version__, create_source, metrics
from syncjob.config import DEFAULT_CONCURRENCY, RunSettings
from syncjob.errors import EXIT_UNUSABLE, ConfigError, SyncjobError
from syncjob.logs import log_event, setup_logging
from syncjob.model import Ref

ENV_PREFIX = "SYNCJOB_"
# Environment variables of the test and build tooling, not of the CLI; never warned about.
TOOLING_ENV = frozenset({"SYNCJOB_REQUIRE_CLUSTER", "SYNCJOB_CONTROLPLANE_DIR", "SYNCJOB_CLUSTER_DIR"})
# What flags and variables used to say is now a SecretSync field. A leftover variable would silently
# mean nothing, so it stops the run and names the field that replaced it.
MOVED_TO_POLICY = {
    "SOURCE_NAMESPACE": "spec.sources.namespace",
    "SOURCE_SELECTOR": "spec.sources.selector",
    "SOURCE": "spec.sources.names",
    "TYPES": "spec.types",
    "BUILD_RESOURCE": "spec.targets.builds",
    "ALL_NAMESPACES": "spec.targets.allNamespaces",
    "NAMESPACE_SELECTOR": "spec.targets.namespaceSelector",
    "INCLUDE": "spec.targets.include",
    "EXCLUDE": "spec.targets.exclude",
    "INSTANCE": "the SecretSync's metadata.name",
    "COPY_LABELS": "spec.copyMetadata.labels",
    "COPY_ANNOTATIONS": "spec.copyMetadata.annotations",
    "PATCH_SERVICE_ACCOUNTS": "spec.serviceAccounts.patch",
    "CREATE_SERVICE_ACCOUNTS": "spec.serviceAccounts.create",
}
EXIT_CODES_HELP = """exit codes (the worst over every SecretSync the run acted on):
  0  done: everything in sync (conflicts and skipped namespaces are reported, not failures)
  1  partial: some objects failed, a source is invalid, deletes were held, or --timeout expired
  2  unusable: no SecretSync, an invalid one, bad flags, cluster unreachable, or forbidden to read
"""
POLICY_HELP = (
    "What to sync (sources, types, targets, ServiceAccounts, limits) lives in SecretSync objects in the "
    "cluster (kubectl get secretsyncs); every run, status and dry-run reads them. Flags only say how to run."
)


@dataclass(frozen=True)
class Option:
    flag: str
    kind: str  # str, int, float, bool, list, path, dry-run
    help: str
    metavar: str = ""
    short: str = ""
    commands: tuple[str, ...] = ("run", "status")

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()


RUN_ONLY = ("run",)
RUN_OPTIONS = (
    Option("--policy", "list", "act on this SecretSync only, repeatable (default: every one)", "NAME"),
    Option(
        "--policy-file",
        "path",
        "plan with the SecretSyncs in this file instead of the cluster's (needs --dry-run against a cluster)",
        "FILE",
    ),
    Option("--concurrency", "int", f"parallel writes (default {DEFAULT_CONCURRENCY})", "N", commands=RUN_ONLY),
    Option(
        "--dry-run",
        "dry-run",
        "plan only: client (default) writes nothing; server sends writes with dryRun=All",
        commands=RUN_ONLY,
    ),
    Option(
        "--max-delete",
        "int",
        "this run only: allow up to N deletes (overrides spec.maxDelete and the default guard)",
        "N",
        commands=RUN_ONLY,
    ),
    Option("--timeout", "float", "stop the whole run after this many seconds", "SECONDS"),
    Option(
        "--events",
        "bool",
        "record a Kubernetes Event on each source that changed something or failed",
        commands=RUN_ONLY,
    ),
    Option(
        "--metrics-textfile",
        "path",
        "write Prometheus metrics here (node-exporter textfile collector)",
        "PATH",
        commands=RUN_ONLY,
    ),
    Option("--pushgateway", "str", "push Prometheus metrics to this Pushgateway", "URL", commands=RUN_ONLY),
    Option("--kubeconfig", "path", "kubeconfig file (default: in-cluster, then KUBECONFIG, ~/.kube/config)", "PATH"),
    Option("--context", "str", "kubeconfig context", "NAME"),
    Option(
        "--snapshot",
        "path",
        "plan against a cluster dump (kubectl get secretsyncs,namespaces,secrets,... -A -o yaml); implies --dry-run",
        "FILE",
    ),
    Option("--output", "str", "table or json on stdout (default: table on a terminal)", "FORMAT", short="-o"),
    Option("--log-level", "str", "DEBUG, INFO, WARNING or ERROR (default INFO)", "LEVEL"),
)


def known_env_vars() -> frozenset[str]:
    return frozenset(o.env for o in RUN_OPTIONS)


def _bool(text: str, where: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{where}={text!r}: expected true or false")


def _convert(option: Option, raw: Any, where: str) -> Any:
    try:
        if option.kind == "list":
            items = raw if isinstance(raw, list) else [raw]
            return tuple(p.strip() for item in items for p in str(item).split(",") if p.strip())
        if option.kind == "int":
            return int(raw)
        if option.kind == "float":
            return float(raw)
        if option.kind == "path":
            return Path(raw).expanduser()
    except ValueError:
        raise ConfigError(f"{where}={raw!r}: expected a {option.kind}") from None
    if option.kind == "bool":
        return raw if isinstance(raw, bool) else _bool(str(raw), where)
    if option.kind == "dry-run":
        value = str(raw).strip().lower()
        if value in ("", "true", "1", "client"):
            return "client"
        if value in ("none", "false", "0"):
            return ""
        if value == "server":
            return "server"
        raise ConfigError(f"{where}={raw!r}: use client, server or none")
    return str(raw)


def _add_run_options(parser: argparse.ArgumentParser, command: str) -> None:
    for o in RUN_OPTIONS:
        if command not in o.commands:
            continue
        names = [o.flag, o.short] if o.short else [o.flag]
        help_text = f"{o.help} [env {o.env}]"
        if o.kind == "bool":
            parser.add_argument(*names, dest=o.dest, action="store_const", const=True, default=None, help=help_text)
        elif o.kind == "dry-run":
            parser.add_argument(
                *names, dest=o.dest, nargs="?", const="client", default=None, metavar="client|server", help=help_text
            )
        elif o.kind == "list":
            parser.add_argument(*names, dest=o.dest, action="append", default=None, metavar=o.metavar, help=help_text)
        else:
            parser.add_argument(*names, dest=o.dest, default=None, metavar=o.metavar, help=help_text)


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False everywhere: `--namespace` must never be read as some longer flag.
    parser = argparse.ArgumentParser(
        prog="syncjob",
        description="Copy registry and git credential Secrets into every namespace that runs builds, "
        "and remove the copies that are no longer wanted. One stateless run per call. " + POLICY_HELP,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"syncjob {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="read, plan, apply and report one sync for every SecretSync",
        description="Read every SecretSync and the cluster, plan, apply, write each SecretSync's status and "
        "report. " + POLICY_HELP + " Every flag also reads SYNCJOB_<FLAG>.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _add_run_options(run, "run")
    status = commands.add_parser(
        "status",
        help="what is synced where (read-only); exit 0 when everything is in sync",
        description="Read every SecretSync and the cluster and show, per source, its targets and their state: "
        "in sync, drifted, missing, conflict, terminating or invalid source. Plans exactly what `run` "
        "would (same SecretSyncs); --source NS/NAME shows one source in detail. Writes nothing.",
        epilog="exit codes: 0 all in sync; 1 something is not; 2 unusable (as for run)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    _add_run_options(status, "status")
    status.add_argument(
        "--source", action="append", default=None, metavar="NAMESPACE/NAME", help="show this source in detail"
    )
    create_source.add_parser(commands)
    return parser


def resolve(args: argparse.Namespace, environ: dict[str, str], command: str = "run") -> dict[str, Any]:
    """Flag values, else SYNCJOB_* values; options given by neither are left out (RunSettings defaults)."""
    values: dict[str, Any] = {}
    for o in RUN_OPTIONS:
        if command not in o.commands:
            continue
        raw = getattr(args, o.dest, None)
        if raw is not None:
            values[o.dest] = _convert(o, raw, o.flag)
        elif o.env in environ:
            values[o.dest] = _convert(o, environ[o.env], o.env)
    return values


def settings_from(values: dict[str, Any]) -> RunSettings:
    kwargs = {k: v for k, v in values.items() if k not in ("log_level", "policy")}
    if "policy" in values:
        kwargs["policies"] = tuple(values["policy"])
    return RunSettings(**kwargs)


def refuse_moved_env(environ: dict[str, str]) -> None:
    for suffix, field_path in MOVED_TO_POLICY.items():
        name = ENV_PREFIX + suffix
        if name in environ:
            raise ConfigError(
                f"{name} is no longer read: what to sync lives in the SecretSync ({field_path}). "
                f"Set it there (kubectl edit secretsync NAME) and remove the variable "
                f"(kubectl -n syncjob set env cronjob/syncjob {name}-)"
            )


def warn_unknown_env(environ: dict[str, str]) -> None:
    known = known_env_vars() | TOOLING_ENV
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            log_event("unknown_env_var", logging.WARNING, variable=name, message="not a syncjob setting; ignored")


def parse_source_ref(text: str) -> Ref:
    ns, sep, name = text.strip().partition("/")
    if not sep or not ns or not name:
        raise ConfigError(f"--source {text!r}: expected NAMESPACE/NAME, e.g. build-service/registry-credentials")
    return Ref(ns, name)


def status_command(values: dict[str, Any], detail_flags: list[str] | None) -> int:
    from datetime import UTC, datetime

    from syncjob import status
    from syncjob.runner import status_report

    detail = tuple(parse_source_ref(s) for s in detail_flags or ())
    settings = replace(settings_from(values), dry_run="client")
    report = status_report(settings)
    items = report.items
    if detail:
        items = [s for s in items if s.ref in detail]
    now = datetime.now(UTC)
    if settings.output == "json":
        sys.stdout.write(status.as_json(report, items, now))
    elif detail:
        sys.stdout.write("\n".join(status.render_detail(s, now) for s in items))
    else:
        sys.stdout.write(status.render_table(report, items, now))
    for error in report.errors:
        print(f"syncjob: {error}", file=sys.stderr)
    return report.exit_code


def main(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> int:
    from syncjob.runner import execute  # the kube layer loads only when a command needs it

    env = dict(os.environ if environ is None else environ)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_UNUSABLE
    if args.command == "create-source":
        return create_source.run(args, sys.stdin, sys.stdout)
    started, values = time.monotonic(), {}
    try:
        setup_logging(env.get("SYNCJOB_LOG_LEVEL", "INFO") if args.log_level is None else args.log_level)
        refuse_moved_env(env)
        warn_unknown_env(env)
        values = resolve(args, env, args.command)
        if args.command == "status":
            return status_command(values, args.source)
        settings = settings_from(values)
        output = settings.output or ("table" if sys.stdout.isatty() else "")
        outcome = execute(settings, sys.stdout, output=output)
        for run in outcome.runs:
            if run.error:
                print(f"syncjob: SecretSync {run.name}: {run.error}", file=sys.stderr)
        metrics.publish_runs(settings, outcome.runs)
        return outcome.summary.exit_code
    except SyncjobError as e:
        log_event("error", logging.ERROR, error=type(e).__name__, message=str(e), exitCode=e.exit_code)
        print(f"syncjob: {e}", file=sys.stderr)
        if args.command == "run":
            metrics.publish_unusable(values, e.exit_code, time.monotonic() - started)
        return e.exit_code


def entrypoint() -> None:
    """The program: console script and `python -m syncjob`."""
    import syncjob.runner  # noqa: F401 - the kube layer (and the kubernetes client) once, up front

    # The ~50k objects those imports leave behind are never garbage; without this the cyclic
    # collector walks them again and again while 15,000 copies are parsed and planned.
    gc.freeze()
    raise SystemExit(main())
