#!/usr/bin/env bash
# Runs one control-plane process for the test harness and ties its life to the test process.
#
#   supervise.sh PARENT_PID DIR NAME [--cleanup] -- COMMAND [ARGS...]
#
# Starts COMMAND with its output in DIR/NAME.log and its pid in DIR/NAME.pid, then polls every
# 0.5 s. When PARENT_PID is gone (the test binary ended, panicked, or was killed, even with
# SIGKILL) the command gets SIGTERM, then SIGKILL after 1 s (nothing in a test control plane is worth a
# graceful shutdown); with --cleanup, DIR is removed
# afterwards. When the command exits by itself, its exit status goes to DIR/NAME.exit and the
# supervisor keeps waiting for PARENT_PID to clean up (the harness reads both files to report an
# early exit).
set -uo pipefail

if (($# < 5)); then
  echo "usage: supervise.sh PARENT_PID DIR NAME [--cleanup] -- COMMAND [ARGS...]" >&2
  exit 2
fi
parent="$1" dir="$2" name="$3"
shift 3
cleanup=0
if [[ "$1" == --cleanup ]]; then
  cleanup=1
  shift
fi
[[ "$1" == -- ]] || { echo "supervise.sh: expected -- before the command" >&2; exit 2; }
shift

log="$dir/$name.log"
# The command must not keep the test's stdin/stdout/stderr open: `cargo test` waits for them.
"$@" </dev/null >>"$log" 2>&1 &
child=$!
echo "$child" >"$dir/$name.pid.tmp" && mv -f "$dir/$name.pid.tmp" "$dir/$name.pid"

stop_child() {
  kill -TERM "$child" 2>/dev/null || return 0
  local i
  for ((i = 0; i < 10; i++)); do
    kill -0 "$child" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$child" 2>/dev/null || true
  wait "$child" 2>/dev/null || true
}

finish() {
  ((child_done)) || stop_child
  if ((cleanup)); then
    # Let sibling supervisors stop their commands before their files disappear.
    sleep 1.5
    rm -rf "$dir"
  fi
  exit 0
}
trap finish TERM INT HUP

# A process that has exited but not been reaped yet (a zombie, e.g. a killed test binary whose
# parent has not waited for it) still answers `kill -0`: treat state Z as gone too.
parent_alive() {
  local stat
  kill -0 "$parent" 2>/dev/null || return 1
  read -r stat <"/proc/$parent/stat" 2>/dev/null || return 0
  stat="${stat##*) }"
  [[ "${stat%% *}" != Z ]]
}

child_done=0
while :; do
  if ! parent_alive; then
    finish
  fi
  if ((!child_done)) && ! kill -0 "$child" 2>/dev/null; then
    wait "$child"
    rc=$?
    child_done=1
    echo "$rc" >"$dir/$name.exit.tmp" && mv -f "$dir/$name.exit.tmp" "$dir/$name.exit"
    echo "supervise.sh: $name exited with status $rc" >>"$log"
  fi
  sleep 0.5 &
  wait $! 2>/dev/null || true
done
