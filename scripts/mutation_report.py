"""Summarise a finished `mutmut run`: every surviving mutant with the reason it was accepted (from
tests/mutation-survivors.txt, "name: reason" per line) or UNEXPLAINED, then the score as the last line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REASONS = Path(__file__).resolve().parent.parent / "tests" / "mutation-survivors.txt"


def main() -> int:
    results = subprocess.run(
        [str(Path(sys.executable).parent / "mutmut"), "results", "--all", "true"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    status: dict[str, str] = {}
    for line in results.splitlines():
        name, sep, state = line.strip().rpartition(": ")
        if sep:
            status[name] = state
    reasons = {}
    if REASONS.exists():
        for line in REASONS.read_text().splitlines():
            name, sep, reason = line.partition(": ")
            if sep and not line.startswith("#"):
                reasons[name.strip()] = reason.strip()
    killed = sum(1 for s in status.values() if s == "killed")
    survivors = sorted(n for n, s in status.items() if s != "killed")
    for name in survivors:
        print(f"{status[name]:>10}  {name}  -- {reasons.get(name, 'UNEXPLAINED')}")
    total = len(status)
    print(f"mutation score: {killed}/{total} killed ({100 * killed / max(total, 1):.1f} %)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
