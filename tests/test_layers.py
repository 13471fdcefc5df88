"""The layering, checked: only syncjob/kube/ talks to Kubernetes, and the planner's modules do no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "syncjob"
PURE = ["model", "config", "selector", "select", "validate", "plan", "objects", "serviceaccounts", "events", "status"]
IO_MODULES = {"kubernetes", "urllib3", "socket", "subprocess", "http", "urllib", "requests", "syncjob.kube"}


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def touches(names: set[str], banned: set[str]) -> set[str]:
    return {n for n in names if any(n == b or n.startswith(b + ".") for b in banned)}


def test_only_the_kube_layer_imports_kubernetes() -> None:
    offenders = {
        str(p.relative_to(PACKAGE)): touches(imports(p), {"kubernetes", "urllib3"})
        for p in PACKAGE.rglob("*.py")
        if "kube" not in p.relative_to(PACKAGE).parts
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_planner_modules_do_no_io() -> None:
    offenders = {m: touches(imports(PACKAGE / f"{m}.py"), IO_MODULES | {"syncjob.runner", "syncjob.cli"}) for m in PURE}
    assert {k: v for k, v in offenders.items() if v} == {}
