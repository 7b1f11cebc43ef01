"""Converts an ImageFolder of 8-bit slices (class folders) into the same
layout of DICOM files as a scanner exports them: one extension-less Part 10
file per slice (IM000001, ...), 16-bit MONOCHROME2 with 12 bits stored
(value × 16), a window of centre 2040 / width 4081 (which maps the 12-bit
values back onto the 8-bit grey levels: PS3.3 C.11.2.1.2, LINEAR), and a
Series Description naming the class's sequence. Written with pydicom 3.0.2.

    python tests/tools/folder_to_dicom.py IMAGE_FOLDER OUT_DIR [--per-class N]
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_dicom_set import base, set_pixels  # noqa: E402  (one MR header, one place)

DESCRIPTIONS = {"T1": "AX T1 SE", "T1C+": "AX T1 POST GD", "T2": "AX T2 FSE"}


def write(image_path, out_path, description):
    gray = np.asarray(Image.open(image_path).convert("L")).astype(np.uint16) * 16
    ds = base(*gray.shape, description=description)
    set_pixels(ds, gray, bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 2040, 4081
    ds.save_as(out_path, enforce_file_format=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=0)
    args = parser.parse_args()
    for class_dir in sorted(p for p in args.folder.iterdir() if p.is_dir()):
        sequence = class_dir.name.rsplit(" ", 1)[-1]
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
        if args.per_class:
            files = files[: args.per_class]
        target = args.out / class_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for i, path in enumerate(files, start=1):
            write(path, target / f"IM{i:06d}", DESCRIPTIONS.get(sequence, ""))


if __name__ == "__main__":
    main()
