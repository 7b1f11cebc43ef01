//! The phantom generator's promises: determinism, a lesion exactly where the
//! class says there is one, and radiologically ordered contrasts.

use tumorxai_host::synth::{self, Atlas, Phantom, TissueLabel};
use tumorxai_shared::{ClassInfo, Family, Sequence, CLASS_NAMES};

const SIZE: u32 = 128;

fn render(seed: u64, class: usize, index: usize) -> synth::Generated {
    synth::generate(Atlas::embedded().unwrap(), seed, class, index, SIZE).unwrap()
}

fn mean_where(p: &Phantom, label: TissueLabel) -> Option<f64> {
    let values: Vec<f64> = p
        .pixels
        .iter()
        .zip(&p.tissue)
        .filter(|(_, t)| **t == label)
        .map(|(v, _)| f64::from(*v))
        .collect();
    (values.len() > 20).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = render(11, 4, 3);
    let b = render(11, 4, 3);
    assert_eq!(a.jpeg, b.jpeg);
    assert_eq!(a.phantom.lesion_mask, b.phantom.lesion_mask);
    assert_ne!(render(12, 4, 3).jpeg, a.jpeg);
    assert_ne!(render(11, 4, 4).jpeg, a.jpeg);
}

#[test]
fn lesion_present_exactly_when_the_class_has_one() {
    for (class, name) in CLASS_NAMES.iter().enumerate() {
        let info = ClassInfo::parse(name).unwrap();
        for index in 0..4 {
            let g = render(5, class, index);
            let lesion_pixels = g.phantom.lesion_mask.iter().filter(|v| **v == 255).count();
            if info.family == Family::Normal {
                assert_eq!(lesion_pixels, 0, "{name} #{index} has a lesion");
            } else {
                assert!(
                    lesion_pixels >= 10,
                    "{name} #{index}: only {lesion_pixels} lesion pixels"
                );
            }
        }
    }
}

#[test]
fn slice_levels_follow_family_ranges_and_overlap() {
    let atlas = Atlas::embedded().unwrap();
    let schwannoma_t1 = 14;
    let normal_t1 = 6;
    let mut normal_low = false;
    for index in 0..30 {
        let s = synth::generate(atlas, 9, schwannoma_t1, index, 64)
            .unwrap()
            .phantom;
        assert!((-36.0..=-18.0).contains(&s.z_mm), "{}", s.z_mm);
        let n = synth::generate(atlas, 9, normal_t1, index, 64)
            .unwrap()
            .phantom;
        normal_low |= n.z_mm < -18.0;
    }
    // NORMAL also covers the posterior-fossa levels: the level alone never gives the class away.
    assert!(normal_low);
}

#[test]
fn csf_is_dark_on_t1_and_bright_on_t2() {
    let mut checked = [0usize; 3];
    for (class, name) in CLASS_NAMES.iter().enumerate() {
        let info = ClassInfo::parse(name).unwrap();
        for index in 0..3 {
            let p = render(21, class, index).phantom;
            let (Some(csf), Some(wm), Some(gm)) = (
                mean_where(&p, TissueLabel::Csf),
                mean_where(&p, TissueLabel::WhiteMatter),
                mean_where(&p, TissueLabel::GreyMatter),
            ) else {
                continue;
            };
            match info.sequence {
                Sequence::T1 | Sequence::T1C => {
                    assert!(
                        csf < gm && gm < wm,
                        "{name} #{index}: T1 csf {csf:.0} gm {gm:.0} wm {wm:.0}"
                    );
                }
                Sequence::T2 => {
                    assert!(
                        csf > gm && gm > wm,
                        "{name} #{index}: T2 csf {csf:.0} gm {gm:.0} wm {wm:.0}"
                    );
                }
            }
            checked[info.sequence as usize] += 1;
        }
    }
    assert!(checked.iter().all(|&n| n >= 10), "{checked:?}");
}

#[test]
fn enhancing_tumours_are_brighter_relative_to_white_matter_on_t1c() {
    // Glioma (0, 1), meningioma (3, 4), schwannoma (14, 15): T1 vs T1C+.
    for (t1, t1c) in [(0usize, 1usize), (3, 4), (14, 15)] {
        let ratio = |class: usize| -> f64 {
            let mut sum = 0.0;
            let mut n = 0.0;
            for index in 0..6 {
                let p = render(33, class, index).phantom;
                if let (Some(lesion), Some(wm)) = (
                    mean_where(&p, TissueLabel::Lesion),
                    mean_where(&p, TissueLabel::WhiteMatter),
                ) {
                    sum += lesion / wm;
                    n += 1.0;
                }
            }
            sum / n
        };
        let (plain, enhanced) = (ratio(t1), ratio(t1c));
        assert!(
            enhanced > plain + 0.1,
            "{}: T1 {plain:.2} vs T1C+ {enhanced:.2}",
            CLASS_NAMES[t1]
        );
    }
}

#[test]
fn vessel_enhancement_changes_contrast_slices_only_and_the_default_is_unchanged() {
    let atlas = Atlas::embedded().unwrap();
    // The default still makes the committed samples byte for byte
    // (models/samples: `synth --per-class 1 --seed 2026 --size 256`, the
    // first image of each class, made by an earlier build).
    let samples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/samples");
    for (class, file) in [
        (1, "01-glioma-t1c.jpg"),
        (6, "06-normal-t1.jpg"),
        (15, "15-schwannoma-t1c.jpg"),
    ] {
        let made = synth::generate(atlas, 2026, class, 0, 256).unwrap();
        assert_eq!(
            made.jpeg,
            std::fs::read(samples.join(file)).unwrap(),
            "{file}"
        );
    }
    let with =
        |class, factor: [f32; 2]| synth::generate_with(atlas, 5, class, 1, SIZE, factor).unwrap();
    for (class, name) in CLASS_NAMES.iter().enumerate() {
        let typical = with(class, [1.0, 1.0]);
        let none = with(class, [0.0, 0.0]);
        let drawn = with(class, [0.0, 1.0]);
        assert_eq!(typical.phantom.lesion_mask, none.phantom.lesion_mask);
        let contrast = ClassInfo::parse(name).unwrap().sequence == Sequence::T1C;
        // Only a contrast scan shows the vessels' enhancement.
        assert_eq!(
            typical.phantom.pixels != none.phantom.pixels,
            contrast,
            "{name}"
        );
        assert_eq!(
            typical.phantom.pixels != drawn.phantom.pixels,
            contrast,
            "{name}"
        );
    }
}
