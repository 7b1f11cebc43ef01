"""Builds the out-of-distribution set: inputs a brain-slice triage box must not
flag with confidence, from sources independent of our phantom generator.

    python make_ood_set.py --skimage-wheel WHEEL --templates DIR --slices DIR OUT

OUT/<category>/<name>.png|jpg, categories:
- body-part:      other body parts and modalities, real images: a spine CT
                  and a small MR (pydicom's test files), retina photographs
                  and faces (scikit-image's data)
- other-modality: Shepp-Logan CT head phantom, microscopy, histology
- non-medical:    photographs and a scanned page (scikit-image's data)
- other-plane:    sagittal and coronal slices of the real MRI templates
                  (the phantoms and the real dataset are axial): MNI152 T1,
                  and Colin27 with skull when --templates has it
- other-contrast: grey- and white-matter probability maps of the MNI template
                  (brain-shaped, but a contrast no sequence produces)
- montage:        2x2, 3x3 and 1x2 grids of clean test slices
- corrupt:        clean test slices whose JPEG entropy data was overwritten
                  (they still decode, into garbage texture)

Deterministic (fixed picks, fixed RNG seed). Needs numpy, pillow and pydicom
(the test tooling venv, `.ci/setup`) and the scikit-image wheel (data only,
read as a zip; scikit-image itself is not installed).
Versions used: numpy 2.4.6, pillow 13.0.0, pydicom 3.0.2, scikit-image 0.26.0.
"""

import argparse
import gzip
import io
import os
import struct
import sys
import zipfile

import numpy as np
from PIL import Image
import pydicom
from pydicom.data import get_testdata_file


def save(out, category, name, array_or_image, fmt="png"):
    folder = os.path.join(out, category)
    os.makedirs(folder, exist_ok=True)
    img = array_or_image
    if isinstance(img, np.ndarray):
        img = Image.fromarray(to_u8(img))
    path = os.path.join(folder, f"{name}.{fmt}")
    if fmt == "jpg":
        img.save(path, quality=92)
    else:
        img.save(path)


def to_u8(a, lo=None, hi=None):
    a = a.astype(np.float64)
    lo = np.percentile(a, 0.5) if lo is None else lo
    hi = np.percentile(a, 99.5) if hi is None else hi
    return (np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1) * 255).round().astype(np.uint8)


