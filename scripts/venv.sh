# Sourced by scripts/test and scripts/demo: make (or reuse) .venv with the project and its test
# dependencies installed. Re-installs only when pyproject.toml changed since the last install.
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"
python="${PYTHON:-python3}"
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
stamp="$venv/.syncjob-installed"
if [[ ! -f "$stamp" || "$repo/pyproject.toml" -nt "$stamp" ]]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
  "$venv/bin/python" -m pip install --quiet -e "$repo[test]" >&2
  touch "$stamp"
fi
