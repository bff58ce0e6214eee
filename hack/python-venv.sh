#!/usr/bin/env bash
# Prints the path of a Python virtualenv holding the tools the tests use (requests, numpy,
# scikit-learn, ...), creating or updating it first. The venv lives in a cache outside the
# repository so a fresh clone reuses it.
set -euo pipefail
cache="${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator"
venv="$cache/venv"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
reqs="$here/requirements-test.txt"
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$reqs" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" ]] || [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  command -v python3 >/dev/null || { echo "python-venv: python3 not found on PATH" >&2; exit 1; }
  mkdir -p "$cache"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs" >&2
  echo "$want" > "$stamp"
fi
echo "$venv"
