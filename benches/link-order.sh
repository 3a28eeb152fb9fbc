#!/usr/bin/env bash
# Writes packaging/link-order.txt: the functions herald runs, in the order
# build.rs hands them to the linker for release builds (see build.rs for
# why). Needs valgrind (Debian package `valgrind`) and python3.
#
#   bash benches/link-order.sh          # builds the release binary first
#   HERALD_BIN=path bash benches/link-order.sh
#
# herald is run under callgrind in two phases, each listed in the binary's
# own address order (which keeps callers near their callees as the compiler
# laid them out):
#   1. start-up and 15 s of idle (the sampler's and the store probe's
#      5 s ticks among them): what is resident at idle, so first and
#      together;
#   2. then webhooks, a sync run, the read endpoints and the shutdown: the
#      request path, next to it.
# Run it again after updating dependencies or the toolchain: symbol names
# carry a hash of each crate's version, and a function missing from the
# binary is skipped (the script prints how much of the old list still
# matched).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 1; }
out=packaging/link-order.txt

source benches/lib.sh
prepare
sync_log_definition
bin=$(realpath "$bin")
(cd "$work" && exec valgrind --tool=callgrind --demangle=no --callgrind-out-file="$work/cg.out" \
    "$bin" --config config.toml serve 2>"$work/valgrind.log") &
for _ in $(seq 600); do [ -f "$work/data/herald.addr" ] && break; sleep 0.1; done
[ -f "$work/data/herald.addr" ] || { cat "$work/valgrind.log" >&2; exit 1; }
url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$work/data/herald.addr")
pid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pid"])' "$work/data/herald.addr")
sleep 15
callgrind_control --dump=idle "$pid" >/dev/null 2>&1

python3 - "$url" "$PWD/tests/fixtures" <<'PY'
import json, sys, urllib.request
url, fixtures = sys.argv[1], sys.argv[2]
def call(method, path, body=None):
    req = urllib.request.Request(url + path, data=body, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        return json.load(e)
firing = open(f"{fixtures}/alertmanager-0.25-webhook-firing.json").read()
resolved = open(f"{fixtures}/alertmanager-0.25-webhook-resolved.json").read()
runs = []
for i in range(20):
    body = firing.replace("4e70aa3763bd0be1", f"order-{i}")
    runs += call("POST", "/alerts/webhook/alertmanager/", body.encode())["run_ids"]
    call("POST", "/alerts/webhook/", body.encode())  # a re-send: detected, unchanged
    call("POST", "/alerts/webhook/alertmanager/", resolved.replace("4e70aa3763bd0be1", f"order-{i}").encode())
for name in ["seed-grafana-state-alerting.json", "seed-pagerduty-v3.json", "seed-generic.json"]:
    call("POST", "/alerts/webhook/", open(f"{fixtures}/{name}").read().encode())
for _ in range(20):
    call("POST", "/orchestration/definitions/sync-log/execute/", b'{"payload": {"name": "HighCPU"}}')
    call("POST", "/orchestration/pipeline/", b'{"payload": {"alertname": "DiskFull"}}')
for path in ["/orchestration/pipelines/", "/orchestration/definitions/", "/orchestration/definitions/default/",
             "/alerts/incidents/", "/metrics", "/readyz", "/healthz", "/openapi.json"] + \
            [f"/orchestration/pipeline/{r}/" for r in runs[:5]]:
    urllib.request.urlopen(url + path).read()
PY
sleep 2
kill -TERM "$pid"
wait

python3 - "$work" "$bin" "$out" "$(rustc -V)" <<'PY'
import glob, hashlib, os, re, subprocess, sys, tomllib
work, binary, out, rustc = sys.argv[1:]

def executed(path):
    """Functions of the herald binary that ran in one callgrind dump."""
    names, objects, ob, ran = {}, {}, None, set()
    for line in open(path, errors="replace"):
        m = re.match(r"^(c?ob|c?fn)=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
        if not m:
            continue
        kind, ident, name = m.groups()
        table = objects if kind.endswith("ob") else names
        if name:
            table[ident] = name
        if kind == "ob":
            ob = objects[ident]
        elif kind == "fn" and ob == binary:
            ran.add(names[ident])
    return ran

dumps = sorted(glob.glob(f"{work}/cg.out*"), key=os.path.getmtime)
if len(dumps) != 2:
    sys.exit(f"expected two callgrind dumps, found {dumps}")
idle, requests = (executed(d) for d in dumps)
address, size = {}, {}
for line in subprocess.run(["nm", "-S", "--defined-only", binary], capture_output=True,
                           text=True, check=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 4 and parts[2] in "tTwW":
        address[parts[3]] = int(parts[0], 16)
        size[parts[3]] = int(parts[1], 16)
first = sorted((n for n in idle if n in address), key=address.get)
then = sorted((n for n in requests - idle if n in address), key=address.get)
if os.path.exists(out):
    old = [l.strip() for l in open(out) if l.strip() and not l.startswith("#")]
    still = sum(1 for n in old if n in address)
    print(f"old list: {still} of {len(old)} functions still in the binary")
version = tomllib.load(open("Cargo.toml", "rb"))["package"]["version"]
lock = hashlib.sha256(open("Cargo.lock", "rb").read()).hexdigest()
with open(out, "w") as f:
    # LLD skips lines that start with '#'. The test `link_order_is_current`
    # compares these with the tree; build.rs warns of another rustc.
    f.write("# The functions herald runs at start and idle, then on the request path:\n"
            "# LLD's --symbol-ordering-file for release builds (build.rs).\n"
            "# Made by benches/link-order.sh from the binary of:\n"
            f"# herald {version}\n# {rustc}\n# Cargo.lock sha256 {lock}\n")
    f.writelines(n + "\n" for n in first + then)
mib = lambda names: sum(size[n] for n in names) / 2**20
print(f"{out}: {len(first)} functions at start and idle ({mib(first):.2f} MiB), "
      f"then {len(then)} on the request path ({mib(then):.2f} MiB); "
      f"all code: {mib(size):.2f} MiB")
PY
