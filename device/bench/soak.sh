#!/usr/bin/env bash
# Soak benchmark: N slices through one `tumorxai-device serve` process, fed
# into its inbox in batches (write-then-rename, as a gateway does). After each
# batch is answered, the service's resident memory (VmRSS) is sampled; the
# JSON printed at the end says whether memory stayed flat.
#
#   bash device/bench/soak.sh [SLICES=10000] [BATCH=500]
#
# Runs the binary in $TUMORXAI_DEVICE (default: target/release/tumorxai-device,
# else target/debug/tumorxai-device) from the repository root, on the sample
# scans and tests/fixtures/tiny-model/phantom-test cycled with unique names. Needs ~1 GB of
# temporary disk for the answers (overlay PNGs); cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/../.."
slices=${1:-10000}
batch=${2:-500}
bin=${TUMORXAI_DEVICE:-}
if [ -z "$bin" ]; then
  bin=target/release/tumorxai-device
  [ -x "$bin" ] || bin=target/debug/tumorxai-device
fi
[ -x "$bin" ] || { echo "soak: build the device binary first (cargo build -p tumorxai-device)" >&2; exit 2; }
mapfile -t sources < <(find models/samples tests/fixtures/tiny-model/phantom-test -type f -name '*.jpg' | sort)
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/in"
"$bin" serve --inbox "$work/in" --outbox "$work/out" --settle-ms 0 --poll-ms 20 \
  >/dev/null 2>"$work/serve.log" &
pid=$!
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$pid/status"; }
samples=()
start=$(date +%s.%N)
fed=0
while [ "$fed" -lt "$slices" ]; do
  n=$(( slices - fed < batch ? slices - fed : batch ))
  for ((i = 0; i < n; i++)); do
    src=${sources[$(( (fed + i) % ${#sources[@]} ))]}
    cp "$src" "$work/in/.s$((fed + i)).part"
    mv "$work/in/.s$((fed + i)).part" "$work/in/s$((fed + i)).jpg"
  done
  fed=$(( fed + n ))
  # Wait until everything fed so far is archived.
  while [ "$(find "$work/archive" -type f 2>/dev/null | wc -l)" -lt "$fed" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "soak: the service died" >&2; cat "$work/serve.log" >&2; exit 1; }
    sleep 0.2
  done
  samples+=("$(rss)")
done
end=$(date +%s.%N)
kill -TERM "$pid"
status=0
wait "$pid" || status=$?
answers=$(find "$work/out" -name '*.json' | wc -l)
audit=$(cat "$work/audit/"audit*.jsonl | wc -l)
python3 - "$slices" "$start" "$end" "$status" "$answers" "$audit" "${samples[@]}" <<'PY'
import json, sys
slices, start, end, status, answers, audit = sys.argv[1:7]
rss = [int(v) for v in sys.argv[7:]]
first = rss[1] if len(rss) > 1 else rss[0]
print(json.dumps({
    "bench": "soak",
    "slices": int(slices),
    "seconds": round(float(end) - float(start), 1),
    "slices_per_second": round(int(slices) / (float(end) - float(start)), 1),
    "answers": int(answers),
    "audit_entries": int(audit),
    "exit_status_after_sigterm": int(status),
    "rss_kib_per_batch": rss,
    "rss_growth_kib_after_first_batch": rss[-1] - first,
}, indent=1))
PY
