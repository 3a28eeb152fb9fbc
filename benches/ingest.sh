#!/usr/bin/env bash
# Alerts into incidents through the HTTP endpoint, with wrk (Debian package
# `wrk`), against a release build on loopback. Each request is one
# Alertmanager group of $BATCH alerts built from the real Alertmanager 0.25
# fixture; alerts/s = requests/s × $BATCH.
#
#   bash benches/ingest.sh           # 10 s per case, 8 connections, 500 alerts a body
#   BATCH=1000 DURATION=30s bash benches/ingest.sh
#   ROUTE=none bash benches/ingest.sh    # incidents only, no pipeline runs
#
# Cases:
#   new     every alert of every body is new: each opens an incident, and each
#           body starts one built-in run (durable before the 202)
#   resend  the same body again and again: every alert unchanged, no run
set -euo pipefail
cd "$(dirname "$0")/.."
BATCH=${BATCH:-500}
source benches/lib.sh
wrk_defaults 10s 8
prepare
cat >> "$work/config.toml" <<TOML
[queue]
capacity = 2000000
[webhooks]
default_route = "${ROUTE:-builtin}"
TOML
start_herald

# One alert entry of the fixture, with HOST and FP to fill in.
python3 - "$work/entry.json" <<'PY'
import json, sys
body = json.load(open("tests/fixtures/alertmanager-0.25-webhook-firing.json"))
a = body["alerts"][0]
a["labels"]["instance"] = "HOST"
a["fingerprint"] = "FP"
open(sys.argv[1], "w").write(json.dumps(a))
PY

script() { # $1 = new | resend
    cat > "$work/$1.lua" <<LUA
local f = io.open("$work/entry.json", "r")
local entry = f:read("*a")
f:close()
local batch = $BATCH
local counter = 0
local mode = "$1"
local threads = {}
setup = function(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
local function body(tag)
  local parts = {}
  for i = 1, batch do
    local e = entry:gsub("HOST", tag .. "-host-" .. i):gsub("FP", tag .. "-" .. i)
    parts[i] = e
  end
  return '{"receiver":"herald","status":"firing","version":"4","groupKey":"{}","alerts":[' .. table.concat(parts, ",") .. ']}'
end
local fixed = nil
request = function()
  local b
  if mode == "resend" then
    if fixed == nil then fixed = body("same") end
    b = fixed
  else
    counter = counter + 1
    b = body("t" .. tid .. "r" .. counter)
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, b)
end
done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format("%d bodies in %.1f s: %.0f alerts/s; p50 %.1f ms, p99 %.1f ms, non-2xx %d\n",
    summary.requests, secs, summary.requests * batch / secs,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
LUA
}

sleep 1
echo "idle RSS: $(rss)"
for mode in new resend; do
    script "$mode"
    echo "== $mode: $BATCH alerts a body, $CONNECTIONS connections, $DURATION"
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/$mode.lua" "$url/alerts/webhook/alertmanager/" | grep -E "alerts/s|Requests/sec"
    echo "RSS: $(rss)"
done
curl -s "$url/alerts/incidents/?limit=1" >/dev/null
echo "incidents: $(curl -s "$url/metrics" | awk '/^herald_alert_changes_total/ {print $1 "=" $2}' | tr '\n' ' ')"
