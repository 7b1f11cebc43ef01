//! EigenCAM's eigengap and sign certainty on the device: every slice
//! reports both; a map whose first two components are nearly tied (gap
//! below `LOW_CONFIDENCE_EIGENGAP`) or whose sign is a coin toss (below
//! `LOW_CONFIDENCE_SIGN`) is withheld — zero saliency, the overlay is the
//! slice alone — and every other map is shown.

use std::path::PathBuf;

use crate::common::{demo_model, repo};
use tumorxai_device::pipeline::{run_slice, LOW_CONFIDENCE_EIGENGAP, LOW_CONFIDENCE_SIGN};
use tumorxai_device::triage::Thresholds;

#[test]
fn low_confidence_maps_are_withheld_and_clear_ones_shown() {
    let model = demo_model();
    let (mut withheld, mut shown) = (0, 0);
    let mut samples: Vec<PathBuf> = std::fs::read_dir(repo().join("models/samples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    samples.sort();
    for path in samples {
        let r = run_slice(
            &model,
            &std::fs::read(&path).unwrap(),
            Thresholds::default(),
        )
        .unwrap();
        let e = r.explanation;
        assert!(
            (0.0..=1.0).contains(&e.eigengap),
            "{}: {e:?}",
            path.display()
        );
        assert!((0.0..=1.0).contains(&e.sign_certainty), "{e:?}");
        assert_eq!(
            e.low_confidence,
            e.eigengap < LOW_CONFIDENCE_EIGENGAP || e.sign_certainty < LOW_CONFIDENCE_SIGN
        );
        let any_heat = r.saliency.iter().any(|&v| v > 0.0);
        if e.low_confidence {
            withheld += 1;
            assert!(!any_heat, "{}: a withheld map was drawn", path.display());
            // The overlay is the slice itself: grey pixels only.
            assert!(r.overlay.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
        } else {
            shown += 1;
            assert!(any_heat, "{}: a clear map is empty", path.display());
        }
    }
    // The 17 samples exercise both paths (2 withheld with the 1.2.0 demo).
    assert!(
        withheld >= 1 && shown >= 10,
        "withheld {withheld}, shown {shown}"
    );
}
