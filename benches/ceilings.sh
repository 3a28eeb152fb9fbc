#!/usr/bin/env bash
# What each layer of an async webhook accept costs: the same wrk load as
# load.sh's async case (2 threads, 32 connections, the Alertmanager 0.25
# fixture), against a release build on loopback, with one more layer of
# the accept path in each case. The gap between two cases is what that
# layer costs; the first cases are ceilings no storage could lift.
#
#   bash benches/ceilings.sh
#   DURATION=30s bash benches/ceilings.sh
#
# Cases, each adding to the one before:
#   http      GET /healthz: hyper, loopback TCP and wrk alone
#   dry-run   POST a new alert with ?dry_run=true: the body read by its
#             driver and applied to incidents (alert states read from the
#             store), nothing written
#   resend    the same body again and again: as dry-run, through the real
#             intake threads; every alert unchanged, nothing written
#   incidents each request a new alert, `default_route = "none"`: its
#             alert state, incident and delivery record written, flushed
#             before the 202, no run
#   full      each request a new alert and its built-in run: load.sh's
#             async case (the job, the run and its indexes written too,
#             and the runs share the CPU)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
wrk_defaults 10s 32
prepare
base_config=$(cat "$work/config.toml")
configure() { # the [webhooks] default_route for the next start
    printf '%s\n[queue]\ncapacity = 2000000\n[webhooks]\ndefault_route = "%s"\n' \
        "$base_config" "$1" > "$work/config.toml"
}
case_line() { # name, wrk script, url
    local out
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$2" "$3" 2>&1)
    printf '%-10s %9s req/s  %s\n' "$1" \
        "$(awk '/Requests\/sec/ {print $2}' <<<"$out")" \
        "$(grep -E '^p50' <<<"$out" || true)"
}

fixture="$PWD/tests/fixtures/alertmanager-0.25-webhook-firing.json"
post_script "$fixture"
cp "$work/post.lua" "$work/same.lua"
new_alert_per_request "$work/post.lua"
: > "$work/get.lua"

configure builtin
start_herald
sleep 1
case_line http "$work/get.lua" "$url/healthz"
case_line dry-run "$work/post.lua" "$url/alerts/webhook/alertmanager/?dry_run=true"
case_line resend "$work/same.lua" "$url/alerts/webhook/alertmanager/"
stop_herald

configure none
start_herald
sleep 1
case_line incidents "$work/post.lua" "$url/alerts/webhook/alertmanager/"
stop_herald

configure builtin
start_herald
sleep 1
case_line full "$work/post.lua" "$url/alerts/webhook/alertmanager/"
