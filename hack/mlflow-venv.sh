#!/usr/bin/env bash
# Prints the path of a Python virtualenv holding the MLflow server and client (PyPI
# `mlflow[auth]`, pinned below), creating it first. The registry tests start `mlflow server` from
# it and check what the operator registered with MLflow's own client (hack/mlflow_check.py).
#
# The venv lives in a cache outside the repository, one directory per pinned version, so a fresh
# clone reuses it and a version bump builds a new one beside the old. It is about 850 MB and takes
# minutes to install; re-running when it is complete only checks a marker file. A half-finished
# install (killed, no network) has no marker and is rebuilt from scratch. Safe to run
# concurrently (a lock serialises installs). Works without a terminal (CI=true, no stdin).
# Only the venv's path goes to stdout; every other message goes to stderr.
set -euo pipefail

# 3.18.0 does not install on these machines; 3.17.2 does.
MLFLOW_VERSION="3.17.2"

log() { printf 'mlflow-venv: %s\n' "$*" >&2; }
die() { printf 'mlflow-venv: error: %s\n' "$*" >&2; exit 1; }

cache="${XDG_CACHE_HOME:-$HOME/.cache}/cxone-skill-operator"
venv="$cache/mlflow-$MLFLOW_VERSION"
# Written last, only after pip succeeded and the server's entry point imports.
marker="$venv/.complete"
want="mlflow[auth]==$MLFLOW_VERSION"

complete() { [[ -x "$venv/bin/python" && -x "$venv/bin/mlflow" && "$(cat "$marker" 2>/dev/null)" == "$want" ]]; }

if ! complete; then
  command -v python3 >/dev/null || die "python3 not found on PATH"
  command -v flock >/dev/null || die "flock not found on PATH (util-linux)"
  mkdir -p "$cache"
  exec 9>"$cache/mlflow-$MLFLOW_VERSION.lock"
  flock 9
  # Another run may have finished the install while this one waited for the lock.
  if ! complete; then
    log "installing $want into $venv (about 850 MB; takes minutes)"
    rm -rf "$venv"
    python3 -m venv "$venv" >&2
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    "$venv/bin/pip" install --quiet "$want" </dev/null >&2
    PYTHONWARNINGS=ignore "$venv/bin/python" -c 'import mlflow.server, mlflow.server.auth, mlflow.tracking' \
      </dev/null >&2 ||
      die "the installed mlflow does not import"
    printf '%s' "$want" > "$marker"
    log "installed $want"
  fi
  exec 9>&-
fi
echo "$venv"
