"""Checks an exported model with the ONNX checker (full_check) and runs it in
onnxruntime. Usage: onnx_check.py MODEL.onnx INPUT.f32 SIDE
INPUT.f32 holds the 1×3×S×S input as little-endian float32. Prints JSON."""
import json
import sys

import numpy as np
import onnx
import onnxruntime as ort

path, input_path, side = sys.argv[1], sys.argv[2], int(sys.argv[3])
model = onnx.load(path)
onnx.checker.check_model(model, full_check=True)
x = np.fromfile(input_path, dtype="<f4").reshape(1, 3, side, side)
session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
logits, features = session.run(["logits", "features"], {"input": x})
print(json.dumps({
    "opset": model.opset_import[0].version,
    "logits": logits.flatten().tolist(),
    "features_shape": list(features.shape),
    "features": features.flatten().tolist(),
}))
