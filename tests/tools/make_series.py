"""Writes one MR series with pydicom, as a scanner would send it: N slices
of one study and series (distinct SOP Instance UIDs, instance numbers
1..N), 12-bit pixels from the T1C+ sample slices in turn, with the fake
patient of make_dicom_set.py. For the PACS round-trip tests and benchmark.

    python tests/tools/make_series.py N OUT_DIR

OUT_DIR/series.json: {"study_instance_uid", "series_instance_uid",
"slices": [{"file", "sop_instance_uid"}...]}. Versions: pydicom 3.0.2,
numpy 2.4.6, pillow 13.0.0 (.ci/setup).
"""
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.uid import generate_uid

from make_dicom_set import base, save, set_pixels

SAMPLES = Path(__file__).resolve().parents[2] / "models" / "samples"


def main():
    count, out = int(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    sources = sorted(SAMPLES.glob("*-t1c.jpg"))
    study, series = generate_uid(), generate_uid()
    slices = []
    for index in range(count):
        gray = np.asarray(Image.open(sources[index % len(sources)]).convert("L"))
        rows, cols = gray.shape
        ds = base(rows, cols)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.StudyID, ds.AccessionNumber = "4711", "ACC-4711"
        ds.SeriesNumber, ds.InstanceNumber = 3, index + 1
        ds.ImagePositionPatient = [0, 0, 2.5 * index]
        set_pixels(ds, gray.astype(np.uint16) * 16, bits_stored=12)
        ds.WindowCenter, ds.WindowWidth = 2000, 4000
        name = f"slice-{index + 1:03}.dcm"
        save(ds, out / name)
        slices.append({"file": name, "sop_instance_uid": ds.SOPInstanceUID})
    (out / "series.json").write_text(json.dumps({
        "study_instance_uid": study,
        "series_instance_uid": series,
        "slices": slices,
    }, indent=1))


if __name__ == "__main__":
    main()
