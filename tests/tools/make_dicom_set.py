"""Writes DICOM test files with pydicom (an independent writer) and, for each
decodable case, the expected [0, 1] plane computed here with numpy from the
standard's formulas (PS3.3 C.11.1 modality LUT, C.11.2.1.2 VOI window,
MONOCHROME1 inversion; auto-window = minimum .. 99.5th percentile by
nearest rank when the file has no window, as documented in
shared/src/dicom/window.rs).

    python tests/tools/make_dicom_set.py SLICE.jpg OUT_DIR

OUT_DIR/cases.json lists every file with what the decoder must do:
"plane" (decode; compare with NAME.expected.f32, little-endian f32, within
"tolerance"), "review" (decodes, but the tags rule the slice out; the reason
must contain "reason"), or "error" (refused; the message must contain
"error"). Every file carries a fake patient name and ID, which no output may
repeat. Versions: pydicom 3.0.2, numpy 2.4.6, pillow 13.0.0 (.ci/setup).
"""
import io
import json
import math
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
    generate_uid,
)

PATIENT_NAME = "DOE^JANE"
PATIENT_ID = "PID-4711-SECRET"


def base(rows, cols, description="AX T1 POST GD"):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.Modality = "MR"
    ds.BodyPartExamined = "BRAIN"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    ds.SeriesDescription = description
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    return ds


def set_pixels(ds, array, bits_stored=None):
    bits = array.dtype.itemsize * 8
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if array.dtype.kind == "i" else 0
    ds.PixelData = array.astype(array.dtype.newbyteorder("<")).tobytes()


def save(ds, path, ts=ExplicitVRLittleEndian):
    ds.file_meta.TransferSyntaxUID = ts
    ds.save_as(path, enforce_file_format=True)


def linear(x, c, w):
    y = (x - (c - 0.5)) / (w - 1) + 0.5
    y = np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, y)
    y = np.where(x > c - 0.5 + (w - 1) / 2, 1.0, y)
    return y


def linear_exact(x, c, w):
    return np.clip((x - c) / w + 0.5, 0.0, 1.0)


def sigmoid(x, c, w):
    return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))


def auto(x):
    flat = np.sort(x.ravel())
    rank = max(math.ceil(0.995 * flat.size) - 1, 0)
    low, high = flat[0], flat[rank]
    return np.clip((x - low) / (high - low), 0.0, 1.0)


