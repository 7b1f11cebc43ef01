//! Tests of the physics engine as a whole: determinism, masks, and each
//! class's defining sign measured on rendered series of one study (same
//! subject, geometry and scanner; only the sequence or the contrast differs).

use tumorxai_shared::{ClassInfo, Family, Sequence, CLASS_NAMES};

use super::lesions::Kind;
use super::tissue::Tissue;
use super::*;
use crate::synth::TissueLabel;

const SIZE: usize = 96;

fn atlas() -> &'static Atlas {
    Atlas::embedded().unwrap()
}

/// The first study of `family` (seeds 0, 1, …) whose first lesion is `kind`.
fn study_of(family: Family, kind: Option<Kind>) -> Study {
    for seed in 0..400 {
        let s = Study::draw(atlas(), family, SIZE, seed);
        if kind.is_none() || s.lesions.first().map(|l| l.kind) == kind {
            return s;
        }
    }
    panic!("no study of {family:?} / {kind:?} in 400 seeds");
}

/// Mean of `values` where `keep` holds; panics if nowhere.
fn mean_where(values: &[f32], keep: impl Fn(usize) -> bool) -> f32 {
    let (sum, count) = (0..values.len())
        .filter(|&i| keep(i))
        .fold((0.0f64, 0usize), |(s, c), i| {
            (s + f64::from(values[i]), c + 1)
        });
    assert!(count > 0, "no pixel selected");
    (sum / count as f64) as f32
}

fn labelled(series: &Series, tissue: Tissue) -> impl Fn(usize) -> bool + '_ {
    move |i| series.labels[i] == Some(tissue)
}

#[test]
fn same_seed_class_and_index_give_identical_bytes() {
    for class in [1, 7, 14] {
        let a = generate(atlas(), 11, class, 0, 64, [1.0, 1.0]).unwrap();
        let b = generate(atlas(), 11, class, 0, 64, [1.0, 1.0]).unwrap();
        assert_eq!(a.jpeg, b.jpeg, "class {class}");
        assert_eq!(a.phantom.lesion_mask, b.phantom.lesion_mask);
        let c = generate(atlas(), 11, class, 1, 64, [1.0, 1.0]).unwrap();
        assert_ne!(a.jpeg, c.jpeg, "class {class}: index 1 equals index 0");
        let d = generate(atlas(), 12, class, 0, 64, [1.0, 1.0]).unwrap();
        assert_ne!(a.jpeg, d.jpeg, "class {class}: seed 12 equals seed 11");
    }
}

#[test]
fn the_vessel_factor_changes_only_contrast_series() {
    // Classes 0, 1, 2: Glioma T1, T1C+, T2 of the same seed and index.
    let at = |class, v| generate(atlas(), 4, class, 0, 64, [v, v]).unwrap().jpeg;
    assert_eq!(at(0, 0.0), at(0, 1.0), "T1 depends on the vessel factor");
    assert_eq!(at(2, 0.0), at(2, 1.0), "T2 depends on the vessel factor");
    assert_ne!(at(1, 0.0), at(1, 1.0), "T1C+ ignores the vessel factor");
}

#[test]
fn engines_differ_for_the_same_seed() {
    let painted = crate::synth::generate(atlas(), 3, 4, 0, 64).unwrap();
    let physics = generate(atlas(), 3, 4, 0, 64, [1.0, 1.0]).unwrap();
    assert_ne!(painted.jpeg, physics.jpeg);
}

