#!/usr/bin/env python3
"""onnxruntime's inference latency on one ONNX model, as JSON: the reference
runtime beside tract for device/bench/ort_compare.sh. Median of --runs
single-slice runs after a warm-up, with intra-op threads as given.

Also reports the model's weights as f32 bytes (4 bytes per element of every
float or 8-bit initializer: an int8 model's weights counted as the f32 model
they stand for), the yardstick of the device's memory goal (peak RSS <= 2 x
f32 weights + 64 MB).
"""
import argparse
import json
import statistics
import time

import numpy as np
import onnx
import onnxruntime as ort


def f32_weight_bytes(path):
    model = onnx.load(path)
    total = 0
    weights = (onnx.TensorProto.FLOAT, onnx.TensorProto.INT8, onnx.TensorProto.UINT8)
    for init in model.graph.initializer:
        if init.data_type in weights:
            count = 1
            for d in init.dims:
                count *= d
            total += 4 * count
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    shape = [d if isinstance(d, int) else 1 for d in inp.shape]
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(5):
        session.run(None, {inp.name: x})
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        session.run(None, {inp.name: x})
        times.append((time.perf_counter() - start) * 1e3)
    print(json.dumps({
        "bench": "onnxruntime",
        "onnxruntime": ort.__version__,
        "threads": args.threads,
        "runs": args.runs,
        "inference_ms_median": statistics.median(times),
        "f32_weight_bytes": f32_weight_bytes(args.model),
    }))


if __name__ == "__main__":
    main()
