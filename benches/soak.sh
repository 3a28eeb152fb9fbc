#!/usr/bin/env bash
# Soak: a steady rate of Alertmanager webhooks against a release build, with
# bounded live data, printing herald's RSS and the database file's size
# every 30 s. What it shows is whether memory and disk level off.
#
#   bash benches/soak.sh                       # 100/s for 10 min
#   RATE=20 SECONDS_TOTAL=3600 bash benches/soak.sh
#   COMPACT_MB=256 bash benches/soak.sh        # with online compaction
#
# The alerts are a fixed set of N (default 1000) that cycle firing ->
# resolved -> firing, so incidents and alert states stay bounded (N=100:
# each alert flaps every second, and its history fills up); with
# retention = "1min" and max_runs = 20000 runs and deliveries do too. One
# keep-alive connection from a Python client paces the requests. "written" is
# what herald has written to disk so far (write_bytes in /proc/<pid>/io).
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-100}
SECONDS_TOTAL=${SECONDS_TOTAL:-600}
N=${N:-1000}

source benches/lib.sh
prepare
# COMPACT_MB=256: let herald compact online past 256 MiB (default: never,
# to show the growth).
printf '[store]\nmax_runs = 20000\nretention = "1min"\ncompact_above_mb = %s\n' "${COMPACT_MB:-0}" >> "$work/config.toml"
start_herald
echo "soak: $RATE webhooks/s for $SECONDS_TOTAL s over $N alerts"

python3 - "$url" "$RATE" "$SECONDS_TOTAL" "$N" "$PWD/tests/fixtures/alertmanager-0.25-webhook-firing.json" <<'PY' &
import http.client, random, sys, time, urllib.parse
url, rate, total, n, fixture = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
u = urllib.parse.urlparse(url)
firing = open(fixture).read()
resolved = firing.replace('"status":"firing"', '"status":"resolved"')
conn = http.client.HTTPConnection(u.hostname, u.port)
tag = random.randint(1, 10**9)
start, sent, refused, slowest = time.time(), 0, 0, 0.0
while time.time() - start < total:
    k = sent % n
    body = resolved if (sent // n) % 2 else firing
    alert = f"{tag}-{k}"
    body = body.replace("4e70aa3763bd0be1", alert).replace("db-server-01", "db-" + alert)
    asked = time.time()
    conn.request("POST", "/alerts/webhook/alertmanager/", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    slowest = max(slowest, time.time() - asked)
    refused += r.status != 202
    sent += 1
    pause = start + sent / rate - time.time()
    if pause > 0:
        time.sleep(pause)
print(f"sent {sent}, not 202: {refused}, in {time.time() - start:.0f} s; slowest answer {slowest * 1000:.0f} ms")
PY
client=$!
elapsed=0
while kill -0 "$client" 2>/dev/null; do
    sleep 30
    elapsed=$((elapsed + 30))
    kill -0 "$client" 2>/dev/null || break
    written=$(awk '/^write_bytes/ {print $2}' "/proc/$pid/io")
    printf '%5d s  RSS %s  written %d MB  database file %d MB\n' "$elapsed" "$(rss)" \
        $(( written / 1048576 )) $(( $(stat -c %s "$work/data/db/db") / 1048576 ))
done
wait "$client"
echo "end: RSS $(rss), database file $(( $(stat -c %s "$work/data/db/db") / 1048576 )) MB"
# Then what a compaction gives back.
stop_herald
"$bin" --config "$work/config.toml" store compact
