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
from syncjob.config import (
    DEFAULT_BUILD_RESOURCES,
    DEFAULT_SOURCE_NAMESPACE,
    DEFAULT_SOURCE_SELECTOR,
    DEFAULT_TYPES,
    BuildResource,
    Settings,
    parse_source_ref,
)
from syncjob.errors import EXIT_UNUSABLE, ConfigError, SyncjobError
from syncjob.logs import log_event, setup_logging

ENV_PREFIX = "SYNCJOB_"
# Environment variables of the test and build tooling, not of the CLI; never warned about.
TOOLING_ENV = frozenset({"SYNCJOB_REQUIRE_CLUSTER", "SYNCJOB_CONTROLPLANE_DIR", "SYNCJOB_CLUSTER_DIR"})
EXIT_CODES_HELP = """exit codes:
  0  done: everything in sync (conflicts and skipped namespaces are reported, not failures)
  1  partial: some objects failed, a source is invalid, deletes were held, or --timeout expired
  2  unusable: bad configuration, cluster unreachable, or forbidden to list
"""


@dataclass(frozen=True)
class Option:
    flag: str
    kind: str  # str, int, float, bool, list, path, dry-run
    help: str
    metavar: str = ""
    short: str = ""

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()


RUN_OPTIONS = (
    Option(
        "--source-namespace", "str", f"namespace holding labelled sources (default {DEFAULT_SOURCE_NAMESPACE})", "NS"
    ),
    Option("--source-selector", "str", f"label selector for sources (default {DEFAULT_SOURCE_SELECTOR})", "LABELS"),
    Option("--source", "list", "an extra source, repeatable, in any namespace", "NAMESPACE/NAME"),
    Option("--types", "list", "Secret types that may be synced (default " + ",".join(DEFAULT_TYPES) + ")", "TYPE,..."),
    Option(
        "--build-resource",
        "list",
        "a kind whose objects mark a build namespace, repeatable (default " + ",".join(DEFAULT_BUILD_RESOURCES) + ")",
        "PLURAL[.VERSION].GROUP",
    ),
    Option("--all-namespaces", "bool", "target every namespace instead of build namespaces"),
    Option(
        "--namespace-selector", "str", "target namespaces matching these labels instead of build namespaces", "LABELS"
    ),
    Option("--include", "list", "only namespaces matching these globs (* and ?)", "GLOB"),
    Option(
        "--exclude", "list", "never these namespaces (globs); kube-system, kube-public, kube-node-lease always", "GLOB"
    ),
    Option("--instance", "str", "name of this installation; copies of other instances are never touched", "NAME"),
    Option("--concurrency", "int", "parallel writes (default 8)", "N"),
    Option("--dry-run", "dry-run", "plan only: client (default) writes nothing; server sends writes with dryRun=All"),
    Option("--max-delete", "int", "hold all deletes when more than N (default: >10 and >25%% of managed copies)", "N"),
    Option("--timeout", "float", "stop the whole run after this many seconds (exit 1)", "SECONDS"),
    Option("--copy-labels", "list", "source labels to copy (globs); some tools' labels never are", "GLOB"),
    Option("--copy-annotations", "list", "source annotations to copy (globs)", "GLOB"),
    Option(
        "--patch-service-accounts",
        "list",
        "add each copy to these ServiceAccounts' imagePullSecrets in its namespace (and remove it again)",
        "NAME",
    ),
    Option("--create-service-accounts", "bool", "create a missing ServiceAccount named by --patch-service-accounts"),
    Option("--events", "bool", "record a Kubernetes Event on each source that changed something or failed"),
    Option("--metrics-textfile", "path", "write Prometheus metrics here (node-exporter textfile collector)", "PATH"),
    Option("--pushgateway", "str", "push Prometheus metrics to this Pushgateway", "URL"),
    Option("--kubeconfig", "path", "kubeconfig file (default: in-cluster, then KUBECONFIG, ~/.kube/config)", "PATH"),
    Option("--context", "str", "kubeconfig context", "NAME"),
    Option("--snapshot", "path", "plan against a cluster dump (kubectl get ... -A -o yaml); implies --dry-run", "FILE"),
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


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    for o in RUN_OPTIONS:
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
    parser = argparse.ArgumentParser(
        prog="syncjob",
        description="Copy registry and git credential Secrets into every namespace that runs builds, "
        "and remove the copies that are no longer wanted. One stateless run per call.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"syncjob {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="read, plan, apply and report one sync",
        description="Read the cluster, plan, apply and report. Every flag also reads SYNCJOB_<FLAG>.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_options(run)
    status = commands.add_parser(
        "status",
        help="what is synced where (read-only); exit 0 when everything is in sync",
        description="Read the cluster and show, per source, its targets and their state: in sync, drifted, "
        "missing, conflict, terminating or invalid source. Takes the same selection flags as `run` "
        "(and SYNCJOB_* env); --source NS/NAME shows one source in detail. Writes nothing.",
        epilog="exit codes: 0 all in sync; 1 something is not; 2 unusable (as for run)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_options(status)
    create_source.add_parser(commands)
    return parser


def resolve(args: argparse.Namespace, environ: dict[str, str]) -> dict[str, Any]:
    """Flag values, else SYNCJOB_* values; options given by neither are left out (Settings defaults)."""
    values: dict[str, Any] = {}
    for o in RUN_OPTIONS:
        raw = getattr(args, o.dest, None)
        if raw is not None:
            values[o.dest] = _convert(o, raw, o.flag)
        elif o.env in environ:
            values[o.dest] = _convert(o, environ[o.env], o.env)
    return values


def settings_from(values: dict[str, Any]) -> Settings:
    kwargs = {k: v for k, v in values.items() if k not in ("log_level", "source", "build_resource")}
    if "source" in values:
        kwargs["sources"] = tuple(parse_source_ref(s) for s in values["source"])
    if "build_resource" in values:
        kwargs["build_resources"] = tuple(BuildResource.parse(r) for r in values["build_resource"])
    return Settings(**kwargs)


def warn_unknown_env(environ: dict[str, str]) -> None:
    known = known_env_vars() | TOOLING_ENV
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            log_event("unknown_env_var", logging.WARNING, variable=name, message="not a syncjob setting; ignored")


def status_command(values: dict[str, Any]) -> int:
    from datetime import UTC, datetime

    from syncjob import status
    from syncjob.runner import make_kube, plan_run

    # --source in `status` names the source to show in detail (and makes sure it is read).
    detail = tuple(parse_source_ref(s) for s in values.get("source", ()))
    settings = replace(settings_from(values), dry_run="client")
    kube = None if settings.snapshot is not None else make_kube(settings)
    _, planner, plan = plan_run(settings, kube)
    items = status.statuses(planner, plan)
    if detail:
        items = [s for s in items if s.ref in detail]
    now = datetime.now(UTC)
    if settings.output == "json":
        sys.stdout.write(status.as_json(items, now))
    elif detail:
        sys.stdout.write("\n".join(status.render_detail(s, now) for s in items))
    else:
        sys.stdout.write(status.render_table(items, now))
    return 0 if all(s.healthy for s in items) else 1


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
        warn_unknown_env(env)
        values = resolve(args, env)
        if args.command == "status":
            return status_command(values)
        settings = settings_from(values)
        output = settings.output or ("table" if sys.stdout.isatty() else "")
        outcome = execute(settings, sys.stdout, output=output)
        metrics.publish_from_values(values, outcome.summary, outcome.results)
        return outcome.summary.exit_code
    except SyncjobError as e:
        log_event("error", logging.ERROR, error=type(e).__name__, message=str(e), exitCode=e.exit_code)
        print(f"syncjob: {e}", file=sys.stderr)
        if args.command == "run":
            metrics.publish_from_values(values, metrics.unusable_summary(e.exit_code, time.monotonic() - started), [])
        return e.exit_code


def entrypoint() -> None:
    """The program: console script and `python -m syncjob`."""
    import syncjob.runner  # noqa: F401 - the kube layer (and the kubernetes client) once, up front

    # The ~50k objects those imports leave behind are never garbage; without this the cyclic
    # collector walks them again and again while 15,000 copies are parsed and planned.
    gc.freeze()
    raise SystemExit(main())