#[test]
fn masks_are_non_empty_for_tumour_classes_and_empty_for_normal() {
    for (class, name) in CLASS_NAMES.iter().enumerate() {
        let family = ClassInfo::parse(name).unwrap().family;
        for index in 0..3 {
            let g = generate(atlas(), 5, class, index, SIZE as u32, [1.0, 1.0]).unwrap();
            let lesion = g.phantom.lesion_mask.iter().filter(|&&v| v == 255).count();
            if family == Family::Normal {
                assert_eq!(lesion, 0, "{name} #{index}");
            } else {
                assert!(lesion > 0, "{name} #{index}: empty mask");
            }
            // Only 0 and 255, and every lesion pixel inside the head: never
            // on air (the label of a pixel with no tissue at all).
            assert!(g.phantom.lesion_mask.iter().all(|&v| v == 0 || v == 255));
            let on_air = (0..SIZE * SIZE)
                .filter(|&i| g.phantom.lesion_mask[i] == 255)
                .filter(|&i| g.phantom.tissue[i] == TissueLabel::Background)
                .count();
            assert_eq!(on_air, 0, "{name} #{index}: lesion pixels on air");
            assert_eq!(g.phantom.pixels.len(), SIZE * SIZE);
        }
    }
}

#[test]
fn bad_requests_are_errors() {
    assert!(matches!(
        generate(atlas(), 0, 17, 0, 64, [1.0, 1.0]),
        Err(PhysicsError::ClassIndex(17))
    ));
    assert!(matches!(
        generate(atlas(), 0, 0, 0, 16, [1.0, 1.0]),
        Err(PhysicsError::Size(16))
    ));
}

#[test]
fn normal_brain_has_textbook_t1_and_t2_contrast() {
    let mut study = study_of(Family::Normal, None);
    study.z_mm = 18.0; // lateral ventricles in plane
    let t1 = study.render(atlas(), Sequence::T1, 1.0);
    let t2 = study.render(atlas(), Sequence::T2, 1.0);
    let m = |s: &Series, t| mean_where(&s.object, labelled(s, t));
    let (csf1, gm1, wm1) = (
        m(&t1, Tissue::Csf),
        m(&t1, Tissue::GreyMatter),
        m(&t1, Tissue::WhiteMatter),
    );
    let (csf2, gm2, wm2) = (
        m(&t2, Tissue::Csf),
        m(&t2, Tissue::GreyMatter),
        m(&t2, Tissue::WhiteMatter),
    );
    // T1: CSF dark, white matter brighter than grey.
    assert!(csf1 < 0.6 * gm1 && gm1 < wm1, "T1 {csf1} {gm1} {wm1}");
    // T2: CSF bright, grey brighter than white.
    // (CSF-labelled pixels include partial-volume sulci: the pure tissues'
    // ratios are checked in `sequence.rs`.)
    assert!(csf2 > 1.3 * gm2 && gm2 > 1.1 * wm2, "T2 {csf2} {gm2} {wm2}");
}

/// Enhancement inside the lesion mask: mean on T1C+ over mean on T1 of the
/// noise-free object; and of the reconstructed image (coil, k-space, noise),
/// each relative to the same series' normal white matter, as a reader
/// compares a lesion with the brain around it.
fn enhancement_ratio(study: &Study) -> (f32, f32) {
    let pre = study.render(atlas(), Sequence::T1, 1.0);
    let post = study.render(atlas(), Sequence::T1C, 1.0);
    assert_eq!(pre.mask, post.mask, "same geometry");
    assert_eq!(pre.labels, post.labels, "same tissues");
    let inside = |i: usize| pre.mask[i] == 255;
    let wm = labelled(&pre, Tissue::WhiteMatter);
    let relative = |s: &Series| mean_where(&s.image, inside) / mean_where(&s.image, &wm);
    (
        mean_where(&post.object, inside) / mean_where(&pre.object, inside),
        relative(&post) / relative(&pre),
    )
}

#[test]
fn enhancing_lesions_are_brighter_on_t1c_than_on_t1() {
    // White matter itself gains a few per cent on T1C+ (its 2 % plasma
    // volume), so the relative ratio is a little below the object's.
    for (family, kind, min) in [
        (Family::Glioma, Kind::GliomaHighGrade, 1.15),
        (Family::Meningioma, Kind::Meningioma, 1.3),
        (Family::Schwannoma, Kind::Schwannoma, 1.25),
        (Family::Neurocitoma, Kind::Neurocytoma, 1.1),
        (Family::Outros, Kind::Abscess, 1.1),
    ] {
        let study = study_of(family, Some(kind));
        let (object, relative) = enhancement_ratio(&study);
        assert!(object > min, "{kind:?}: object ratio {object}");
        assert!(relative > min - 0.1, "{kind:?}: lesion/WM ratio {relative}");
    }
}

