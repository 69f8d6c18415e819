# Sourced by scripts/*: make .venv with the project installed, on a machine with only Python.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Chordal needs Python 3.11+; set PYTHON=/path/to/python3.11" >&2
  exit 2
fi
stamp=".venv/.installed-$(cat pyproject.toml | "$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')"
if [ ! -f "$stamp" ]; then
  echo "setting up .venv (first run, or pyproject.toml changed)..." >&2
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  if ! { .venv/bin/python -m pip install --quiet --upgrade pip &&
         .venv/bin/python -m pip install --quiet -e '.[dev]'; } > .venv/install.log 2>&1; then
    cat .venv/install.log >&2
    echo "error: installing Chordal into .venv failed (log above, and in .venv/install.log)" >&2
    exit 2
  fi
  rm -f .venv/.installed-* && touch "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
