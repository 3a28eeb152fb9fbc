#!/usr/bin/env bash
# Load test of the HTTP API with wrk (Debian package `wrk`), against a
# release build on loopback. Prints wrk's summary for each case and herald's
# RSS idle and under load.
#
#   bash benches/load.sh            # 10 s per case, 32 connections
#   DURATION=30s CONNECTIONS=64 bash benches/load.sh
#   WORKERS=2 bash benches/load.sh   # [queue] workers (default: 8 per core)
#
# Cases:
#   async  POST /alerts/webhook/alertmanager/  the real Alertmanager 0.25 body,
#          its fingerprint and instance made unique per request (a re-send
#          of the same alert changes nothing and starts no job); each 202 is
#          a new incident and a durable job, flushed to disk before the answer.
#          Then how many of them were also run while wrk ran, and how long
#          the workers took to drain the rest.
#   sync   POST /orchestration/definitions/sync-log/execute/  a transform →
#          notify(log) definition, answered with the run result
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
wrk_defaults 10s 32
prepare
sync_log_definition
cat >> "$work/config.toml" <<TOML
[queue]
workers = ${WORKERS:-0}
# Room for every job the run accepts, so the figure is the accept rate,
# not the rate at which workers drain the queue.
capacity = 2000000
TOML
# CACHE_MB=16 bash benches/load.sh: another sled cache size than the default.
if [ -n "${CACHE_MB:-}" ]; then printf '[store]\ncache_mb = %s\n' "$CACHE_MB" >> "$work/config.toml"; fi
start_herald
sleep 1
echo "idle RSS: $(rss)"

echo "== async webhook ingest (Alertmanager fixture), $CONNECTIONS connections, $DURATION"
post_script "$PWD/tests/fixtures/alertmanager-0.25-webhook-firing.json"
new_alert_per_request "$work/post.lua"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/post.lua" "$url/alerts/webhook/alertmanager/" | tee "$work/async.out" &
wrk_pid=$!
sleep 5
echo "RSS under async load: $(rss)"
wait $wrk_pid
echo "RSS after async load: $(rss)"

# What was run, not only accepted: the runs finished while wrk ran (its
# accepted requests less the queue left), then the time the workers take
# to drain the rest, which also keeps them off the CPU of the sync case.
python3 - "$url" "$work/async.out" <<'PY'
import json, re, sys, time, urllib.request
depth = lambda: json.load(urllib.request.urlopen(sys.argv[1] + "/readyz"))["queue_depth"]
out = open(sys.argv[2]).read()
requests = int(re.search(r"(\d+) requests in ([\d.]+)s", out).group(1))
seconds = float(re.search(r"(\d+) requests in ([\d.]+)s", out).group(2))
refused = int(re.search(r"non-2xx (\d+)", out).group(1))
left, started = depth(), time.time()
while left and depth() and time.time() - started < 600:
    time.sleep(0.1)
took = time.time() - started
finished = requests - refused - left
print(f"runs finished during the async load: {finished / seconds:.0f}/s; "
      f"{left} left queued, drained in {took:.1f} s ({left / max(took, 0.001):.0f} runs/s)")
PY

echo "== sync runs (transform → notify log), $CONNECTIONS connections, $DURATION"
echo '{"payload": {"name": "HighCPU"}}' > "$work/sync.json"
post_script "$work/sync.json"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/post.lua" "$url/orchestration/definitions/sync-log/execute/" &
wrk_pid=$!
sleep 5
echo "RSS under sync load: $(rss)"
wait $wrk_pid
