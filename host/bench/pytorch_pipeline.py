"""The paper configuration in PyTorch-Python best practice, fed by a typical
DataLoader pipeline, for comparison with `tumorxai train` on the same GPU:
ResNet-50, 224², batch 128, SGD, bf16 autocast + channels_last; JPEG decode,
grayscale→3 channels, RandomResizedCrop, flip, small rotation, ColorJitter,
GaussianBlur, normalise. Prints one JSON line per epoch.

    python3 host/bench/pytorch_pipeline.py --data DIR --epochs 2 --workers 14
"""
import argparse
import json
import time

import torch
import torchvision
from torchvision import transforms as T


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", required=True)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--workers", type=int, default=14)
    a = p.parse_args()
    tf = T.Compose([
        T.Grayscale(num_output_channels=3),
        T.RandomResizedCrop(224, scale=(0.7, 1.0)),
        T.RandomHorizontalFlip(),
        T.RandomRotation(10),
        T.ColorJitter(0.1, 0.1),
        T.RandomApply([T.GaussianBlur(9, (0.1, 1.0))], p=0.1),
        T.ToTensor(),
        T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    ])
    ds = torchvision.datasets.ImageFolder(a.data, transform=tf)
    dl = torch.utils.data.DataLoader(ds, batch_size=a.batch, shuffle=True, drop_last=True,
                                     num_workers=a.workers, pin_memory=True, persistent_workers=True)
    model = torchvision.models.resnet50(num_classes=len(ds.classes)).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(a.epochs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        images = 0
        for x, y in dl:
            x = x.cuda(non_blocking=True).to(memory_format=torch.channels_last)
            y = y.cuda(non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = loss_fn(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            images += x.shape[0]
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        print(json.dumps({"framework": "pytorch", "epoch": epoch + 1, "images": images,
                          "seconds": seconds, "images_per_second": images / seconds}), flush=True)


if __name__ == "__main__":
    main()
