"""DINO with lightly 1.6.0's parts (DINOLoss, DINOProjectionHead with batch
norm, the last layer frozen for the first epoch), in PyTorch-Python: the
reference that `tumorxai pretrain --method dino` is compared against on the
same phantoms (README, "DINO at small scale"). Per-parameter gradient
clipping at 3 (DINO's utils.clip_gradients), AdamW, teacher temperature
0.04, student 0.1, centre momentum 0.9, teacher momentum on lightly's
cosine_schedule(epoch, epochs, 0.996, 1), two global crops (with `--views lightly
--local-views N`: lightly's own DINOTransform with N local crops as well).
Views as ours at this size: random resized crop 40-100 %, flip, rotation
±10°, brightness ±0.2 and contrast ±0.3 (additive / multiplicative on
[0, 1] planes), blur σ scaled from 0.1-2.0 px at 224² (p = 1 / 0.1),
solarisation on the second view (p = 0.2); `--crop-min` and `--jitter` weaken them
(`--crop-min 0.9 --jitter 0`: crops of 90-100 %, no intensity jitter or solarisation). Per epoch: mean loss, the
teacher's entropy (of its centred, sharpened output; uniform = ln K) and
the kNN accuracy (k = 20, cosine, DINO's weighting) of the teacher's
backbone, training side as memory, validation side as queries. JSON lines.

    python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch==2.11.0 torchvision==0.26.0 \
        && /tmp/refvenv/bin/pip install --no-deps lightly==1.6.0
    /tmp/refvenv/bin/python host/bench/dino_lightly_reference.py --data /tmp/d/phantom \
        --split /tmp/d/split.json --size 64 --epochs 100 --batch 32 --width 1.0 --prototypes 256
"""
import argparse
import json
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image
from lightly.loss import DINOLoss
from lightly.models.modules import DINOProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.utils.scheduler import cosine_schedule

# ImageNet statistics, as the shared preprocessing (grey replicated to RGB).
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def load_side(root, split, side, size):
    planes, labels = [], []
    for item in split["items"]:
        if item["side"] != side:
            continue
        image = Image.open(os.path.join(root, item["path"])).convert("L")
        image = image.resize((size, size), Image.BILINEAR)
        planes.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0))
        labels.append(item["class"])
    return torch.stack(planes).unsqueeze(1), torch.tensor(labels)


