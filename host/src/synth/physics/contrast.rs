//! Gadolinium: where it goes and what it does to T1.
//!
//! - Relaxivity: 1/T1 = 1/T1₀ + r1 · C (C in mM, r1 in 1/(mM·s)); r1 in
//!   plasma at 1.5 T ≈ 3.6 (gadoterate), 4.1 (gadopentetate), 5.2
//!   (gadobutrol), a little lower at 3 T (Rohrer et al., "Comparison of
//!   magnetic properties of MRI contrast media solutions at different
//!   magnetic field strengths", Invest Radiol 40 (2005) 715–724).
//! - Plasma concentration after a bolus of D mmol/kg: the bi-exponential of
//!   Weinmann, Laniado & Mützel, "Pharmacokinetics of GdDTPA/dimeglumine
//!   after intravenous injection into healthy volunteers", Physiol Chem Phys
//!   Med NMR 16 (1984) 167–172: Cp(t) = D (a1 e^(−m1 t) + a2 e^(−m2 t)),
//!   a1 = 3.99 kg/l, a2 = 4.78 kg/l, m1 = 0.144 /min, m2 = 0.0111 /min.
//! - Tissue concentration: the extended Tofts model (Tofts & Kermode, MRM 17
//!   (1991) 357–367; Tofts et al., JMRI 10 (1999) 223–232),
//!   Ct(t) = vp Cp(t) + Ktrans ∫₀ᵗ Cp(τ) e^(−kep (t−τ)) dτ, kep = Ktrans/ve,
//!   which for the bi-exponential Cp has the closed form used below.
//!   Where the blood–brain barrier is intact Ktrans = 0 and only the small
//!   plasma volume (vp ≈ 3 %) enhances; tumour, meningioma, schwannoma, an
//!   abscess wall and the structures without a barrier (dura, choroid
//!   plexus) leak. Blood itself holds Cp (1 − Hct).
//!
//! Dose (half to full standard 0.1 mmol/kg), delay after injection (1–12
//! min), agent and vessel conspicuity are drawn per study: in some studies
//! the normal vessels barely enhance (late or spin-echo acquisitions whose
//! flowing blood is washed out) while leaky lesions still do.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::tissue::{Field, Tissue};

const WEINMANN_A: [f32; 2] = [3.99, 4.78];
const WEINMANN_M: [f32; 2] = [0.144, 0.0111];
/// Haematocrit: the fraction of blood volume where gadolinium cannot go.
const HAEMATOCRIT: f32 = 0.42;

/// Leakiness of a compartment (extended Tofts parameters).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Kinetics {
    /// Transfer constant plasma → extravascular extracellular space (1/min).
    pub ktrans: f32,
    /// Extravascular extracellular volume fraction.
    pub ve: f32,
    /// Plasma volume fraction.
    pub vp: f32,
}

/// Typical kinetics of each compartment (mid-range values of DCE-MRI
/// studies: glioblastoma Ktrans 0.05–0.2 /min, meningioma 0.2–0.5 /min,
/// normal brain vp ≈ 0.02–0.04; Sourbron & Buckley, NMR Biomed 26 (2013)
/// 1004–1027 review the model).
pub fn kinetics(tissue: Tissue) -> Kinetics {
    let k = |ktrans, ve, vp| Kinetics { ktrans, ve, vp };
    match tissue {
        Tissue::GreyMatter => k(0.0, 0.2, 0.04),
        Tissue::WhiteMatter => k(0.0, 0.2, 0.02),
        Tissue::Blood => k(0.0, 0.0, 1.0 - HAEMATOCRIT),
        Tissue::Dura => k(0.10, 0.30, 0.05),
        Tissue::ChoroidPlexus => k(0.30, 0.30, 0.12),
        Tissue::EnhancingRim => k(0.14, 0.35, 0.06),
        Tissue::SolidTumour => k(0.005, 0.25, 0.03),
        Tissue::Meningioma => k(0.35, 0.45, 0.08),
        Tissue::Schwannoma => k(0.20, 0.40, 0.04),
        Tissue::Neurocytoma => k(0.06, 0.30, 0.06),
        Tissue::AbscessCapsule => k(0.15, 0.30, 0.06),
        Tissue::Muscle | Tissue::Skin => k(0.05, 0.15, 0.03),
        Tissue::Oedema => k(0.003, 0.40, 0.01),
        _ => k(0.0, 0.2, 0.0),
    }
}

