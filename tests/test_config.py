"""Run flags and SYNCJOB_* variables: how to run, never what to sync."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from syncjob import cli
from syncjob.cli import build_parser, resolve, settings_from
from syncjob.config import RunSettings
from syncjob.errors import ConfigError


def settings(argv: list[str], env: dict[str, str] | None = None, command: str = "run") -> RunSettings:
    args = build_parser().parse_args([command, *argv])
    return settings_from(resolve(args, env or {}, command))


def main(argv: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv, environ=env or {})
        except SystemExit as e:  # argparse refusing a flag
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()


def test_defaults() -> None:
    s = settings([])
    assert (s.concurrency, s.dry_run, s.policies, s.policy_file, s.max_delete) == (8, "", (), None, None)


def test_environment_fills_in_and_flags_win() -> None:
    env = {"SYNCJOB_CONCURRENCY": "4", "SYNCJOB_DRY_RUN": "server", "SYNCJOB_POLICY": "blue,green"}
    s = settings(["--concurrency", "2"], env)
    assert (s.concurrency, s.dry_run, s.policies) == (2, "server", ("blue", "green"))
    assert settings(["--dry-run"]).dry_run == "client"
    assert settings(["--dry-run=none"], {"SYNCJOB_DRY_RUN": "server"}).dry_run == ""
    assert settings(["--snapshot", "x.yaml"]).snapshot == Path("x.yaml")


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--namespace", "team-a"],  # was read as --namespace-selector
        ["run", "--all"],  # was read as --all-namespaces
        ["run", "--conc", "3"],  # a prefix of --concurrency
        ["run", "--pol", "blue"],  # a prefix of --policy and --policy-file
        ["status", "--snap", "x.yaml"],
        ["--vers"],
    ],
)
def test_every_parser_refuses_abbreviations(argv: list[str]) -> None:
    code, out, err = main(argv)
    assert code == 2
    assert "unrecognized arguments" in err or "ambiguous" in err or "invalid choice" in err
    assert out == ""


@pytest.mark.parametrize(
    "flag",
    ["--types", "--source-namespace", "--source-selector", "--source", "--build-resource", "--all-namespaces",
     "--namespace-selector", "--include", "--exclude", "--instance", "--copy-labels", "--copy-annotations",
     "--patch-service-accounts", "--create-service-accounts"],
)  # fmt: skip
def test_policy_flags_are_gone(flag: str) -> None:
    code, _, err = main(["run", flag, "x"])
    assert code == 2 and "unrecognized arguments" in err


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("SYNCJOB_TYPES", "spec.types"),
        ("SYNCJOB_EXCLUDE", "spec.targets.exclude"),
        ("SYNCJOB_INSTANCE", "metadata.name"),
    ],
)
def test_a_leftover_policy_variable_stops_the_run_and_names_its_field(variable: str, field: str) -> None:
    code, out, err = main(["run", "--snapshot", "examples/cluster.yaml", "-o", "json"], {variable: "x"})
    assert code == 2 and out == ""
    assert variable in err and field in err and f"{variable}-" in err  # how to remove it


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        (["--concurrency", "0"], {}, "--concurrency"),
        ([], {"SYNCJOB_CONCURRENCY": "many"}, "SYNCJOB_CONCURRENCY"),
        ([], {"SYNCJOB_EVENTS": "maybe"}, "SYNCJOB_EVENTS"),
        (["--max-delete", "-1"], {}, "--max-delete"),
        (["--policy", "Not_A_Name"], {}, "--policy"),
        (["--policy-file", "p.yaml"], {}, "--dry-run"),  # a local policy previews, never applies
        (["--snapshot", "x.yaml", "--dry-run=server"], {}, "needs a cluster"),
    ],
)
def test_bad_run_settings_name_the_flag(argv: list[str], env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        settings(argv, env)
    assert fragment in str(excinfo.value)
