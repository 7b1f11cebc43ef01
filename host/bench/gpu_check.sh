#!/usr/bin/env bash
# GPU check (run on a lent H100/H200 through the device tool, from the repo root):
# supervised training and SimCLR pre-training throughput (ResNet-50, 224²)
# the paper configuration's training throughput with TumorXAI's real pipeline on a
# generated phantom set, against the same configuration in PyTorch-Python.
#
# Prepare here (CPU machine):
#   TUMORXAI_CUDA=1 cargo build --release -p tumorxai-host
#   mkdir -p .device-carry && cp target/release/tumorxai .device-carry/
# Run there (device tool, carry [".device-carry"], timeout ~500 s):
#   bash host/bench/gpu_check.sh
set -euo pipefail
BIN=${BIN:-.device-carry/tumorxai}
OUT=${OUT:-/tmp/gpu-check}
TORCH_LIB=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# 17 × 262 = 4,454 slices: the size of the real set.
"$BIN" synth --out "$OUT/phantom" --per-class 262 --size 256 --seed 1 --overwrite
"$BIN" split --data "$OUT/phantom" --out "$OUT/split.json" --val 0.05 --test 0.05 | tail -3
rm -rf "$OUT/run"
"$BIN" train --data "$OUT/phantom" --split "$OUT/split.json" --out "$OUT/run" --device cuda --epochs 3 \
  --set 'model.depth="resnet50"' --set model.width=1.0 --set model.input_size=224 \
  --set optim.batch_size=128 --set run.mixed_precision=true --set run.channels_last=true 2>&1 | grep -E "training|epoch|test"
python3 host/bench/pytorch_pipeline.py --data "$OUT/phantom" --epochs 2 --workers 14
# SimCLR pre-training with the real pipeline (two GPU-augmented views per
# image, projector 2048 → 128, NT-Xent, LARS), same model and input.
rm -rf "$OUT/simclr"
"$BIN" pretrain --method simclr --data "$OUT/phantom" --split "$OUT/split.json" --out "$OUT/simclr" --device cuda --epochs 2 \
  --set 'model.depth="resnet50"' --set model.width=1.0 --set model.input_size=224 \
  --set optim.batch_size=128 --set run.mixed_precision=true --set run.channels_last=true 2>&1 | grep -E "pre-training|epoch"
# The same SimCLR step on synthetic tensors, ours and PyTorch's (no data pipeline).
"$BIN" bench simclr-step --depth resnet50 --size 224 --batch 128 --steps 20 --device cuda
python3 host/bench/pytorch_simclr_step.py --device cuda --steps 20 --configs resnet50:224:128
