//! Pulse sequences and their steady-state signal equations, and the
//! protocols a simulated scanner uses for its T1-weighted (also after
//! contrast) and T2-weighted series.
//!
//! Equations (magnitude, relative to the fully relaxed proton density; see
//! Haacke et al., *Magnetic Resonance Imaging: Physical Principles and
//! Sequence Design*, Wiley 1999, ch. 8 and 18; Bernstein, King & Zhou,
//! *Handbook of MRI Pulse Sequences*, Elsevier 2004; the same forms drive
//! BrainWeb's simulator, Kwan et al. 1999):
//! - spin echo (and fast spin echo at its effective TE):
//!   S = PD · (1 − e^(−TR/T1)) · e^(−TE/T2)
//! - spoiled gradient echo (FLASH / SPGR), Ernst form:
//!   S = PD · sin α · (1 − E1) / (1 − cos α · E1) · e^(−TE/T2*),  E1 = e^(−TR/T1)
//! - inversion recovery (magnitude reconstruction, e.g. T1-FLAIR):
//!   S = PD · |1 − 2 e^(−TI/T1) + e^(−TR/T1)| · e^(−TE/T2)
//!
//! Protocol ranges are those of routine clinical brain MRI: T1 spin echo
//! TR 400–650 ms / TE 8–18 ms at 1.5 T; 2-D FLASH TR 150–250 ms, α 65–85°;
//! T1-FLAIR at 3 T (TR 1800–2600 ms, TI within 7 % of CSF's null, about
//! 850–1100 ms); T2 fast spin echo TR 3500–6500 ms, TE 80–120 ms.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::tissue::{relaxation, Field, Relaxation, Tissue};

/// One acquisition's sequence and timing (times in ms, angle in degrees).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Protocol {
    SpinEcho { tr: f32, te: f32 },
    SpoiledGradientEcho { tr: f32, te: f32, flip_deg: f32 },
    InversionRecovery { tr: f32, te: f32, ti: f32 },
}

/// Spin echo: S = PD (1 − e^(−TR/T1)) e^(−TE/T2).
pub fn spin_echo(pd: f32, t1: f32, t2: f32, tr: f32, te: f32) -> f32 {
    pd * (1.0 - (-tr / t1).exp()) * (-te / t2).exp()
}

/// Spoiled gradient echo: S = PD sin α (1 − E1)/(1 − cos α E1) e^(−TE/T2*).
pub fn spoiled_gradient_echo(
    pd: f32,
    t1: f32,
    t2star: f32,
    tr: f32,
    te: f32,
    flip_deg: f32,
) -> f32 {
    let e1 = (-tr / t1).exp();
    let a = flip_deg.to_radians();
    pd * a.sin() * (1.0 - e1) / (1.0 - a.cos() * e1) * (-te / t2star).exp()
}

/// Inversion recovery, magnitude: S = PD |1 − 2e^(−TI/T1) + e^(−TR/T1)| e^(−TE/T2).
pub fn inversion_recovery(pd: f32, t1: f32, t2: f32, tr: f32, te: f32, ti: f32) -> f32 {
    pd * (1.0 - 2.0 * (-ti / t1).exp() + (-tr / t1).exp()).abs() * (-te / t2).exp()
}

/// The Ernst angle (degrees), where a spoiled gradient echo of repetition
/// time `tr` gives the most signal for a tissue of longitudinal time `t1`.
pub fn ernst_angle_deg(t1: f32, tr: f32) -> f32 {
    (-tr / t1).exp().acos().to_degrees()
}

impl Protocol {
    /// Signal of a tissue whose (possibly contrast-shortened) T1 is `t1_ms`.
    pub fn signal(&self, r: &Relaxation, t1_ms: f32) -> f32 {
        match *self {
            Protocol::SpinEcho { tr, te } => spin_echo(r.pd, t1_ms, r.t2_ms, tr, te),
            Protocol::SpoiledGradientEcho { tr, te, flip_deg } => {
                spoiled_gradient_echo(r.pd, t1_ms, r.t2star_ms, tr, te, flip_deg)
            }
            Protocol::InversionRecovery { tr, te, ti } => {
                inversion_recovery(r.pd, t1_ms, r.t2_ms, tr, te, ti)
            }
        }
    }

