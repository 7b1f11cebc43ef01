"""Reads the device's DICOM results with pydicom (an independent reader)
and checks them against the device's JSON answer for the same slice:

    python tests/tools/check_results.py ANSWER.json SOURCE.dcm SR.dcm [SC.dcm]

- the SR (Comprehensive 3D SR) is filed in the source's study, with its
  patient; its "Triage flag" code and "Tumor family" match the answer's
  flag; each "Probability <class>" NUM equals softmax(logits / T) computed
  here with numpy from the answer's logits and temperature (within the 6
  decimals written); its evidence references the source instance; the
  map item says whether the answer's explanation was shown; the
  Contributing Equipment Sequence names the algorithm (IHE AIR: Purpose
  of Reference "Processing Algorithm", the answer's model id, version and
  bundle SHA-256 in Software Versions);
- the SC has Burned In Annotation YES, Image Type DERIVED\\SECONDARY,
  Conversion Type WSD, RGB pixels, the source in its Source Image Sequence.

Prints one line per check; exits 1 on the first mismatch.
"""
import json
import sys

import numpy as np
from pydicom import dcmread

FLAG_CODES = {"TUMOR LIKELY": "TUMOR_LIKELY", "NO TUMOR FLAGGED": "NO_TUMOR", "REVIEW": "REVIEW"}


def fail(message):
    print(f"MISMATCH: {message}")
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)
    print(f"ok: {message}")


def walk(items):
    for item in items:
        yield item
        yield from walk(getattr(item, "ContentSequence", []))


def concept(item):
    return item.ConceptNameCodeSequence[0].CodeMeaning if "ConceptNameCodeSequence" in item else ""


def main():
    answer = json.load(open(sys.argv[1]))
    source = dcmread(sys.argv[2], stop_before_pixels=True)
    sr = dcmread(sys.argv[3])
    for name in ["StudyInstanceUID", "PatientID", "PatientName", "AccessionNumber"]:
        check(str(sr.get(name) or "") == str(source.get(name) or ""), f"SR {name} is the source's")
    check(sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34", "SR is a Comprehensive 3D SR")
    check(sr.SeriesInstanceUID != source.SeriesInstanceUID, "SR is in a series of its own")
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    check(evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID,
          "SR evidence references the source instance")
    items = list(walk(sr.ContentSequence))
    codes = {concept(i): i.ConceptCodeSequence[0].CodeValue for i in items if i.ValueType == "CODE"}
    texts = {concept(i): i.TextValue for i in items if i.ValueType == "TEXT"}
    nums = {concept(i): float(i.MeasuredValueSequence[0].NumericValue)
            for i in items if i.ValueType == "NUM"}
    flag = answer["triage"]["flag"]
    check(codes.get("Triage flag") == FLAG_CODES[flag["flag"]], f"SR flag is {flag['flag']}")
    if "family" in flag:
        check(texts.get("Tumor family") == flag["family"], f"SR family is {flag['family']}")
    check(texts.get("Notice") == "NOT FOR DIAGNOSTIC USE", "SR carries the notice")
    low_confidence = answer["explanation"].get("low_confidence")
    if low_confidence is not None:
        expected = "withheld" if low_confidence else "shown on the preview"
        check(texts.get("EigenCAM explanation map", "").startswith(expected),
              f"SR map item says {expected}")
    model = answer["model"]
    check(texts.get("Model") == f"{model['model_id']} {model['version']}", "SR names the model")
    for obj, name in [(sr, "SR")] + ([(dcmread(sys.argv[4]), "SC")] if len(sys.argv) > 4 else []):
        equipment = obj.ContributingEquipmentSequence[0]
        purpose = equipment.PurposeOfReferenceCodeSequence[0]
        check((purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning)
              == ("Newcode1", "99IHE", "Processing Algorithm"),
              f"{name} Contributing Equipment: Purpose of Reference Processing Algorithm")
        check(equipment.Manufacturer == "TumorXAI", f"{name} Contributing Equipment: Manufacturer")
        versions = " ".join(str(v) for v in equipment.SoftwareVersions)
        check(model["model_id"] in versions and model["version"] in versions
              and model["bundle_sha256"][:16] in versions,
              f"{name} Software Versions carry the model and its bundle hash")
    logits = np.array(answer["logits"], dtype=np.float64) / answer["triage"]["temperature"]
    probabilities = np.exp(logits - logits.max())
    probabilities /= probabilities.sum()
    probs = [v for k, v in nums.items() if k.startswith("Probability ")]
    check(len(probs) == len(probabilities) == 17, "SR has 17 class probabilities")
    worst = float(np.max(np.abs(np.array(probs) - probabilities)))
    # Half a unit of the 6th decimal written, plus the device's f32 arithmetic.
    check(worst <= 6e-7, f"SR probabilities equal softmax(logits/T) (max diff {worst:.1e})")
    if len(sys.argv) > 4:
        sc = dcmread(sys.argv[4])
        check(sc.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7", "SC is a Secondary Capture")
        check(sc.StudyInstanceUID == source.StudyInstanceUID, "SC is in the source's study")
        check(sc.PatientID == source.PatientID, "SC carries the source's patient")
        check(sc.BurnedInAnnotation == "YES", "SC Burned In Annotation YES")
        check(list(sc.ImageType)[:2] == ["DERIVED", "SECONDARY"], "SC Image Type DERIVED\\SECONDARY")
        check(sc.ConversionType == "WSD", "SC Conversion Type WSD")
        check(sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID,
              "SC Source Image Sequence references the source")
        pixels = sc.pixel_array
        check(pixels.ndim == 3 and pixels.shape[2] == 3, f"SC pixels are RGB {pixels.shape}")


if __name__ == "__main__":
    main()
