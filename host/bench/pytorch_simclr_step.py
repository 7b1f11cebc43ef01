"""The same SimCLR step as `tumorxai bench simclr-step`, in PyTorch-Python,
for a same-machine, same-thread-count comparison: two random views of a
batch through a torchvision ResNet (no fc) and a 2-layer projector
(Linear → BatchNorm → ReLU → Linear, 2048 → 128), NT-Xent (τ = 0.2), backward,
and a LARS step (trust coefficient 0.001, momentum 0.9, weight decay 1e-6,
1-D parameters excluded: the same rule as ours). Prints JSON lines.

    .venv-bench/bin/python host/bench/pytorch_simclr_step.py --threads 2
Then, on the same machine:
    target/release/tumorxai bench simclr-step --depth resnet18 --size 64 --batch 32
    target/release/tumorxai bench simclr-step --depth resnet50 --size 224 --batch 8
"""
import argparse
import json
import torch
import torch.nn.functional as F
import torchvision
from step_timing import time_steps


def nt_xent(z1, z2, temperature):
    b = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.t() / temperature
    logits.fill_diagonal_(float("-inf"))
    target = (torch.arange(2 * b, device=z.device) + b) % (2 * b)
    return F.cross_entropy(logits, target)


class Lars:
    def __init__(self, params, lr, momentum=0.9, weight_decay=1e-6, eta=0.001):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.momentum, self.wd, self.eta = lr, momentum, weight_decay, eta
        self.buffers = {}

    @torch.no_grad()
    def step(self):
        for p in self.params:
            if p.grad is None:
                continue
            d = p.grad
            if p.ndim > 1:
                d = d.add(p, alpha=self.wd)
                w, g = p.norm(), d.norm()
                if w > 0 and g > 0:
                    d = d * (self.eta * w / g)
            buf = self.buffers.get(p)
            if buf is None:
                buf = self.buffers[p] = d.clone()
            else:
                buf.mul_(self.momentum).add_(d)
            p.add_(buf, alpha=-self.lr)

    def zero_grad(self):
        for p in self.params:
            p.grad = None


def bench(depth, size, batch, steps, device):
    torch.manual_seed(0)
    backbone = getattr(torchvision.models, depth)()
    dim = backbone.fc.in_features
    backbone.fc = torch.nn.Identity()
    projector = torch.nn.Sequential(
        torch.nn.Linear(dim, 2048, bias=False),
        torch.nn.BatchNorm1d(2048),
        torch.nn.ReLU(),
        torch.nn.Linear(2048, 128),
    )
    model = torch.nn.Sequential(backbone, projector).to(device).train()
    opt = Lars(model.parameters(), lr=0.3)
    x1 = torch.randn(batch, 3, size, size, device=device)
    x2 = torch.randn(batch, 3, size, size, device=device)

    def step():
        loss = nt_xent(model(x1), model(x2), 0.2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()

    seconds = time_steps(step, steps, device)
    return {
        "bench": "simclr_step", "framework": "pytorch", "depth": depth, "size": size, "batch": batch,
        "steps": steps, "device": device, "threads": torch.get_num_threads(),
        "seconds_per_step": seconds / steps, "images_per_second": batch * steps / seconds,
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--configs", default="resnet18:64:32,resnet50:224:8")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    for spec in a.configs.split(","):
        depth, size, batch = spec.split(":")
        print(json.dumps(bench(depth, int(size), int(batch), a.steps, a.device)), flush=True)
