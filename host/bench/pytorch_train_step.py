"""The same training step as `tumorxai bench train-step`, in PyTorch-Python,
for a same-machine, same-thread-count comparison. Prints JSON lines.

Install nothing outside a venv:
    python3 -m venv .venv-bench
    .venv-bench/bin/pip install torch==2.11.0 torchvision==0.26.0
    .venv-bench/bin/python host/bench/pytorch_train_step.py --threads 2
(`.venv-bench/` is git-ignored.) Then compare with, on the same machine:
    target/release/tumorxai bench train-step --depth resnet18 --size 64 --batch 32
    target/release/tumorxai bench train-step --depth resnet50 --size 224 --batch 8
"""
import argparse
import json
import torch
import torchvision
from step_timing import time_steps


def bench(depth, size, batch, steps, device):
    torch.manual_seed(0)
    model = getattr(torchvision.models, depth)(num_classes=17).to(device)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 17, (batch,), device=device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    seconds = time_steps(step, steps, device)
    return {
        "bench": "train_step", "framework": "pytorch", "depth": depth, "size": size, "batch": batch,
        "steps": steps, "device": device, "threads": torch.get_num_threads(),
        "seconds_per_step": seconds / steps, "images_per_second": batch * steps / seconds,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for depth, size, batch in [("resnet18", 64, 32), ("resnet50", 224, 8)]:
        print(json.dumps(bench(depth, size, batch, a.steps, a.device)), flush=True)
