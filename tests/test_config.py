"""Flags, SYNCJOB_* environment variables and the settings they make."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncjob.cli import build_parser, resolve, settings_from
from syncjob.config import Settings
from syncjob.errors import ConfigError
from syncjob.model import Ref
from syncjob.selector import parse_label_selector


def settings(argv: list[str], env: dict[str, str] | None = None) -> Settings:
    args = build_parser().parse_args(["run", *argv])
    return settings_from(resolve(args, env or {}))


def test_defaults() -> None:
    s = settings([])
    assert s.source_namespace == "build-service"
    assert s.source_selector == "com.vmware.tanzu.buildservice.sync=true"
    assert [str(r) for r in s.build_resources] == ["builds.kpack.io", "images.kpack.io"]
    assert s.concurrency == 8 and s.instance == "syncjob" and s.dry_run == ""


def test_environment_fills_in_and_flags_win() -> None:
    env = {
        "SYNCJOB_SOURCE_NAMESPACE": "admin",
        "SYNCJOB_SOURCE": "a/one,b/two",
        "SYNCJOB_ALL_NAMESPACES": "true",
        "SYNCJOB_CONCURRENCY": "4",
        "SYNCJOB_DRY_RUN": "server",
    }
    s = settings(["--concurrency", "2"], env)
    assert s.source_namespace == "admin"
    assert s.sources == (Ref("a", "one"), Ref("b", "two"))
    assert s.all_namespaces and s.concurrency == 2 and s.dry_run == "server"
    assert settings(["--dry-run"]).dry_run == "client"
    assert settings(["--dry-run=none"], {"SYNCJOB_DRY_RUN": "server"}).dry_run == ""


def test_repeatable_and_comma_separated_lists() -> None:
    s = settings(["--exclude", "ci-*", "--exclude", "tmp-?,scratch", "--types", "Opaque"])
    assert s.exclude == ("ci-*", "tmp-?", "scratch")
    assert s.types == ("Opaque",)
    assert s.snapshot is None
    assert settings(["--snapshot", "x.yaml"]).snapshot == Path("x.yaml")


@pytest.mark.parametrize(
    ("argv", "env", "fragment"),
    [
        (["--source-selector", "a in (b"], {}, "--source-selector"),
        (["--namespace-selector", "bad key=1"], {}, "--namespace-selector"),
        (["--source", "no-slash"], {}, "NAMESPACE/NAME"),
        (["--build-resource", "builds"], {}, "PLURAL.GROUP"),
        (["--concurrency", "0"], {}, "--concurrency"),
        ([], {"SYNCJOB_CONCURRENCY": "many"}, "SYNCJOB_CONCURRENCY"),
        ([], {"SYNCJOB_ALL_NAMESPACES": "maybe"}, "SYNCJOB_ALL_NAMESPACES"),
        (["--all-namespaces", "--namespace-selector", "a=b"], {}, "exclude each other"),
        (["--source-namespace", "Not_A_Namespace"], {}, "--source-namespace"),
    ],
)
def test_bad_configuration_names_the_flag(argv: list[str], env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError, match=r".*") as excinfo:
        settings(argv, env)
    assert fragment in str(excinfo.value)


def test_label_selector_matching() -> None:
    sel = parse_label_selector("a=1,b!=2,c in (x,y),!d,e")
    assert sel.matches({"a": "1", "c": "x", "e": ""})
    assert not sel.matches({"a": "1", "c": "x", "e": "", "d": "z"})
    assert not sel.matches({"a": "1", "b": "2", "c": "x", "e": ""})
    assert parse_label_selector("").matches({})
