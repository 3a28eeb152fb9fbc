#!/usr/bin/env bash
# Load test of the HTTP API with wrk (Debian package `wrk`), against a
# release build on loopback. Prints wrk's summary for each case and herald's
# RSS idle and under load.
#
#   bash benches/load.sh            # 10 s per case, 32 connections
#   DURATION=30s CONNECTIONS=64 bash benches/load.sh
#
# Cases:
#   async  POST /alerts/webhook/alertmanager/  the real Alertmanager 0.25 body,
#          its fingerprint and instance made unique per request (a re-send
#          of the same alert changes nothing and starts no job); each 202 is
#          a new incident and a durable job, flushed to disk before the answer
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
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/post.lua" "$url/alerts/webhook/alertmanager/" &
wrk_pid=$!
sleep 5
echo "RSS under async load: $(rss)"
wait $wrk_pid
echo "RSS after async load: $(rss)"

# Let the workers drain the async jobs so they do not share the CPU with
# the sync case.
python3 - "$url" <<'PY'
import json, sys, time, urllib.request
for _ in range(1200):
    depth = json.load(urllib.request.urlopen(sys.argv[1] + "/readyz"))["queue_depth"]
    if depth == 0:
        break
    time.sleep(0.5)
print(f"queue drained (depth {depth})")
PY

echo "== sync runs (transform → notify log), $CONNECTIONS connections, $DURATION"
echo '{"payload": {"name": "HighCPU"}}' > "$work/sync.json"
post_script "$work/sync.json"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/post.lua" "$url/orchestration/definitions/sync-log/execute/" &
wrk_pid=$!
sleep 5
echo "RSS under sync load: $(rss)"
wait $wrk_pid