    /// Whether flowing blood loses its signal (spin-echo washout between the
    /// 90° and 180° pulses) rather than gaining it (gradient-echo inflow).
    pub fn flow_void(&self) -> bool {
        !matches!(self, Protocol::SpoiledGradientEcho { .. })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Protocol::SpinEcho { .. } => "SE",
            Protocol::SpoiledGradientEcho { .. } => "SPGR",
            Protocol::InversionRecovery { .. } => "IR",
        }
    }

    /// A T1-weighted protocol as a scanner of `field` runs it (the same one
    /// before and after contrast).
    pub fn draw_t1(field: Field, rng: &mut ChaCha8Rng) -> Protocol {
        let pick: f32 = rng.random();
        match field {
            Field::T1_5 if pick < 0.6 => Protocol::SpinEcho {
                tr: rng.random_range(400.0..650.0),
                te: rng.random_range(8.0..18.0),
            },
            Field::T3 if pick < 0.5 => {
                // T1-FLAIR: TI near the null of CSF, which leaves grey
                // matter dark and white matter bright.
                let tr = rng.random_range(1800.0..2600.0);
                let csf = relaxation(Tissue::Csf, field).t1_ms;
                let null = csf * (2.0 / (1.0 + (-tr / csf).exp())).ln();
                Protocol::InversionRecovery {
                    tr,
                    te: rng.random_range(8.0..20.0),
                    ti: null * rng.random_range(0.93..1.07),
                }
            }
            _ => Protocol::SpoiledGradientEcho {
                tr: rng.random_range(150.0..250.0),
                te: rng.random_range(2.5..5.0),
                flip_deg: rng.random_range(65.0..85.0),
            },
        }
    }

    /// A T2-weighted fast spin echo.
    pub fn draw_t2(rng: &mut ChaCha8Rng) -> Protocol {
        Protocol::SpinEcho {
            tr: rng.random_range(3500.0..6500.0),
            te: rng.random_range(80.0..120.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn close(a: f32, b: f32, tol: f32) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn spin_echo_matches_hand_computation() {
        // TR 500, TE 15, T1 900, T2 100, PD 0.7:
        // 1 − e^(−500/900) = 1 − e^(−0.55556) = 1 − 0.573753 = 0.426247
        // e^(−15/100) = e^(−0.15) = 0.860708
        // S = 0.7 × 0.426247 × 0.860708 = 0.256812
        let s = spin_echo(0.7, 900.0, 100.0, 500.0, 15.0);
        assert!(close(s, 0.256812, 2e-5), "{s}");
    }

    #[test]
    fn spoiled_gradient_echo_matches_hand_computation() {
        // TR 20, TE 4, α 30°, T1 900, T2* 50, PD 0.8:
        // E1 = e^(−20/900) = 0.978023; sin 30° = 0.5; cos 30° = 0.866025
        // (1 − E1)/(1 − cos α E1) = 0.021977 / (1 − 0.846993) = 0.021977 / 0.153007 = 0.143634
        // e^(−4/50) = 0.923116
        // S = 0.8 × 0.5 × 0.143634 × 0.923116 = 0.053037
        let s = spoiled_gradient_echo(0.8, 900.0, 50.0, 20.0, 4.0, 30.0);
        assert!(close(s, 0.053037, 2e-5), "{s}");
        // Ernst angle: acos(0.978023) = 12.034°.
        assert!(close(ernst_angle_deg(900.0, 20.0), 12.034, 0.01));
        // And the signal there beats 6° and 24°.
        let at = |a| spoiled_gradient_echo(1.0, 900.0, 50.0, 20.0, 4.0, a);
        assert!(at(12.034) > at(6.0) && at(12.034) > at(24.0));
    }

    #[test]
    fn inversion_recovery_matches_hand_computation() {
        // TR 2000, TI 800, TE 10, T1 900, T2 100, PD 0.9:
        // e^(−800/900) = 0.411112; e^(−2000/900) = 0.108368
        // |1 − 0.822224 + 0.108368| = 0.286144; e^(−0.1) = 0.904837
        // S = 0.9 × 0.286144 × 0.904837 = 0.233022
        let s = inversion_recovery(0.9, 900.0, 100.0, 2000.0, 10.0, 800.0);
        assert!(close(s, 0.233022, 2e-5), "{s}");
        // A tissue nulled at TI = T1 ln(2 / (1 + e^(−TR/T1))) = 900 ln(2/1.108368) = 531.23 ms.
        assert!(inversion_recovery(1.0, 900.0, 100.0, 2000.0, 10.0, 531.23) < 1e-4);
    }

    #[test]
    fn every_drawn_protocol_gives_the_textbook_contrast() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for field in [Field::T1_5, Field::T3] {
            let p = |t| relaxation(t, field);
            let (csf, gm, wm) = (
                p(Tissue::Csf),
                p(Tissue::GreyMatter),
                p(Tissue::WhiteMatter),
            );
            for _ in 0..200 {
                let t1w = Protocol::draw_t1(field, &mut rng);
                let s = |r: &Relaxation| t1w.signal(r, r.t1_ms);
                // T1: CSF dark, white matter brighter than grey.
                assert!(s(&csf) < 0.6 * s(&gm), "{t1w:?}");
                assert!(s(&wm) > 1.08 * s(&gm), "{t1w:?}");
                let t2w = Protocol::draw_t2(&mut rng);
                let s = |r: &Relaxation| t2w.signal(r, r.t1_ms);
                // T2: CSF bright, grey brighter than white.
                assert!(s(&csf) > 1.5 * s(&gm), "{t2w:?}");
                assert!(s(&gm) > 1.15 * s(&wm), "{t2w:?}");
            }
        }
    }
}
