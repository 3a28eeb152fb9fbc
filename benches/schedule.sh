#!/usr/bin/env bash
# 1,000 definitions scheduled every second, on a release build: how late
# the timers fire (herald_schedule_lateness_seconds, p50/p99 from its
# buckets) and the daemon's CPU, over a run of DURATION seconds.
#
#   bash benches/schedule.sh            # 20 s
#   DURATION=60 bash benches/schedule.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${DURATION:-20}
N=${DEFINITIONS:-1000}
source benches/lib.sh
prepare
for i in $(seq -w 1 "$N"); do
    printf '{"version": "1", "schedule": {"every": "1s"}, "nodes": [{"id": "t", "type": "transform", "config": {"mapping": {"i": {"literal": %d}}}}]}\n' "$((10#$i))" > "$work/definitions/tick-$i.json"
done
printf '[store]\nmax_runs = 10000000\n' >> "$work/config.toml"
start_herald
sleep 3
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
curl -s "$url/metrics" > "$work/m0"
sleep "$RUN"
after=$(ticks)
curl -s "$url/metrics" > "$work/m1"
python3 - "$work/m0" "$work/m1" "$before" "$after" "$hz" "$RUN" <<'PY'
import re, sys
def buckets(path):
    b = {}
    for line in open(path):
        m = re.match(r'herald_schedule_lateness_seconds_bucket\{le="([^"]+)"\} (\d+)', line)
        if m:
            b[m.group(1)] = int(m.group(2))
    return b
b0, b1 = buckets(sys.argv[1]), buckets(sys.argv[2])
diff = sorted(((float("inf") if k == "+Inf" else float(k)), b1[k] - b0.get(k, 0)) for k in b1)
total = diff[-1][1]
def pct(p):
    for le, n in diff:
        if n >= p * total:
            return le
print(f"ticks fired: {total} in {sys.argv[6]} s ({total/float(sys.argv[6]):.0f}/s)")
print(f"lateness: p50 <= {pct(0.5)*1000:g} ms, p99 <= {pct(0.99)*1000:g} ms (histogram bucket bounds)")
cpu = (int(sys.argv[4]) - int(sys.argv[3])) / int(sys.argv[5])
print(f"CPU: {cpu:.1f} s over {sys.argv[6]} s = {100*cpu/float(sys.argv[6]):.0f}% of one core (timers and the 1,000 runs/s they start)")
PY
