"""Timing of a training step for the PyTorch comparison scripts: 3 warm-up
calls, then `steps` timed calls, CUDA synchronised at both ends."""
import time

import torch


def time_steps(step, steps, device):
    for _ in range(3):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start
