//! Tissue parameters of the physics engine: longitudinal relaxation time T1,
//! transverse relaxation time T2, the reversible dephasing rate R2′ (so that
//! 1/T2* = 1/T2 + R2′) and the relative proton density PD, at 1.5 T and 3 T,
//! for the normal tissues of the head and for the compartments of the lesions.
//!
//! Sources (values rounded, chosen inside the published ranges):
//! - BrainWeb's simulator tissue table: Kwan, Evans & Pike, "MRI simulation-
//!   based evaluation of image-processing and classification methods", IEEE
//!   TMI 18 (1999) 1085–1097; Collins et al., "Design and construction of a
//!   realistic digital brain phantom", IEEE TMI 17 (1998) 463–468.
//! - Stanisz et al., "T1, T2 relaxation and magnetization transfer in tissue
//!   at 3T", MRM 54 (2005) 507–512 (grey and white matter, muscle, blood).
//! - Wansapura et al., "NMR relaxation times in the human brain at 3.0
//!   Tesla", JMRI 9 (1999) 531–538; Rooney et al., "Magnetic field and tissue
//!   dependencies of human brain longitudinal 1H2O relaxation in vivo", MRM 57
//!   (2007) 308–318 (brain T1 against field strength).
//! - Gold et al., "Musculoskeletal MRI at 3.0 T: relaxation times and image
//!   contrast", AJR 183 (2004) 343–351 (fat, marrow).
//! - Lu et al., "Determining the longitudinal relaxation time (T1) of blood
//!   at 3.0 Tesla", MRM 52 (2004) 679–682 (venous blood).
//! - Just & Thelen, "Tissue characterization with T1, T2, and proton density
//!   values: results in 160 patients with brain tumors", Radiology 169 (1988)
//!   779–785 (oedema, tumour, necrosis, cysts: long T1 and T2 against
//!   normal white matter).
//! - Proton densities as water content relative to CSF (white matter ≈ 0.70,
//!   grey matter ≈ 0.82: Neeb et al., NeuroImage 31 (2006) 1156–1168).
//!
//! Lesion compartments follow the radiology of
//! `shared/notes/dataset-17-classes.md` through their physics: oedema,
//! necrosis and cysts have long T1 and T2 (dark on T1, bright on T2), an
//! abscess capsule has a short T2 (the dark rim on T2), calcification has
//! almost no mobile water (dark on every sequence).

/// Main magnetic field of a simulated scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    T1_5,
    T3,
}

impl Field {
    pub fn tesla(self) -> f32 {
        match self {
            Field::T1_5 => 1.5,
            Field::T3 => 3.0,
        }
    }
}

/// Every compartment the engine can place in a voxel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tissue {
    Csf,
    GreyMatter,
    WhiteMatter,
    /// Subcutaneous fat of the scalp.
    Fat,
    /// Fatty (yellow) marrow of the skull's diploë.
    Marrow,
    /// Inner and outer tables of the skull.
    CorticalBone,
    /// Venous blood (sinuses, cortical veins).
    Blood,
    Dura,
    /// Temporalis and galea.
    Muscle,
    Skin,
    ChoroidPlexus,
    /// Viable, contrast-enhancing wall of a high-grade glioma.
    EnhancingRim,
    /// Solid tumour without much enhancement (low-grade glioma).
    SolidTumour,
    Necrosis,
    /// Vasogenic oedema in white matter.
    Oedema,
    Cyst,
    Calcification,
    Meningioma,
    Schwannoma,
    Neurocytoma,
    /// Collagenous abscess capsule.
    AbscessCapsule,
    Pus,
    /// Demyelination / gliosis of a diffuse encephalopathy.
    Gliosis,
}

impl Tissue {
    pub const ALL: [Tissue; 23] = [
        Tissue::Csf,
        Tissue::GreyMatter,
        Tissue::WhiteMatter,
        Tissue::Fat,
        Tissue::Marrow,
        Tissue::CorticalBone,
        Tissue::Blood,
        Tissue::Dura,
        Tissue::Muscle,
        Tissue::Skin,
        Tissue::ChoroidPlexus,
        Tissue::EnhancingRim,
        Tissue::SolidTumour,
        Tissue::Necrosis,
        Tissue::Oedema,
        Tissue::Cyst,
        Tissue::Calcification,
        Tissue::Meningioma,
        Tissue::Schwannoma,
        Tissue::Neurocytoma,
        Tissue::AbscessCapsule,
        Tissue::Pus,
        Tissue::Gliosis,
    ];