#[test]
fn non_enhancing_lesions_stay_as_they_were_on_t1c() {
    // Counter-check of the test above: a cyst has no vessels and no leaky
    // barrier, so relative to white matter it is no brighter after contrast.
    let study = study_of(Family::Outros, Some(Kind::Cyst));
    let (object, relative) = enhancement_ratio(&study);
    assert!((object - 1.0).abs() < 0.03, "cyst object ratio {object}");
    assert!(relative < 1.05, "cyst lesion/WM ratio {relative}");
}

#[test]
fn written_dataset_has_the_layout_masks_and_record() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("phys");
    let options = crate::synth::SynthOptions {
        out: out.clone(),
        per_class: 1,
        seed: 3,
        size: 48,
        imbalance: false,
        masks: true,
        overwrite: false,
        vessel_enhancement: [0.0, 1.0],
    };
    let record =
        crate::synth::write_dataset_with(&options, crate::synth::Engine::Physics, || {}).unwrap();
    assert_eq!(record.engine, "physics");
    let json = std::fs::read_to_string(out.join("synth.json")).unwrap();
    assert!(json.contains("\"engine\": \"physics\""), "{json}");
    let masks = dir.path().join("phys-masks");
    for name in CLASS_NAMES {
        let jpeg = std::fs::read(out.join(name).join("phantom_00000.jpg")).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8], "{name}: not a JPEG");
        let mask = image::open(masks.join(name).join("phantom_00000.png"))
            .unwrap()
            .to_luma8();
        assert_eq!(mask.dimensions(), (48, 48));
        let lesion = mask.pixels().filter(|p| p.0[0] == 255).count();
        let normal = ClassInfo::parse(name).unwrap().family == Family::Normal;
        assert_eq!(lesion == 0, normal, "{name}: {lesion} lesion pixels");
    }
}

#[test]
fn enhancing_rim_takes_up_contrast_and_necrosis_does_not() {
    let mut study = study_of(Family::Glioma, Some(Kind::GliomaHighGrade));
    // A thin slice, and only core pixels 2 px inside the necrosis: a thick
    // slice would (rightly) average in the wall above and below the core.
    study.scanner.slice_mm = 0.5;
    let pre = study.render(atlas(), Sequence::T1, 1.0);
    let post = study.render(atlas(), Sequence::T1C, 1.0);
    let rim = labelled(&pre, Tissue::EnhancingRim);
    let is_core = |i: usize| pre.labels.get(i) == Some(&Some(Tissue::Necrosis));
    let core = |i: usize| {
        let (x, y) = (i % SIZE, i / SIZE);
        (2..SIZE - 2).contains(&x)
            && (2..SIZE - 2).contains(&y)
            && [
                i - 2,
                i - 1,
                i + 1,
                i + 2,
                i - SIZE,
                i - 2 * SIZE,
                i + SIZE,
                i + 2 * SIZE,
            ]
            .iter()
            .all(|&j| is_core(j))
            && is_core(i)
    };
    let rim_ratio = mean_where(&post.object, &rim) / mean_where(&pre.object, &rim);
    let core_ratio = mean_where(&post.object, core) / mean_where(&pre.object, core);
    assert!(rim_ratio > 1.3, "rim {rim_ratio}");
    assert!(core_ratio < 1.1, "necrosis {core_ratio}");
    // On T1C+ the rim outshines the necrotic core it surrounds.
    assert!(mean_where(&post.object, &rim) > 1.5 * mean_where(&post.object, core));
}