def read_nifti(path):
    """NIfTI-1 volume as a numpy array indexed [x, y, z] (RAS)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    (sizeof_hdr,) = struct.unpack_from("<i", raw, 0)
    if sizeof_hdr != 348:
        raise ValueError(f"{path}: not a little-endian NIfTI-1 file")
    dims = struct.unpack_from("<8h", raw, 40)
    (datatype,) = struct.unpack_from("<h", raw, 70)
    (vox_offset,) = struct.unpack_from("<f", raw, 108)
    dtype = {2: np.uint8, 4: np.int16, 8: np.int32, 16: np.float32, 64: np.float64}[datatype]
    shape = dims[1:1 + dims[0]][:3]
    count = int(np.prod(shape))
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=int(vox_offset))
    return data.reshape(shape, order="F").astype(np.float32)


def upscale(a, side):
    img = Image.fromarray(to_u8(a))
    return img.resize((side, side), Image.BICUBIC)


def dicom_images(out):
    ct = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = ct.pixel_array.astype(np.float64) * float(ct.RescaleSlope) + float(ct.RescaleIntercept)
    # Soft-tissue and bone windows (centre/width in HU).
    for name, (c, w) in {"ct-spine-soft": (40, 400), "ct-spine-bone": (400, 1800)}.items():
        save(out, "body-part", name, upscale(np.clip(hu, c - w / 2, c + w / 2), 256))
    mr = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
    save(out, "body-part", "mr-small", upscale(mr.pixel_array, 256))


def skimage_images(out, wheel):
    with zipfile.ZipFile(wheel) as z:
        def image(name):
            return Image.open(io.BytesIO(z.read(f"skimage/data/{name}")))

        save(out, "body-part", "retina", image("retina.jpg").convert("RGB").resize((384, 384)), "jpg")
        save(out, "body-part", "retina-microaneurysms", image("microaneurysms.png"))
        faces = np.load(io.BytesIO(z.read("skimage/data/lfw_subset.npy")))
        for i in (0, 37, 91):
            save(out, "body-part", f"face-{i}", upscale(faces[i], 200))
        save(out, "other-modality", "shepp-logan-ct-phantom", image("phantom.png"))
        save(out, "other-modality", "microscopy-cells", image("cell.png"))
        save(out, "other-modality", "histology-ihc", image("ihc.png").convert("RGB"), "jpg")
        for name in ("camera.png", "moon.png", "coins.png", "page.png", "astronaut.png",
                     "chelsea.png", "horse.png", "hubble_deep_field.jpg", "rocket.jpg"):
            img = image(name)
            img = img.convert("L" if img.mode in ("1", "L", "I", "I;16") else "RGB")
            save(out, "non-medical", name.split(".")[0], img, "jpg")


def template_images(out, templates):
    volumes = [("mni-t1", read_nifti(os.path.join(templates, "mni152_2009a_t1.nii.gz")))]
    # Colin27 with skull and scalp, where the templates folder has it (the
    # workplace's shared data; not in the repository).
    colin = os.path.join(templates, "colin27_ch2_with_skull.nii.gz")
    if os.path.exists(colin):
        volumes.append(("colin-skull", read_nifti(colin)))
    for vol_name, vol in volumes:
        nx, ny, nz = vol.shape
        for frac in (0.35, 0.5):
            x = int(nx * frac)
            save(out, "other-plane", f"{vol_name}-sagittal-{x}", np.flipud(vol[x, :, :].T))
        for frac in (0.45, 0.6):
            y = int(ny * frac)
            save(out, "other-plane", f"{vol_name}-coronal-{y}", np.flipud(vol[:, y, :].T))
    for name in ("gm", "wm"):
        vol = read_nifti(os.path.join(templates, f"mni152_2009a_{name}.nii.gz"))
        for frac in (0.45, 0.6):
            z = int(vol.shape[2] * frac)
            save(out, "other-contrast", f"mni-{name}-map-axial-{z}", np.flipud(vol[:, :, z].T))


def clean_slices(slices):
    picks = []
    for cls in sorted(os.listdir(slices)):
        folder = os.path.join(slices, cls)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith((".jpg", ".jpeg")))
        if files:
            picks.append(os.path.join(folder, files[0]))
    if len(picks) < 9:
        sys.exit(f"{slices}: need at least 9 class folders with JPEG slices")
    return picks


def montage_images(out, picks):
    tiles = [Image.open(p).convert("L").resize((128, 128)) for p in picks]
    for name, (rows, cols), start in (("montage-2x2", (2, 2), 0), ("montage-3x3", (3, 3), 4),
                                      ("montage-1x2", (1, 2), 13)):
        sheet = Image.new("L", (cols * 128, rows * 128))
        for i in range(rows * cols):
            sheet.paste(tiles[(start + i) % len(tiles)], ((i % cols) * 128, (i // cols) * 128))
        save(out, "montage", name, sheet)


def scan_start(jpeg):
    """Offset of the first byte of entropy-coded data (after SOS's header)."""
    i = 2
    while i + 4 <= len(jpeg):
        if jpeg[i] != 0xFF:
            raise ValueError("not a JPEG marker")
        marker = jpeg[i + 1]
        (length,) = struct.unpack_from(">H", jpeg, i + 2)
        if marker == 0xDA:
            return i + 2 + length
        i += 2 + length
    raise ValueError("no scan")


def corrupt_images(out, picks):
    rng = np.random.default_rng(2026)
    for n, path in enumerate(picks[:8]):
        data = bytearray(open(path, "rb").read())
        start = scan_start(data)
        end = len(data) - 2
        # Overwrite a run of entropy data (no 0xFF, so no marker appears):
        # the decoder keeps going and paints garbage from there on.
        at = start + int((end - start) * (0.2 + 0.1 * (n % 4)))
        run = min(256, end - at)
        data[at:at + run] = bytes(int(b) for b in rng.integers(0, 0xFF, run))
        folder = os.path.join(out, "corrupt")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"entropy-overwritten-{n}.jpg"), "wb") as f:
            f.write(data)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--skimage-wheel", required=True)
    p.add_argument("--templates", required=True)
    p.add_argument("--slices", required=True, help="clean slices, ImageFolder layout")
    p.add_argument("out")
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    dicom_images(a.out)
    skimage_images(a.out, a.skimage_wheel)
    template_images(a.out, a.templates)
    picks = clean_slices(a.slices)
    montage_images(a.out, picks)
    corrupt_images(a.out, picks)
    total = sum(len(fs) for _, _, fs in os.walk(a.out))
    print(f"{total} out-of-distribution inputs in {a.out}")


if __name__ == "__main__":
    main()