    /// Position in [`Tissue::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether the compartment is part of a lesion proper (what a lesion mask
    /// outlines; oedema and gliosis around a mass are not, diffuse gliosis
    /// is marked by its own lesion model).
    pub fn is_lesion(self) -> bool {
        matches!(
            self,
            Tissue::EnhancingRim
                | Tissue::SolidTumour
                | Tissue::Necrosis
                | Tissue::Cyst
                | Tissue::Calcification
                | Tissue::Meningioma
                | Tissue::Schwannoma
                | Tissue::Neurocytoma
                | Tissue::AbscessCapsule
                | Tissue::Pus
        )
    }
}

/// Relaxation parameters of one tissue at one field.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Relaxation {
    /// Longitudinal relaxation time (ms).
    pub t1_ms: f32,
    /// Transverse relaxation time (ms).
    pub t2_ms: f32,
    /// Effective transverse relaxation time including R2′ (ms).
    pub t2star_ms: f32,
    /// Proton density relative to CSF (0–1).
    pub pd: f32,
}

/// One row of the table: T1 at 1.5 T and 3 T, T2 at 1.5 T and 3 T (ms),
/// R2′ at 1.5 T (1/s; it scales about linearly with field), PD.
struct Row {
    t1: [f32; 2],
    t2: [f32; 2],
    r2_prime_15: f32,
    pd: f32,
}

const fn row(t1: [f32; 2], t2: [f32; 2], r2_prime_15: f32, pd: f32) -> Row {
    Row {
        t1,
        t2,
        r2_prime_15,
        pd,
    }
}

fn table(tissue: Tissue) -> Row {
    match tissue {
        // BrainWeb CSF T1 2569 ms is a low estimate; in vivo 3.7–4.4 s.
        Tissue::Csf => row([4000.0, 4300.0], [2000.0, 1800.0], 1.0, 1.00),
        Tissue::GreyMatter => row([1150.0, 1600.0], [95.0, 88.0], 6.0, 0.82),
        Tissue::WhiteMatter => row([700.0, 950.0], [72.0, 66.0], 8.0, 0.70),
        Tissue::Fat => row([343.0, 382.0], [58.0, 68.0], 15.0, 0.90),
        Tissue::Marrow => row([400.0, 450.0], [55.0, 50.0], 40.0, 0.75),
        Tissue::CorticalBone => row([300.0, 350.0], [1.0, 1.0], 100.0, 0.10),
        Tissue::Blood => row([1440.0, 1650.0], [180.0, 100.0], 12.0, 0.85),
        Tissue::Dura => row([800.0, 1000.0], [50.0, 45.0], 10.0, 0.60),
        Tissue::Muscle => row([1008.0, 1412.0], [44.0, 50.0], 12.0, 0.75),
        Tissue::Skin => row([800.0, 1000.0], [45.0, 40.0], 12.0, 0.70),
        Tissue::ChoroidPlexus => row([1200.0, 1550.0], [120.0, 110.0], 15.0, 0.85),
        Tissue::EnhancingRim => row([1150.0, 1550.0], [110.0, 100.0], 10.0, 0.86),
        Tissue::SolidTumour => row([1450.0, 1950.0], [160.0, 150.0], 8.0, 0.90),
        Tissue::Necrosis => row([2200.0, 2900.0], [350.0, 320.0], 6.0, 0.95),
        Tissue::Oedema => row([1400.0, 1900.0], [200.0, 180.0], 6.0, 0.88),
        Tissue::Cyst => row([3200.0, 3700.0], [1200.0, 1100.0], 2.0, 0.98),
        Tissue::Calcification => row([600.0, 700.0], [15.0, 12.0], 150.0, 0.20),
        Tissue::Meningioma => row([1050.0, 1450.0], [95.0, 88.0], 10.0, 0.84),
        Tissue::Schwannoma => row([1250.0, 1700.0], [140.0, 130.0], 8.0, 0.88),
        Tissue::Neurocytoma => row([1150.0, 1550.0], [110.0, 100.0], 10.0, 0.86),
        Tissue::AbscessCapsule => row([750.0, 950.0], [45.0, 40.0], 20.0, 0.80),
        Tissue::Pus => row([1600.0, 2100.0], [250.0, 230.0], 6.0, 0.93),
        Tissue::Gliosis => row([1050.0, 1400.0], [125.0, 115.0], 8.0, 0.80),
    }
}

