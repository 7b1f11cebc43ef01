#!/usr/bin/env bash
# tract (the device's runtime) beside onnxruntime on the same ONNX graph,
# same threads, same machine, in one run, printing JSON lines: tract's
# per-stage medians and peak RSS (`tumorxai-device bench`), onnxruntime's
# inference median on the graph tract ran (exported by the same command) and
# on the bundle's graph as shipped (QDQ for int8 bundles, which onnxruntime
# fuses into its own int8 kernels), and the three ratios of the goals, each
# against the faster of onnxruntime's two:
#   tract inference / onnxruntime inference        (goal <= 1.5)
#   end to end (decode..render) / onnxruntime      (goal <= 2.0)
#   peak RSS / (2 x f32 weights + 64 MB)           (goal <= 1.0)
#
# Usage: bash device/bench/ort_compare.sh [BUNDLE] [FORM] [THREADS]
#   defaults: models/demo-int8.bundle auto 1. Release binary
#   target/release/tumorxai-device (built if missing; TUMORXAI_DEVICE_BIN
#   overrides); onnxruntime from .venv-tools (bash .ci/setup).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
bundle=${1:-models/demo-int8.bundle}
form=${2:-auto}
threads=${3:-1}
bin=${TUMORXAI_DEVICE_BIN:-target/release/tumorxai-device}
if [ ! -x "$bin" ]; then
  cargo build --release -p tumorxai-device >&2
fi
python=.venv-tools/bin/python
[ -x "$python" ] || { echo "ort_compare: run bash .ci/setup first (onnxruntime in .venv-tools)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$bin" bench --bundle "$bundle" --form "$form" --threads "$threads" --repeat 10 \
  --export-onnx "$tmp/model.onnx" \
  models/samples/01-glioma-t1c.jpg models/samples/07-normal-t2.jpg models/samples/15-schwannoma-t1c.jpg \
  >"$tmp/tract.json"
"$bin" bench --bundle "$bundle" --form as-shipped --repeat 1 --export-onnx "$tmp/shipped.onnx" \
  models/samples/01-glioma-t1c.jpg >/dev/null
"$python" device/bench/ort_latency.py "$tmp/model.onnx" --threads "$threads" --runs 30 >"$tmp/ort.json"
"$python" device/bench/ort_latency.py "$tmp/shipped.onnx" --threads "$threads" --runs 30 >"$tmp/ort-shipped.json"
"$python" - "$tmp/tract.json" "$tmp/ort.json" "$tmp/ort-shipped.json" <<'PY'
import json, sys
tract = json.load(open(sys.argv[1]))
same = dict(json.load(open(sys.argv[2])), graph="as tract ran it")
shipped = dict(json.load(open(sys.argv[3])), graph="as shipped in the bundle")
ort = min(same, shipped, key=lambda r: r["inference_ms_median"])
end_to_end = sum(tract[f"{s}_ms_median"] for s in ["decode", "preprocess", "inference", "eigencam", "render"])
budget_kib = (2 * shipped["f32_weight_bytes"] + 64 * 1024 * 1024) / 1024
print(json.dumps(dict(tract, bench="tract")))
print(json.dumps(same))
print(json.dumps(shipped))
print(json.dumps({
    "bench": "tract_vs_onnxruntime",
    "cpu": tract["cpu"],
    "threads": tract["threads"],
    "execution_form": tract["execution_form"],
    "tract_inference_ms": tract["inference_ms_median"],
    "onnxruntime_inference_ms": ort["inference_ms_median"],
    "onnxruntime_graph": ort["graph"],
    "inference_ratio": tract["inference_ms_median"] / ort["inference_ms_median"],
    "end_to_end_ms": end_to_end,
    "end_to_end_over_onnxruntime": end_to_end / ort["inference_ms_median"],
    "peak_rss_kib": tract["peak_rss_kib"],
    "rss_budget_kib": round(budget_kib),
    "rss_over_budget": tract["peak_rss_kib"] / budget_kib,
}))
PY
