# Start-up shared by the bench scripts; sourced, not run.
#
#   source benches/lib.sh
#   prepare                # build (unless HERALD_BIN), $work with definitions/ and a
#                          # base config.toml (loopback, warn), cleanup on exit
#   ...append to "$work/config.toml", write definitions...
#   start_herald           # herald serve on it, its log in $log; sets $pid and $url
#   stop_herald            # SIGTERM, and wait for it to exit (the store closed)
#   wrk_defaults D C       # wrk is installed; DURATION, CONNECTIONS, THREADS default
#                          # to D, C and 2 unless set in the environment
#   sync_log_definition    # definitions/sync-log.json: transform → notify(log)
#   post_script FILE       # $work/post.lua: wrk POSTs FILE, prints p50/p99/non-2xx at the end
#   new_alert_per_request F  # append to wrk script F: each request a new alert
#
# HERALD_BIN=path runs another build instead of this tree's (an A/B
# comparison of two builds on the same script).

prepare() {
    bin=${HERALD_BIN:-./target/release/herald}
    [ -n "${HERALD_BIN:-}" ] || cargo build --release --quiet
    work=$(mktemp -d)
    pid=
    trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT
    mkdir -p "$work/definitions"
    printf 'listen = "127.0.0.1:0"\ndata_dir = "data"\ndefinitions_dir = "definitions"\nlog_level = "warn"\n' > "$work/config.toml"
}

start_herald() {
    # Its log to a file, as a service's goes to the journal: the `log`
    # notify driver writes a warning line per run of the built-in
    # pipeline, which would bury the figures. Not in $work itself: herald
    # watches the config's directory, and every line would be an event.
    mkdir -p "$work/log"
    log="$work/log/herald.log"
    "$bin" --config "$work/config.toml" serve 2> "$log" &
    pid=$!
    for _ in $(seq 100); do [ -f "$work/data/herald.addr" ] && break; sleep 0.1; done
    if [ ! -f "$work/data/herald.addr" ]; then
        echo "herald did not start:" >&2
        cat "$log" >&2
        exit 1
    fi
    url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$work/data/herald.addr")
}

stop_herald() {
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    pid=
    rm -f "$work/data/herald.addr"
}

wrk_defaults() {
    command -v wrk >/dev/null || { echo "wrk is missing: apt-get install wrk" >&2; exit 1; }
    DURATION=${DURATION:-$1}
    CONNECTIONS=${CONNECTIONS:-$2}
    THREADS=${THREADS:-2}
}

# The definition of load.sh's sync case: a transform, then a `log` notify.
sync_log_definition() {
    cat > "$work/definitions/sync-log.json" <<'JSON'
{"version": "1", "nodes": [
  {"id": "shape", "type": "transform", "config": {"mapping": {"name": "payload.name"}}, "next": "notify"},
  {"id": "notify", "type": "notify", "config": {"driver": "log"}}]}
JSON
}

# Resident and peak resident memory of the daemon.
rss() { awk '/VmRSS/ {print $2 " kB"}' "/proc/$pid/status"; }
hwm() { awk '/VmHWM/ {printf "%.1f MB", $2/1024}' "/proc/$pid/status"; }

# Appends to the wrk script "$1" (which has set wrk.body to the Alertmanager
# fixture) a request() that makes each request a new alert: the fixture's
# fingerprint and instance numbered (a re-send would change nothing).
new_alert_per_request() {
    cat >> "$1" <<'LUA'
local template = wrk.body
local counter = 0
-- Seeded, or every wrk run numbers its alerts the same: a second run on
-- the same store would re-send the first one's alerts (no change, no job).
math.randomseed(os.time())
setup = function(thread) thread:set("tid", math.random(1, 1e9)) end
request = function()
  counter = counter + 1
  local id = tid .. "-" .. counter
  local b = template:gsub("4e70aa3763bd0be1", id):gsub("db%-server%-01", "db-" .. id)
  return wrk.format(nil, nil, nil, b)
end
LUA
}

# Writes $work/post.lua: a wrk script that POSTs the file "$1" as JSON and
# prints p50, p99 and the non-2xx count at the end.
post_script() {
    cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open("$1", "r")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format("p50 %.2f ms, p99 %.2f ms, non-2xx %d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.errors.status))
end
LUA
}
