#!/usr/bin/env bash
# Memory for one huge webhook: builds an Alertmanager group of ~50 MB (the
# size seen in alert storms), POSTs it to a release build, and prints the
# daemon's peak RSS (VmHWM) before and after, and the time to the 202.
#
#   bash benches/storm.sh            # ~50 MB
#   MB=10 bash benches/storm.sh
#   ROUTE=none bash benches/storm.sh   # incidents only, no run (no stored payload)
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${MB:-50}
source benches/lib.sh
prepare
cat >> "$work/config.toml" <<TOML
[webhooks]
default_route = "${ROUTE:-builtin}"
TOML
python3 - "$work/big.json" "$MB" <<'PY'
import json, sys
base = json.load(open("tests/fixtures/alertmanager-0.25-webhook-firing.json"))
one = base["alerts"][0]
alerts, size, i = [], 0, 0
while size < int(sys.argv[2]) * 1_000_000:
    a = json.loads(json.dumps(one))
    a["labels"]["instance"] = f"host-{i:06d}"
    a["fingerprint"] = f"{i:016x}"
    alerts.append(a)
    size += len(json.dumps(a)) + 1
    i += 1
base["alerts"] = alerts
open(sys.argv[1], "w").write(json.dumps(base))
print(f"body: {size / 1e6:.1f} MB, {i} alerts")
PY
start_herald
echo "peak RSS before: $(hwm)"
curl -s -o /dev/null -w "answer %{http_code} in %{time_total}s\n" -XPOST --data-binary @"$work/big.json" "$url/alerts/webhook/alertmanager/"
echo "peak RSS after accepting: $(hwm)"
for _ in $(seq 600); do
    depth=$(curl -s "$url/readyz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["queue_depth"])')
    [ "$depth" = 0 ] && break
    sleep 0.5
done
echo "peak RSS after the run: $(hwm)"
