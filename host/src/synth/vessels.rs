//! Normal enhancing structures of a contrast-enhanced T1 (T1C+) scan: the
//! dural venous sinuses, cortical veins on the brain surface, the falx and the
//! choroid plexus of the lateral ventricles.
//!
//! Gadolinium stays in the blood and in tissue without a blood–brain barrier
//! (dura, choroid plexus), so every real T1C+ slice shows these, lesion or
//! not; without them a non-enhancing lesion's T1 and T1C+ differ only by a
//! faint dural rim, which real scans never do. The values are our choices,
//! of the order of the lesion enhancements in `lesions.rs` (venous blood
//! enhances about as strongly as a meningioma; the falx like the dura).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::lesions::Signal;
use super::render::SmoothNoise;

/// Venous blood in a sinus: intermediate on T1, a flow void on T2, and on
/// T1C+ as bright as fat.
pub const SINUS_BLOOD: Signal = Signal {
    t1: 0.32,
    t2: 0.12,
    enhancement: 0.0,
};
/// T1C+ enhancement of venous blood in the sinuses.
const SINUS_ENHANCEMENT: f32 = 0.55;
/// T1C+ enhancement of a cortical vein crossing the CSF over the brain.
const VEIN_ENHANCEMENT: f32 = 0.6;
/// T1C+ enhancement of the falx (dura between the hemispheres, thicker and
/// more conspicuous than the convexity dura's +0.12).
const FALX_ENHANCEMENT: f32 = 0.35;
/// Choroid plexus: T1 near grey matter, T2 a little brighter, strong enhancement.
const CHOROID_PLEXUS: Signal = Signal {
    t1: 0.45,
    t2: 0.66,
    enhancement: 0.50,
};

/// The per-subject vessel layout of one slice.
pub struct Vessels {
    z_mm: f32,
    sinus_half_width_mm: f32,
    veins: SmoothNoise,
    vein_threshold: f32,
    plexus: SmoothNoise,
    /// Multiplies every vessel's T1C+ enhancement (1: as in a typical
    /// contrast scan; lower: vessels as inconspicuous as at low resolution,
    /// late timing or a thick slice).
    scale: f32,
}

impl Vessels {
    pub fn random(rng: &mut ChaCha8Rng, z_mm: f32) -> Vessels {
        Vessels {
            z_mm,
            sinus_half_width_mm: rng.random_range(4.0..6.5),
            // A fine field thresholded high: sparse dots and short segments.
            veins: SmoothNoise::new(rng, 48),
            vein_threshold: rng.random_range(0.45..0.65),
            plexus: SmoothNoise::new(rng, 20),
            scale: 1.0,
        }
    }

    /// The same layout with its T1C+ enhancement scaled by `scale` (≥ 0).
    pub fn with_enhancement_scale(self, scale: f32) -> Vessels {
        Vessels {
            scale: scale.max(0.0),
            ..self
        }
    }

    /// Whether template point `p` (mm; x = 0 is the midline, y grows
    /// anteriorly) just outside the brain lies in a dural venous sinus, and
    /// if so its T1C+ enhancement. The blood is there whatever the contrast.
    pub fn sinus(&self, p: [f32; 2]) -> Option<f32> {
        // Superior sagittal sinus: where the midline meets the inner table,
        // in front of and behind the brain.
        let sagittal = p[0].abs() < self.sinus_half_width_mm;
        // Transverse sinuses: along the back of the head at tentorium level.
        let transverse = self.z_mm < -4.0 && p[1] < -72.0;
        (sagittal || transverse).then_some(SINUS_ENHANCEMENT * self.scale)
    }

    /// T1C+ enhancement of cortical veins in the CSF over the brain surface,
    /// at image position (u, v) ∈ [0, 1]².
    pub fn cortical_vein(&self, u: f32, v: f32) -> f32 {
        if self.veins.at(u, v) > self.vein_threshold {
            VEIN_ENHANCEMENT * self.scale
        } else {
            0.0
        }
    }

    /// Extra T1C+ enhancement of the falx in the interhemispheric fissure,
    /// for a brain point `q` (template mm) of CSF fraction `csf`.
    pub fn falx(&self, q: [f32; 2], csf: f32) -> f32 {
        if csf > 0.5 && q[0].abs() < 1.2 {
            FALX_ENHANCEMENT * self.scale
        } else {
            0.0
        }
    }