def main():
    source, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    gray = np.asarray(Image.open(source).convert("L"))
    rows, cols = gray.shape
    v12 = gray.astype(np.uint16) * 16  # 12-bit range 0..4080
    cases = []

    def plane(name, ds, expected, ts=ExplicitVRLittleEndian, tolerance=1e-6, file_name=None):
        file_name = file_name or f"{name}.dcm"
        save(ds, out / file_name, ts)
        np.asarray(expected, dtype="<f4").tofile(out / f"{name}.expected.f32")
        cases.append({"file": file_name, "expect": "plane", "name": name,
                      "width": cols, "height": rows, "tolerance": tolerance})

    ds = base(rows, cols)
    set_pixels(ds, gray.astype(np.uint8))
    plane("mono2-u8-auto-window", ds, auto(gray.astype(np.float64)))

    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    plane("mono2-u16-12bit-window", ds, linear(v12.astype(np.float64), 2000, 3000))

    signed = v12.astype(np.int16) - 2048
    ds = base(rows, cols)
    set_pixels(ds, signed)
    ds.RescaleSlope, ds.RescaleIntercept = 2, 100
    ds.WindowCenter, ds.WindowWidth = 0, 6000
    plane("mono2-s16-rescale-window", ds,
          linear(signed.astype(np.float64) * 2 + 100, 0, 6000))

    inverted = (4095 - v12).astype(np.uint16)
    ds = base(rows, cols)
    set_pixels(ds, inverted, bits_stored=12)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    plane("mono1-u16-window", ds, 1.0 - linear(inverted.astype(np.float64), 2048, 4096))

    # 12 bits stored with garbage in the 4 unused high bits (overlay bits in
    # old files): only the low 12 count.
    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    ds.PixelData = (v12 | 0xB000).astype("<u2").tobytes()
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    plane("mono2-u12-high-bits-garbage", ds, linear(v12.astype(np.float64), 2000, 3000))

    # Signed 12-bit in 16: two's complement in the low 12 bits, garbage above.
    s12 = v12.astype(np.int32) - 2048
    ds = base(rows, cols)
    set_pixels(ds, s12.astype(np.int16), bits_stored=12)
    ds.PixelData = ((s12 & 0x0FFF) | 0x5000).astype("<u2").tobytes()
    ds.WindowCenter, ds.WindowWidth = 0, 4096
    plane("mono2-s12-in-16", ds, linear(s12.astype(np.float64), 0, 4096))

    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 1500, 2500
    ds.VOILUTFunction = "SIGMOID"
    plane("sigmoid-window", ds, sigmoid(v12.astype(np.float64), 1500, 2500))

    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 1500, 2500
    ds.VOILUTFunction = "LINEAR_EXACT"
    plane("linear-exact-window", ds, linear_exact(v12.astype(np.float64), 1500, 2500))

    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    plane("implicit-vr", ds, linear(v12.astype(np.float64), 2000, 3000), ts=ImplicitVRLittleEndian)

    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    plane("deflated", ds, linear(v12.astype(np.float64), 2000, 3000),
          ts=DeflatedExplicitVRLittleEndian)

    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    ds.compress(RLELossless, v12, encoding_plugin="pydicom")
    ds.save_as(out / "rle-lossless.dcm", enforce_file_format=True)
    np.asarray(linear(v12.astype(np.float64), 2000, 3000), dtype="<f4").tofile(
        out / "rle-lossless.expected.f32")
    cases.append({"file": "rle-lossless.dcm", "expect": "plane", "name": "rle-lossless",
                  "width": cols, "height": rows, "tolerance": 1e-6})

    # JPEG baseline: Pillow encodes; the reference is Pillow's own decode of
    # the same bytes (decoders may differ by a grey level: tolerance 3/255).
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="JPEG", quality=92)
    decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L")).astype(np.float64)
    ds = base(rows, cols)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(out / "jpeg-baseline.dcm", enforce_file_format=True)
    np.asarray(linear(decoded, 128, 256), dtype="<f4").tofile(out / "jpeg-baseline.expected.f32")
    cases.append({"file": "jpeg-baseline.dcm", "expect": "plane", "name": "jpeg-baseline",
                  "width": cols, "height": rows, "tolerance": 3 / 255})

    # As scanners export: no extension.
    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    plane("no-extension", ds, linear(v12.astype(np.float64), 2000, 3000), file_name="IM000001")

    def review(name, reason, **tags):
        ds = base(rows, cols)
        set_pixels(ds, v12, bits_stored=12)
        ds.WindowCenter, ds.WindowWidth = 2000, 3000
        for key, value in tags.items():
            setattr(ds, key, value)
        save(ds, out / f"{name}.dcm")
        cases.append({"file": f"{name}.dcm", "expect": "review", "reason": reason})

    review("ct-modality", "modality CT", Modality="CT")
    review("localizer", "LOCALIZER", ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    review("sagittal", "sagittal", ImageOrientationPatient=[0, 1, 0, 0, 0, -1])
    review("spine", "body part LSPINE", BodyPartExamined="LSPINE")
    review("flair", "declares FLAIR", SeriesDescription="AX T2 FLAIR")

    def error(name, message, data):
        (out / f"{name}.dcm").write_bytes(data)
        cases.append({"file": f"{name}.dcm", "expect": "error", "error": message})

    def encoded(ds, ts=ExplicitVRLittleEndian):
        ds.file_meta.TransferSyntaxUID = ts
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()

    ds = base(rows, cols)
    set_pixels(ds, np.stack([v12, v12]), bits_stored=12)
    ds.NumberOfFrames = 2
    error("multi-frame", "2 frames", encoded(ds))

    ds = base(rows, cols)
    ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
    rgb = np.stack([gray] * 3, axis=-1).astype(np.uint8)
    set_pixels(ds, rgb)
    ds.PhotometricInterpretation = "RGB"
    error("rgb", "colour", encoded(ds))

    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    whole = encoded(ds)
    error("truncated", "truncated", whole[: len(whole) - len(whole) // 3])

    ds = base(60000, 60000)
    set_pixels(ds, v12, bits_stored=12)
    error("huge-dimensions", "too large", encoded(ds))

    ds = base(rows, cols)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    error("missing-pixel-data", "no Pixel Data", encoded(ds))

    # Wrong VR length: the Series Description's 2-byte length field set to
    # 0xFFF0, far past the end of the element: the next "header" lies inside
    # the pixel data.
    ds = base(rows, cols, description="AXT1")
    set_pixels(ds, v12, bits_stored=12)
    data = bytearray(encoded(ds))
    at = data.find(b"\x08\x00\x3e\x10LO")
    struct.pack_into("<H", data, at + 6, 0xFFF0)
    error("wrong-vr-length", "value bytes but only", bytes(data))

    # A 4-byte length of 0xFFFFFFF0 on the pixel data (explicit VR OW).
    data = bytearray(encoded(base(rows, cols)))
    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    data = bytearray(encoded(ds))
    at = data.find(b"\xe0\x7f\x10\x00OW")
    struct.pack_into("<I", data, at + 8, 0xFFFFFFF0)
    error("huge-pixel-length", "4294967280 value bytes", bytes(data))

    ds = base(rows, cols)
    set_pixels(ds, v12.astype(np.uint16), bits_stored=12)
    ds.BitsAllocated = 12
    error("bits-allocated-12", "Bits Allocated 12", encoded(ds))

    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    ds.HighBit = 15
    error("high-bit-mismatch", "High Bit 15", encoded(ds))

    # Lengths the pre-scan must refuse before dicom-rs allocates them (its
    # value buffers are zero-filled to the declared length first).
    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    data = bytearray(encoded(ds, ImplicitVRLittleEndian))
    at = data.rfind(b"\xe0\x7f\x10\x00")
    struct.pack_into("<I", data, at + 4, 0xFFFFFFF0)
    error("implicit-huge-pixel-length", "4294967280 value bytes", bytes(data))

    # Inside a sequence item: an OB element of 0xFFFFFFF0 bytes.
    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    item = Dataset()
    item.ReferencedSOPClassUID = MRImageStorage
    item.add_new(0x00091010, "OB", b"MARK" * 4)
    ds.ReferencedImageSequence = [item]
    data = bytearray(encoded(ds))
    at = data.find(b"\x09\x00\x10\x10OB")
    struct.pack_into("<I", data, at + 8, 0xFFFFFFF0)
    error("nested-huge-length", "4294967280 value bytes", bytes(data))

    def split_meta(data):
        """Offset where the data set starts (after the explicit-VR meta group)."""
        at = 132
        while data[at:at + 2] == b"\x02\x00":
            vr = data[at + 4:at + 6]
            if vr in (b"OB", b"OW", b"UN", b"UT", b"SQ", b"UC", b"UR"):
                at += 12 + struct.unpack_from("<I", data, at + 8)[0]
            else:
                at += 8 + struct.unpack_from("<H", data, at + 6)[0]
        return at

    def deflated(data):
        """The same file with its data set deflated (raw deflate, PS3.5 A.5)."""
        explicit_uid = ExplicitVRLittleEndian.encode() + b"\x00"
        deflated_uid = DeflatedExplicitVRLittleEndian.encode()
        at = split_meta(data)
        meta = bytearray(data[:at])
        # Same even length ("1.2.840.10008.1.2.1\0" is 20, the deflated UID
        # 22): patch the element length and the group length.
        uid_at = meta.find(explicit_uid)
        meta[uid_at - 2:uid_at + len(explicit_uid)] = struct.pack("<H", 22) + deflated_uid
        group_length = struct.unpack_from("<I", meta, 140)[0] + 2
        struct.pack_into("<I", meta, 140, group_length)
        packer = zlib.compressobj(9, zlib.DEFLATED, -15)
        return bytes(meta) + packer.compress(bytes(data[at:])) + packer.flush()

    # The helper's control: its output, unpatched, decodes.
    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    ds.WindowCenter, ds.WindowWidth = 2000, 3000
    (out / "deflated-by-hand.dcm").write_bytes(deflated(encoded(ds)))
    np.asarray(linear(v12.astype(np.float64), 2000, 3000), dtype="<f4").tofile(
        out / "deflated-by-hand.expected.f32")
    cases.append({"file": "deflated-by-hand.dcm", "expect": "plane", "name": "deflated-by-hand",
                  "width": cols, "height": rows, "tolerance": 1e-6})

    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    data = bytearray(encoded(ds))
    at = data.find(b"\xe0\x7f\x10\x00OW")
    struct.pack_into("<I", data, at + 8, 0xFFFFFFF0)
    error("deflated-huge-pixel-length", "4294967280 value bytes", deflated(data))

    # A deflate bomb: 64 MiB of zeros behind a valid header.
    ds = base(rows, cols)
    set_pixels(ds, v12, bits_stored=12)
    data = encoded(ds)
    bomb = deflated(data[:split_meta(data)] + bytes(64 << 20))
    error("deflate-bomb", "inflates to more than", bomb)

    rng = np.random.default_rng(7)
    error("garbage-after-marker", "meta group",
          bytes(128) + b"DICM" + rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())

    (out / "cases.json").write_text(json.dumps({
        "patient_name": PATIENT_NAME, "patient_id": PATIENT_ID, "cases": cases}, indent=1))


if __name__ == "__main__":
    main()
