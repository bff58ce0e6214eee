#!/usr/bin/env bash
# Runs the CXone guide's "Complete Working Example" unchanged except for BASE_URL against
# `cxone-skill-operator simulate`, and checks that it reaches COMPLETED and prints its audit log.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
guide="${GUIDE_EXAMPLE:-$root/../shared/reference/guide_complete_example.py}"
bin="${OPERATOR_BIN:-$root/target/debug/cxone-skill-operator}"
[[ -f "$guide" ]] || { echo "guide-example: $guide not found" >&2; exit 1; }
[[ -x "$bin" ]] || { echo "guide-example: $bin not built (run cargo build)" >&2; exit 1; }
venv="$("$root/hack/python-venv.sh")"
py="$venv/bin/python"

work="$(mktemp -d)"
sim_pid=""
cleanup() {
  [[ -n "$sim_pid" ]] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

port="$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
"$bin" simulate --listen "127.0.0.1:$port" \
  --client-id your_client_id --client-secret your_client_secret --job-duration 3s \
  >"$work/simulator.log" 2>&1 &
sim_pid=$!

# Wait for the simulator to answer, at most 20 s.
"$py" - "$port" <<'PY'
import sys, time, urllib.request
deadline = time.time() + 20
while True:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1)
        break
    except Exception:
        if time.time() > deadline:
            sys.exit("guide-example: simulator did not become healthy within 20 s")
        time.sleep(0.05)
PY

# The only change to the guide's code: BASE_URL.
sed "s#^BASE_URL = \"https://api.us2-01.cxone.com\"#BASE_URL = \"http://127.0.0.1:$port\"#" "$guide" > "$work/example.py"
if ! grep -q "^BASE_URL = \"http://127.0.0.1:$port\"" "$work/example.py"; then
  echo "guide-example: could not set BASE_URL in $guide" >&2; exit 1
fi
[[ "$(diff "$guide" "$work/example.py" | grep -c '^[<>]')" == 2 ]] || { echo "guide-example: more than BASE_URL changed" >&2; exit 1; }

start=$(date +%s)
if ! timeout 180 "$py" "$work/example.py" >"$work/out.txt" 2>&1; then
  echo "guide-example: the example failed:" >&2; cat "$work/out.txt" >&2
  echo "--- simulator log" >&2; cat "$work/simulator.log" >&2
  exit 1
fi
# It must have reached COMPLETED and printed the audit log.
"$py" - "$work/out.txt" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
assert "Status: COMPLETED" in text, "no COMPLETED status line:\n" + text
start = text.index("{")
audit = json.loads(text[start:])
assert audit["jobId"].startswith("job-"), audit
cm = audit["metrics"]["confusionMatrix"]
assert sum(map(sum, cm)) >= 3, cm
assert audit["artifacts"]["modelUrl"].startswith("http://127.0.0.1:"), audit
print(f"guide-example: COMPLETED, job {audit['jobId']}, precision {audit['metrics']['precision']:.3f}, recall {audit['metrics']['recall']:.3f}, confusion matrix {cm}")
PY
echo "guide-example: passed in $(( $(date +%s) - start )) s"
