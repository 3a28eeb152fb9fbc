#!/usr/bin/env bash
# Online compaction under load: wrk posts a new Alertmanager alert per
# request (8 connections) at a release build whose store compacts online
# past COMPACT_MB (default 32 MiB); the pruner checks after each minute's
# pass, so the first compaction starts about a minute in. Prints wrk's
# summary (the latency is what webhooks felt) and herald's `store compacted`
# lines: took_ms, writes_held_ms (how long writes waited), replayed.
#
#   bash benches/compact-online.sh
#   DURATION=180s COMPACT_MB=64 bash benches/compact-online.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
wrk_defaults 130s 8
prepare
sed -i 's/log_level = "warn"/log_level = "warn,herald::store=info"/' "$work/config.toml"
printf '[queue]\ncapacity = 2000000\n[store]\ncompact_above_mb = %s\n' "${COMPACT_MB:-32}" >> "$work/config.toml"
mkdir -p "$work/log"   # not in $work: herald watches the config's directory
"$bin" --config "$work/config.toml" serve 2> "$work/log/herald.log" &
pid=$!
for _ in $(seq 100); do [ -f "$work/data/herald.addr" ] && break; sleep 0.1; done
url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$work/data/herald.addr")

post_script "$PWD/tests/fixtures/alertmanager-0.25-webhook-firing.json"
new_alert_per_request "$work/post.lua"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/post.lua" "$url/alerts/webhook/alertmanager/"
echo "accepted: $(curl -s "$url/metrics" | awk '/^herald_webhook_requests_total.*accepted/ {print $2}')"
grep -E "store compacted|compaction failed" "$work/log/herald.log" || echo "no compaction finished during the run"