/// Relaxation parameters of `tissue` at `field`.
pub fn relaxation(tissue: Tissue, field: Field) -> Relaxation {
    let r = table(tissue);
    let k = match field {
        Field::T1_5 => 0,
        Field::T3 => 1,
    };
    let t2 = r.t2[k];
    let r2_prime = r.r2_prime_15 * field.tesla() / 1.5;
    // 1/T2* = 1/T2 + R2′ (R2′ in 1/s, times in ms).
    let t2star = 1.0 / (1.0 / t2 + r2_prime / 1000.0);
    Relaxation {
        t1_ms: r.t1[k],
        t2_ms: t2,
        t2star_ms: t2star,
        pd: r.pd,
    }
}

/// The whole table at one field, indexed by [`Tissue::index`].
pub fn table_at(field: Field) -> [Relaxation; 23] {
    Tissue::ALL.map(|t| relaxation(t, field))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_tissue_at_its_index() {
        for (i, t) in Tissue::ALL.iter().enumerate() {
            assert_eq!(t.index(), i, "{t:?}");
        }
    }

    #[test]
    fn t2_star_combines_t2_and_r2_prime() {
        // White matter at 1.5 T: T2 72 ms, R2′ 8 /s = 0.008 /ms:
        // 1/T2* = 1/72 + 0.008 = 0.013889 + 0.008 = 0.021889 → T2* = 45.685 ms.
        let wm = relaxation(Tissue::WhiteMatter, Field::T1_5);
        assert!((wm.t2star_ms - 45.685).abs() < 0.01, "{wm:?}");
        // At 3 T R2′ doubles: 1/66 + 0.016 = 0.031152 → 32.10 ms.
        let wm3 = relaxation(Tissue::WhiteMatter, Field::T3);
        assert!((wm3.t2star_ms - 32.10).abs() < 0.01, "{wm3:?}");
    }

    #[test]
    fn relaxometry_orders_of_the_literature() {
        for field in [Field::T1_5, Field::T3] {
            let p = |t| relaxation(t, field);
            let (csf, gm, wm) = (
                p(Tissue::Csf),
                p(Tissue::GreyMatter),
                p(Tissue::WhiteMatter),
            );
            // T1: WM < GM < CSF; T2: WM < GM < CSF; PD: WM < GM < CSF.
            assert!(wm.t1_ms < gm.t1_ms && gm.t1_ms < csf.t1_ms);
            assert!(wm.t2_ms < gm.t2_ms && gm.t2_ms < csf.t2_ms);
            assert!(wm.pd < gm.pd && gm.pd < csf.pd);
            // Oedema and necrosis: longer T1 and T2 than white matter.
            for t in [Tissue::Oedema, Tissue::Necrosis, Tissue::Cyst] {
                assert!(
                    p(t).t1_ms > wm.t1_ms && p(t).t2_ms > 2.0 * wm.t2_ms,
                    "{t:?}"
                );
            }
            // Abscess capsule: T2 shorter than white matter's.
            assert!(p(Tissue::AbscessCapsule).t2_ms < wm.t2_ms);
            // Fat: the shortest T1 of the soft tissues.
            assert!(p(Tissue::Fat).t1_ms < wm.t1_ms / 1.8);
        }
        // Brain T1 lengthens with field (Rooney 2007).
        for t in [Tissue::GreyMatter, Tissue::WhiteMatter, Tissue::Blood] {
            assert!(relaxation(t, Field::T3).t1_ms > relaxation(t, Field::T1_5).t1_ms);
        }
    }
}
