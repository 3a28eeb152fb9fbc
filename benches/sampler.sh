#!/usr/bin/env bash
# The background sampler's cost: CPU time and RSS of an idle `herald serve`
# (which samples every 5 s) over a minute, on a release build.
#
#   bash benches/sampler.sh          # 60 s
#   SECONDS_TO_RUN=300 bash benches/sampler.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${SECONDS_TO_RUN:-60}
source benches/lib.sh
prepare
start_herald
sleep 5
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
sleep "$RUN"
after=$(ticks)
python3 -c "import sys; t=(int(sys.argv[2])-int(sys.argv[1]))/int(sys.argv[3]); print(f'CPU: {t:.2f} s over {sys.argv[4]} s = {100*t/float(sys.argv[4]):.2f}% of one core')" "$before" "$after" "$hz" "$RUN"
echo "idle RSS with the sampler on: $(awk '/VmRSS/ {printf "%.1f MB", $2/1024}' /proc/$pid/status)"