/// One study's injection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Injection {
    /// Dose (mmol/kg).
    pub dose: f32,
    /// Time from injection to the slice's acquisition (min).
    pub delay_min: f32,
    /// Relaxivity r1 at the scanner's field (1/(mM·s)).
    pub r1: f32,
    /// Factor on the normal vessels' and barrier-free structures' signal
    /// from contrast (1: as the kinetics give; low: vessels washed out).
    pub vessel_conspicuity: f32,
}

impl Injection {
    pub fn draw(field: Field, rng: &mut ChaCha8Rng) -> Injection {
        // (r1 at 1.5 T, r1 at 3 T) of three agents (Rohrer 2005).
        let agents = [(3.6, 3.5), (4.1, 3.7), (5.2, 5.0)];
        let (r15, r3) = agents[rng.random_range(0..agents.len())];
        let dose = if rng.random_bool(0.2) {
            0.05
        } else {
            0.1 * rng.random_range(0.85..1.1)
        };
        let vessel_conspicuity = if rng.random_bool(0.3) {
            rng.random_range(0.0..0.3)
        } else {
            rng.random_range(0.6..1.0)
        };
        Injection {
            dose,
            delay_min: rng.random_range(1.0..12.0),
            r1: match field {
                Field::T1_5 => r15,
                Field::T3 => r3,
            },
            vessel_conspicuity,
        }
    }

    /// Plasma concentration (mM) at `t` minutes (Weinmann 1984).
    pub fn plasma(&self, t: f32) -> f32 {
        plasma_concentration(self.dose, t)
    }

    /// Gadolinium concentration (mM) in a compartment with `kinetics` at
    /// this study's delay; normally enhancing structures are scaled by the
    /// study's vessel conspicuity.
    pub fn concentration(&self, tissue: Tissue) -> f32 {
        let c = tissue_concentration(self.dose, kinetics(tissue), self.delay_min);
        if matches!(tissue, Tissue::Blood | Tissue::Dura | Tissue::ChoroidPlexus) {
            c * self.vessel_conspicuity
        } else {
            c
        }
    }
}

/// Cp(t) = D (a1 e^(−m1 t) + a2 e^(−m2 t)) in mM for a dose D in mmol/kg.
pub fn plasma_concentration(dose: f32, t_min: f32) -> f32 {
    let t = t_min.max(0.0);
    dose * (WEINMANN_A[0] * (-WEINMANN_M[0] * t).exp() + WEINMANN_A[1] * (-WEINMANN_M[1] * t).exp())
}

/// Extended Tofts: Ct = vp Cp + Ktrans Σᵢ D aᵢ (e^(−mᵢ t) − e^(−kep t)) / (kep − mᵢ).
pub fn tissue_concentration(dose: f32, k: Kinetics, t_min: f32) -> f32 {
    let t = t_min.max(0.0);
    let mut leaked = 0.0;
    if k.ktrans > 0.0 && k.ve > 0.0 {
        let kep = k.ktrans / k.ve;
        for (a, m) in WEINMANN_A.iter().zip(WEINMANN_M) {
            let diff = kep - m;
            // kep = mᵢ: the limit of the fraction is t e^(−mᵢ t).
            let term = if diff.abs() < 1e-6 {
                t * (-m * t).exp()
            } else {
                ((-m * t).exp() - (-kep * t).exp()) / diff
            };
            leaked += dose * a * term;
        }
        leaked *= k.ktrans;
    }
    k.vp * plasma_concentration(dose, t) + leaked
}

