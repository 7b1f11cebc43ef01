#!/usr/bin/env bash
# Flashing throughput benchmark: `tumorxai flash` uploads the demo int8
# bundle to a real `tumorxai-device serve --serial` through the pseudo-
# terminal relay (tests/tools/serial_relay.py) limited to each line rate, and
# prints one JSON line per rate: the payload rate (bytes the device
# acknowledged per second, before the final chunk's verification) as a
# fraction of the line's byte rate (baud / 10 for 8N1). Base64 framing caps
# the fraction at 75 %.
#
#   bash host/bench/flash_throughput.sh [BAUD...]     (default: 115200 921600)
#
# Binaries: $TUMORXAI_BIN_DIR, else target/release, else target/debug (both
# `tumorxai` and `tumorxai-device`); Python from .venv-tools (bash .ci/setup).
# 115200 baud takes about two minutes for the 913 KB bundle.
set -euo pipefail
cd "$(dirname "$0")/../.."
bins=${TUMORXAI_BIN_DIR:-}
if [ -z "$bins" ]; then
  bins=target/release
  [ -x "$bins/tumorxai" ] && [ -x "$bins/tumorxai-device" ] || bins=target/debug
fi
for b in tumorxai tumorxai-device; do
  [ -x "$bins/$b" ] || { echo "flash_throughput: build $b first (cargo build --workspace)" >&2; exit 2; }
done
python=.venv-tools/bin/python
[ -x "$python" ] || { echo "flash_throughput: run bash .ci/setup first" >&2; exit 2; }
bundle=tests/fixtures/tiny-model/int8.bundle
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(115200 921600)

# Whatever happens (a failed flash, Ctrl-C), the device and the relay stop
# and the scratch folder goes.
work= device= RELAY_PID=
cleanup() {
  if [ -n "$device" ]; then kill "$device" 2>/dev/null || true; wait "$device" 2>/dev/null || true; fi
  if [ -n "$RELAY_PID" ]; then kill "$RELAY_PID" 2>/dev/null || true; wait "$RELAY_PID" 2>/dev/null || true; fi
  if [ -n "$work" ]; then rm -rf "$work"; fi
  device= RELAY_PID= work=
}
trap cleanup EXIT

for baud in "${rates[@]}"; do
  work=$(mktemp -d)
  mkdir -p "$work/state/trust"
  # A provisioned unit with no model installed: the upload goes to slot a.
  cp models/trust/demo-signing-key.pub.pem "$work/state/trust/demo.pem"
  line_bps=$((baud / 10))
  coproc RELAY { "$python" tests/tools/serial_relay.py --bps "$line_bps"; }
  read -r ports <&"${RELAY[0]}"
  device_port=$("$python" -c 'import json,sys; print(json.loads(sys.argv[1])["device"])' "$ports")
  client_port=$("$python" -c 'import json,sys; print(json.loads(sys.argv[1])["client"])' "$ports")
  TUMORXAI_STATE_DIR="$work/state" "$bins/tumorxai-device" serve --poll-ms 200 \
    --inbox "$work/in" --outbox "$work/out" --serial "$device_port" --baud "$baud" \
    2>"$work/device.log" &
  device=$!
  # Ready once its SMP server has the port open.
  for _ in $(seq 300); do
    grep -q "SMP server on" "$work/device.log" && break
    kill -0 "$device" 2>/dev/null || { cat "$work/device.log" >&2; exit 1; }
    sleep 0.1
  done
  grep -q "SMP server on" "$work/device.log" || { echo "flash_throughput: serve never opened $device_port" >&2; exit 1; }
  start=$(date +%s.%N)
  if ! "$bins/tumorxai" flash --port "$client_port" --baud "$baud" "$bundle" 2>"$work/flash.log"; then
    cat "$work/flash.log" "$work/device.log" >&2
    exit 1
  fi
  end=$(date +%s.%N)
  rate=$(sed -n 's/^payload rate \([0-9]*\) bytes\/s.*/\1/p' "$work/flash.log")
  [ -n "$rate" ] || { cat "$work/flash.log" >&2; exit 1; }
  "$python" - "$baud" "$line_bps" "$rate" "$(stat -c %s "$bundle")" "$start" "$end" <<'EOF'
import json, sys
baud, line, rate, size, start, end = sys.argv[1:]
print(json.dumps({
    "bench": "flash_throughput",
    "baud": int(baud),
    "line_bytes_per_second": int(line),
    "payload_bytes_per_second": int(rate),
    "fraction_of_line_rate": round(int(rate) / int(line), 4),
    "bundle_bytes": int(size),
    "flash_seconds": round(float(end) - float(start), 2),
}))
EOF
  cleanup
done