    /// Choroid plexus at a brain point `q`: how much of the pixel it fills
    /// (0 where there is none) and its signal. It lies in the CSF of the
    /// lateral ventricles' bodies and atria, lumpy rather than a smooth band.
    pub fn choroid_plexus(&self, q: [f32; 2], csf: f32, u: f32, v: f32) -> (f32, Signal) {
        let in_atrium = (2.0..30.0).contains(&self.z_mm)
            && (12.0..34.0).contains(&q[0].abs())
            && (-56.0..-18.0).contains(&q[1]);
        let plexus = Signal {
            enhancement: CHOROID_PLEXUS.enhancement * self.scale,
            ..CHOROID_PLEXUS
        };
        if !in_atrium || csf < 0.5 {
            return (0.0, plexus);
        }
        let lump = (2.0 * self.plexus.at(u, v) + 0.6).clamp(0.0, 1.0);
        ((csf - 0.5) * 2.0 * lump, plexus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn vessels(z_mm: f32) -> Vessels {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        Vessels::random(&mut rng, z_mm)
    }

    #[test]
    fn the_enhancement_scale_reaches_every_vessel() {
        // At z = 20 mm: sagittal sinus at the midline, falx in midline CSF,
        // choroid plexus in the atrium at (20, -40) with CSF 1.
        let full = vessels(20.0);
        let half = vessels(20.0).with_enhancement_scale(0.5);
        let none = vessels(20.0).with_enhancement_scale(0.0);
        assert_eq!(full.sinus([0.5, 70.0]), Some(0.55));
        assert_eq!(half.sinus([0.5, 70.0]), Some(0.275));
        assert_eq!(none.sinus([0.5, 70.0]), Some(0.0));
        assert_eq!(half.falx([0.5, 0.0], 0.9), FALX_ENHANCEMENT * 0.5);
        assert_eq!(none.falx([0.5, 0.0], 0.9), 0.0);
        assert_eq!(
            full.choroid_plexus([20.0, -40.0], 1.0, 0.5, 0.5)
                .1
                .enhancement,
            0.5
        );
        assert_eq!(
            half.choroid_plexus([20.0, -40.0], 1.0, 0.5, 0.5)
                .1
                .enhancement,
            0.25
        );
        // Its T1 and T2 are tissue, not contrast: unchanged.
        assert_eq!(
            none.choroid_plexus([20.0, -40.0], 1.0, 0.5, 0.5).1.t1,
            CHOROID_PLEXUS.t1
        );
        // Veins: wherever a full-scale vein enhances, a zero-scale one does not.
        let mut found = 0;
        for k in 0..400 {
            let (u, v) = ((k % 20) as f32 / 20.0, (k / 20) as f32 / 20.0);
            if full.cortical_vein(u, v) > 0.0 {
                found += 1;
                assert_eq!(none.cortical_vein(u, v), 0.0);
                assert_eq!(half.cortical_vein(u, v), 0.3);
            }
        }
        assert!(found > 0);
    }

    #[test]
    fn sinuses_enhance_at_the_midline_and_posteriorly_low_down() {
        let high = vessels(30.0);
        assert_eq!(high.sinus([0.5, 70.0]), Some(SINUS_ENHANCEMENT));
        assert_eq!(high.sinus([40.0, 10.0]), None);
        // The transverse sinuses only appear below the tentorium's top.
        assert_eq!(high.sinus([40.0, -90.0]), None);
        assert_eq!(vessels(-20.0).sinus([40.0, -90.0]), Some(SINUS_ENHANCEMENT));
    }

    #[test]
    fn cortical_veins_are_sparse() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let v = Vessels::random(&mut rng, 10.0);
        let n = 200;
        let lit = (0..n * n)
            .filter(|k| v.cortical_vein((k % n) as f32 / n as f32, (k / n) as f32 / n as f32) > 0.0)
            .count();
        let fraction = lit as f32 / (n * n) as f32;
        assert!(fraction > 0.005 && fraction < 0.25, "{fraction}");
    }

    #[test]
    fn falx_needs_midline_csf() {
        let v = vessels(20.0);
        assert_eq!(v.falx([0.3, 20.0], 0.9), FALX_ENHANCEMENT);
        assert_eq!(v.falx([0.3, 20.0], 0.2), 0.0);
        assert_eq!(v.falx([5.0, 20.0], 0.9), 0.0);
    }

    #[test]
    fn choroid_plexus_only_fills_ventricular_csf_of_the_atria() {
        let v = vessels(15.0);
        let (outside, _) = v.choroid_plexus([0.0, 30.0], 1.0, 0.5, 0.5);
        assert_eq!(outside, 0.0);
        let (in_brain_tissue, _) = v.choroid_plexus([25.0, -40.0], 0.2, 0.5, 0.5);
        assert_eq!(in_brain_tissue, 0.0);
        // Somewhere in the atrium the lumpy field lets the plexus through.
        let filled = (0..100)
            .map(|k| {
                v.choroid_plexus([25.0, -40.0], 1.0, k as f32 / 100.0, 0.5)
                    .0
            })
            .fold(0.0f32, f32::max);
        assert!(filled > 0.5, "{filled}");
        let (at_the_wrong_level, _) = vessels(-20.0).choroid_plexus([25.0, -40.0], 1.0, 0.5, 0.5);
        assert_eq!(at_the_wrong_level, 0.0);
    }
}
