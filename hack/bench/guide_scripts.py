"""Runs N copies of the CXone guide's complete example concurrently (only BASE_URL changed) and
reports their combined CPU time and memory, measured per process with wait4().

usage: guide_scripts.py N GUIDE_EXAMPLE BASE_URL OUT_DIR
prints one JSON object: processes, succeeded, cpuSeconds, peakRssMiBSum, peakRssMiBMax, wallSeconds
"""
import json
import os
import subprocess
import sys
import time

n, guide, base_url, out_dir = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
source = open(guide).read()
original = 'BASE_URL = "https://api.us2-01.cxone.com"'
if original not in source:
    sys.exit("guide_scripts: BASE_URL line not found in the guide example")
script = os.path.join(out_dir, "guide_example.py")
with open(script, "w") as f:
    f.write(source.replace(original, f'BASE_URL = "{base_url}"', 1))

started = time.time()
procs = []
for i in range(n):
    log = open(os.path.join(out_dir, f"script-{i}.log"), "w")
    procs.append(subprocess.Popen([sys.executable, script], stdout=log, stderr=subprocess.STDOUT))
cpu = 0.0
rss = []
ok = 0
for p in procs:
    _, status, usage = os.wait4(p.pid, 0)
    cpu += usage.ru_utime + usage.ru_stime
    rss.append(usage.ru_maxrss / 1024.0)  # KiB -> MiB on Linux
    if os.waitstatus_to_exitcode(status) == 0:
        ok += 1
print(json.dumps({
    "processes": n,
    "succeeded": ok,
    "cpuSeconds": round(cpu, 3),
    "peakRssMiBSum": round(sum(rss), 1),
    "peakRssMiBMax": round(max(rss) if rss else 0.0, 1),
    "wallSeconds": round(time.time() - started, 1),
}))