def blur(x, sigma):
    radius = max(1, min(int(math.ceil(3 * sigma)), (x.shape[-1] - 1) // 2))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(x, k.view(1, 1, -1, 1))


def view(planes, size, blur_p, solarize_p, gen, crop_min=0.4, jitter=1.0):
    b = planes.shape[0]
    out = []
    for i in range(b):
        r = lambda lo, hi: lo + (hi - lo) * torch.rand(1, generator=gen).item()
        scale = r(crop_min, 1.0)
        ratio = math.exp(r(math.log(0.75), math.log(4 / 3)))
        w, h = min(1.0, math.sqrt(scale * ratio)), min(1.0, math.sqrt(scale / ratio))
        cx, cy = r(-(1 - w), 1 - w), r(-(1 - h), 1 - h)
        flip = -1.0 if r(0, 1) < 0.5 else 1.0
        a = math.radians(r(-10, 10))
        c, s = math.cos(a), math.sin(a)
        theta = torch.tensor([[c * w * flip, -s * h, cx], [s * w * flip, c * h, cy]]).unsqueeze(0)
        grid = F.affine_grid(theta, [1, 1, size, size], align_corners=False)
        x = F.grid_sample(planes[i : i + 1], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        mean = x.mean()
        x = ((x - mean) * (1 + jitter * r(-0.3, 0.3)) + mean + jitter * r(-0.2, 0.2)).clamp(0, 1)
        if r(0, 1) < blur_p:
            x = blur(x, r(0.1, 2.0) * size / 224)
        if r(0, 1) < solarize_p:
            x = torch.where(x < 0.5, x, 1 - x)
        out.append(x)
    x = torch.cat(out).repeat(1, 3, 1, 1)
    return (x - MEAN) / STD


def resnet18(width):
    net = torchvision.models.resnet18()
    if width != 1.0:
        # Narrower ResNet-18 with torchvision's block layout: every stage's
        # channels × width (as `model.width`).
        import torchvision.models.resnet as r

        class Narrow(r.ResNet):
            def __init__(self):
                super().__init__(r.BasicBlock, [2, 2, 2, 2])
                c = [max(1, int(round(v * width))) for v in (64, 128, 256, 512)]
                self.inplanes = c[0]
                self.conv1 = torch.nn.Conv2d(3, c[0], 7, 2, 3, bias=False)
                self.bn1 = torch.nn.BatchNorm2d(c[0])
                self.layer1 = self._make_layer(r.BasicBlock, c[0], 2)
                self.layer2 = self._make_layer(r.BasicBlock, c[1], 2, stride=2)
                self.layer3 = self._make_layer(r.BasicBlock, c[2], 2, stride=2)
                self.layer4 = self._make_layer(r.BasicBlock, c[3], 2, stride=2)

        net = Narrow()
    dim = net.fc.in_features if width == 1.0 else net.layer4[-1].bn2.num_features
    net.fc = torch.nn.Identity()
    return net, dim


@torch.no_grad()
def knn_accuracy(backbone, memory, memory_labels, queries, query_labels, classes, k=20, t=0.07):
    backbone.eval()
    norm = lambda x: F.normalize(backbone((x.repeat(1, 3, 1, 1) - MEAN) / STD), dim=1)
    m, q = norm(memory), norm(queries)
    backbone.train()
    sim, idx = (q @ m.T).topk(min(k, m.shape[0]), dim=1)
    votes = torch.zeros(q.shape[0], classes)
    votes.scatter_add_(1, memory_labels[idx], (sim / t).exp())
    return (votes.argmax(1) == query_labels).float().mean().item()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--prototypes", type=int, default=256)
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--bottleneck", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--views",
        choices=["ours", "lightly"],
        default="ours",
        help="ours: the views above; lightly: lightly's DINOTransform (global crops at --size, "
        "--local-views local crops at lightly's default 96 px)",
    )
    p.add_argument("--crop-min", type=float, default=0.4, help="--views ours: smallest crop area fraction")
    p.add_argument("--jitter", type=float, default=1.0, help="--views ours: brightness/contrast jitter scale (0: none)")
    p.add_argument("--local-views", type=int, default=0, help="with --views lightly (lightly's default: 6)")
    a = p.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    split = json.load(open(a.split))
    train, train_labels = load_side(a.data, split, "train", a.size)
    val, val_labels = load_side(a.data, split, "val", a.size)
    classes = len(split["classes"])

    def build():
        backbone, dim = resnet18(a.width)
        head = DINOProjectionHead(dim, a.hidden, a.bottleneck, a.prototypes, batch_norm=True, freeze_last_layer=1)
        return torch.nn.Sequential(backbone, head), head

    student, head = build()
    # weight_norm's parameters cannot be deep-copied: a second instance
    # takes the student's state instead (lightly's examples deep-copy).
    teacher, _ = build()
    teacher.load_state_dict(student.state_dict())
    deactivate_requires_grad(teacher)
    loss_fn = DINOLoss(output_dim=a.prototypes, warmup_teacher_temp=0.04, teacher_temp=0.04)
    opt = torch.optim.AdamW(student.parameters(), lr=a.lr, weight_decay=a.weight_decay)
    gen = torch.Generator().manual_seed(a.seed)
    if a.views == "lightly":
        from lightly.transforms import DINOTransform

        transform = DINOTransform(global_crop_size=a.size, n_local_views=a.local_views)
        pils = [Image.fromarray((p[0].numpy() * 255).astype(np.uint8)).convert("RGB") for p in train]
    steps = train.shape[0] // a.batch
    for epoch in range(a.epochs):
        started = time.time()
        momentum = cosine_schedule(epoch, a.epochs, 0.996, 1.0)
        order = torch.randperm(train.shape[0], generator=gen)
        losses, entropies = [], []
        for s in range(steps):
            batch = train[order[s * a.batch : (s + 1) * a.batch]]
            if a.views == "lightly":
                crops = [transform(pils[i]) for i in order[s * a.batch : (s + 1) * a.batch].tolist()]
                views = [torch.stack([c[v] for c in crops]) for v in range(len(crops[0]))]
            else:
                views = [
                    view(batch, a.size, 1.0, 0.0, gen, a.crop_min, a.jitter),
                    view(batch, a.size, 0.1, 0.2 * a.jitter, gen, a.crop_min, a.jitter),
                ]
            update_momentum(student, teacher, m=momentum)
            # The teacher sees the two global crops, the student every crop.
            t_out = [teacher(v) for v in views[:2]]
            s_out = [student(v) for v in views]
            with torch.no_grad():
                pt = F.softmax((torch.stack(t_out) - loss_fn.center) / 0.04, dim=-1)
                entropies.append(-(pt * pt.clamp_min(1e-30).log()).sum(-1).mean().item())
            loss = loss_fn(t_out, s_out, epoch=epoch)
            opt.zero_grad()
            loss.backward()
            for param in student.parameters():
                if param.grad is not None:
                    norm = param.grad.norm()
                    coefficient = 3.0 / (norm + 1e-6)
                    if coefficient < 1:
                        param.grad.mul_(coefficient)
            head.cancel_last_layer_gradients(epoch)
            opt.step()
            losses.append(loss.item())
        knn = knn_accuracy(teacher[0], train, train_labels, val, val_labels, classes)
        print(
            json.dumps(
                {
                    "epoch": epoch + 1,
                    "loss": sum(losses) / len(losses),
                    "teacher_entropy": sum(entropies) / len(entropies),
                    "ln_k": math.log(a.prototypes),
                    "knn": knn,
                    "seconds": round(time.time() - started, 2),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