/// T1 after contrast: 1/T1 = 1/T1₀ + r1 C (T1 in ms, r1 in 1/(mM·s), C in mM).
pub fn shortened_t1_ms(t1_ms: f32, r1: f32, c_mm: f32) -> f32 {
    1000.0 / (1000.0 / t1_ms + r1 * c_mm.max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relaxivity_shortens_t1_as_hand_computed() {
        // T1₀ 1000 ms = 1 /s; r1 4 /(mM s) × 0.5 mM = 2 /s → R1 3 /s → 333.33 ms.
        assert!((shortened_t1_ms(1000.0, 4.0, 0.5) - 333.333).abs() < 0.01);
        // No contrast: unchanged.
        assert!((shortened_t1_ms(850.0, 4.0, 0.0) - 850.0).abs() < 1e-3);
    }

    #[test]
    fn plasma_curve_matches_weinmann() {
        // D = 0.1, t = 1 min: 0.1 (3.99 e^(−0.144) + 4.78 e^(−0.0111))
        // = 0.1 (3.99 × 0.865888 + 4.78 × 0.988961) = 0.1 (3.454893 + 4.727234) = 0.818213 mM.
        assert!((plasma_concentration(0.1, 1.0) - 0.818213).abs() < 1e-4);
        // t = 0: D (a1 + a2) = 0.877 mM.
        assert!((plasma_concentration(0.1, 0.0) - 0.877).abs() < 1e-5);
    }

    #[test]
    fn tofts_matches_hand_computation() {
        // Ktrans 0.12 /min, ve 0.3 → kep 0.4 /min; vp 0.05; D 0.1; t 5 min.
        // i=1: (e^(−0.72) − e^(−2)) / (0.4 − 0.144) = (0.486752 − 0.135335) / 0.256 = 1.372723
        // i=2: (e^(−0.0555) − e^(−2)) / (0.4 − 0.0111) = (0.946012 − 0.135335) / 0.3889 = 2.084539
        // leaked = 0.12 × 0.1 × (3.99 × 1.372723 + 4.78 × 2.084539) = 0.012 × 15.441254 = 0.185295
        // Cp(5) = 0.1 (3.99 × 0.486752 + 4.78 × 0.946012) = 0.646408; vp Cp = 0.032320
        // Ct = 0.217615 mM.
        let k = Kinetics {
            ktrans: 0.12,
            ve: 0.3,
            vp: 0.05,
        };
        let c = tissue_concentration(0.1, k, 5.0);
        assert!((c - 0.217615).abs() < 1e-4, "{c}");
        // An intact barrier: only the plasma fraction.
        let brain = Kinetics {
            ktrans: 0.0,
            ve: 0.2,
            vp: 0.03,
        };
        assert!((tissue_concentration(0.1, brain, 5.0) - 0.03 * 0.646408).abs() < 1e-4);
    }

    #[test]
    fn leaky_lesions_take_up_more_than_brain_and_cysts_none() {
        let inj = Injection {
            dose: 0.1,
            delay_min: 4.0,
            r1: 4.0,
            vessel_conspicuity: 0.1,
        };
        let wm = inj.concentration(Tissue::WhiteMatter);
        for t in [
            Tissue::EnhancingRim,
            Tissue::Meningioma,
            Tissue::Schwannoma,
            Tissue::AbscessCapsule,
        ] {
            assert!(inj.concentration(t) > 5.0 * wm, "{t:?}");
        }
        assert_eq!(inj.concentration(Tissue::Cyst), 0.0);
        assert_eq!(inj.concentration(Tissue::Necrosis), 0.0);
        // Washed-out vessels: a tenth of the blood's 0.58 Cp.
        let blood = inj.concentration(Tissue::Blood);
        assert!((blood - 0.1 * 0.58 * inj.plasma(4.0)).abs() < 1e-5);
    }
}