#[test]
fn cysts_follow_csf_and_do_not_enhance() {
    let study = study_of(Family::Outros, Some(Kind::Cyst));
    let pre = study.render(atlas(), Sequence::T1, 1.0);
    let post = study.render(atlas(), Sequence::T1C, 1.0);
    let t2 = study.render(atlas(), Sequence::T2, 1.0);
    let cyst = labelled(&pre, Tissue::Cyst);
    let ratio = mean_where(&post.object, &cyst) / mean_where(&pre.object, &cyst);
    assert!((ratio - 1.0).abs() < 0.03, "cyst T1C+/T1 {ratio}");
    let wm = labelled(&pre, Tissue::WhiteMatter);
    // Dark on T1, bright on T2, like CSF.
    assert!(mean_where(&pre.object, &cyst) < 0.6 * mean_where(&pre.object, &wm));
    assert!(mean_where(&t2.object, &cyst) > 2.0 * mean_where(&t2.object, &wm));
}

#[test]
fn oedema_is_bright_on_t2_and_dark_on_t1() {
    let study = study_of(Family::Glioma, Some(Kind::GliomaHighGrade));
    let t1 = study.render(atlas(), Sequence::T1, 1.0);
    let t2 = study.render(atlas(), Sequence::T2, 1.0);
    let oedema = labelled(&t1, Tissue::Oedema);
    let wm = labelled(&t1, Tissue::WhiteMatter);
    let r1 = mean_where(&t1.object, &oedema) / mean_where(&t1.object, &wm);
    let r2 = mean_where(&t2.object, &oedema) / mean_where(&t2.object, &wm);
    assert!(r1 < 0.95, "oedema / WM on T1 {r1}");
    assert!(r2 > 1.5, "oedema / WM on T2 {r2}");
}

#[test]
fn abscess_capsule_is_dark_on_t2_against_its_pus() {
    let study = study_of(Family::Outros, Some(Kind::Abscess));
    let t2 = study.render(atlas(), Sequence::T2, 1.0);
    let capsule = mean_where(&t2.object, labelled(&t2, Tissue::AbscessCapsule));
    let pus = mean_where(&t2.object, labelled(&t2, Tissue::Pus));
    assert!(capsule < 0.6 * pus, "capsule {capsule} pus {pus}");
}

#[test]
fn meningioma_sits_on_the_dura() {
    let study = study_of(Family::Meningioma, Some(Kind::Meningioma));
    let s = study.render(atlas(), Sequence::T1, 1.0);
    let extra = |t: Option<Tissue>| {
        matches!(
            t,
            Some(Tissue::Dura | Tissue::CorticalBone | Tissue::Marrow)
        )
    };
    let n = SIZE as i64;
    let touches = (0..SIZE * SIZE).filter(|&i| s.mask[i] == 255).any(|i| {
        let (x, y) = ((i % SIZE) as i64, (i / SIZE) as i64);
        (-2..=2).any(|dy| {
            (-2..=2).any(|dx| {
                let (u, v) = (x + dx, y + dy);
                (0..n).contains(&u) && (0..n).contains(&v) && extra(s.labels[(v * n + u) as usize])
            })
        })
    });
    assert!(touches, "no meningioma pixel within 2 px of dura or bone");
}

#[test]
fn sinuses_enhance_unless_the_study_washes_them_out() {
    let mut study = study_of(Family::Normal, None);
    study.z_mm = 35.0; // superior sagittal sinus front and back
    study.injection.vessel_conspicuity = 1.0;
    let pre = study.render(atlas(), Sequence::T1, 1.0);
    let post = study.render(atlas(), Sequence::T1C, 1.0);
    let blood = labelled(&pre, Tissue::Blood);
    let ratio = mean_where(&post.object, &blood) / mean_where(&pre.object, &blood);
    assert!(ratio > 1.3, "blood T1C+/T1 {ratio}");
    // A study whose vessels do not enhance (factor 0): unchanged.
    let flat = study.render(atlas(), Sequence::T1C, 0.0);
    let ratio = mean_where(&flat.object, &blood) / mean_where(&pre.object, &blood);
    assert!((ratio - 1.0).abs() < 0.02, "washed-out blood {ratio}");
}
