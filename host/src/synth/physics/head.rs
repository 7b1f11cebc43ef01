//! The head around and inside the template brain, as compartments: the
//! subarachnoid CSF, dura, skull (inner table, fatty diploë, outer table),
//! temporalis, galea, scalp fat and skin outside; and the structures with
//! no blood–brain barrier that every contrast study shows: dural venous
//! sinuses (superior sagittal, transverse), cortical veins, the falx and the
//! choroid plexus of the atria. Their brightness after contrast is not set
//! here: it follows from their gadolinium kinetics (`contrast.rs`).
//!
//! Thicknesses (adult, mm): CSF over the convexity 1–3, dura ≈ 0.5–1,
//! calvarial tables 1.2–2.5 each, diploë 2–5, scalp 5–9 (Standring,
//! *Gray's Anatomy*, 41st ed., 2016; Lillie et al., "Evaluation of skull
//! cortical thickness changes with age and sex from computed tomography
//! scans", J Bone Miner Res 31 (2016) 299–307). Sinus and choroid plexus
//! positions in MNI space: Mazziotta et al. / the ICBM152 templates.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::anatomy::{BrainSample, Mixture};
use super::shapes::{coverage, Lobulated};
use super::tissue::Tissue;

/// Where a voxel outside the brain lies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outside {
    /// Distance to the brain (mm).
    pub brain_mm: f32,
    /// Distance to the closed head outline (mm; 0 inside it).
    pub closed_mm: f32,
}

/// Per-subject head build.
#[derive(Debug, Clone)]
pub struct Head {
    csf_mm: f32,
    dura_mm: f32,
    inner_mm: f32,
    diploe_mm: f32,
    outer_mm: f32,
    galea_mm: f32,
    fat_mm: f32,
    skin_mm: f32,
    temporalis_mm: f32,
    /// Thickness modulation around the head: (harmonic, amplitude, phase).
    modulation: Vec<(f32, f32, f32)>,
    vein_angles: Vec<f32>,
    vein_mm: f32,
    sinus_half_mm: f32,
    plexus: [Lobulated; 2],
}

impl Head {
    pub fn random(rng: &mut ChaCha8Rng) -> Head {
        let modulation = (1..=4)
            .map(|k| {
                (
                    k as f32,
                    rng.random_range(0.0..0.12) / k as f32,
                    rng.random_range(0.0..std::f32::consts::TAU),
                )
            })
            .collect();
        let veins = rng.random_range(5..13);
        let plexus = [1.0f32, -1.0].map(|side| {
            let c = [
                side * rng.random_range(24.0..31.0),
                rng.random_range(-44.0..-36.0),
                rng.random_range(12.0..20.0),
            ];
            Lobulated::random(rng, c, [4.0, 8.0, 6.0], 0.2)
        });
        Head {
            csf_mm: rng.random_range(1.0..3.0),
            dura_mm: rng.random_range(0.5..1.0),
            inner_mm: rng.random_range(1.2..2.5),
            diploe_mm: rng.random_range(2.0..5.0),
            outer_mm: rng.random_range(1.2..2.2),
            galea_mm: rng.random_range(0.8..1.6),
            fat_mm: rng.random_range(3.0..6.5),
            skin_mm: rng.random_range(1.0..1.6),
            temporalis_mm: rng.random_range(4.0..10.0),
            modulation,
            vein_angles: (0..veins)
                .map(|_| rng.random_range(-std::f32::consts::PI..std::f32::consts::PI))
                .collect(),
            vein_mm: rng.random_range(1.2..2.5),
            sinus_half_mm: rng.random_range(3.0..5.5),
            plexus,
        }
    }

    fn thickness_factor(&self, phi: f32) -> f32 {
        1.0 + self
            .modulation
            .iter()
            .map(|(k, a, ph)| a * (k * phi + ph).cos())
            .sum::<f32>()
    }

    /// Compartments of a voxel outside the brain (`voxel_mm` wide) at
    /// template point `t` (mm) of level `z` (mm). Over the convexity the
    /// layers run outward from the brain; in the concavities that the
    /// closed outline fills (between the temporal lobes, the frontal base
    /// and the cerebellum, where the skull base lies) they stop at the
    /// dura and the rest is bone, and the vault's layers continue outside
    /// the closed outline from its inner table.
    pub fn outside(&self, at: Outside, t: [f32; 2], z: f32, voxel_mm: f32, mix: &mut Mixture) {
        // Angle around the head in the template frame: 0 anterior, ±π posterior.
        let phi = t[0].atan2(t[1] + 17.0);
        let k = self.thickness_factor(phi);
        let meninges = self.csf_mm * k + self.dura_mm;
        let base = at.closed_mm <= 0.0;
        let d_mm = if base {
            at.brain_mm
        } else {
            at.brain_mm.min(at.closed_mm + meninges)
        };
        // Temporalis: lateral, below the vertex.
        let lateral = phi.sin().abs().powi(4) * ((45.0 - z) / 30.0).clamp(0.0, 1.0);
        // (tissue, thickness, share of it that is fatty marrow): the
        // diploë is marrow between trabeculae; the skull base is denser.
        let vault = [
            (Tissue::Csf, self.csf_mm * k, 0.0),
            (Tissue::Dura, self.dura_mm, 0.0),
            (Tissue::CorticalBone, self.inner_mm * k, 0.0),
            (
                Tissue::CorticalBone,
                self.diploe_mm * k * (1.0 - 0.5 * lateral),
                0.75,
            ),
            (Tissue::CorticalBone, self.outer_mm * k, 0.0),
            (
                Tissue::Muscle,
                self.temporalis_mm * lateral + self.galea_mm,
                0.0,
            ),
            (Tissue::Fat, self.fat_mm * k, 0.0),
            (Tissue::Skin, self.skin_mm, 0.0),
        ];
        let skull_base = [
            (Tissue::Csf, self.csf_mm * k, 0.0),
            (Tissue::Dura, self.dura_mm, 0.0),
            (Tissue::CorticalBone, f32::INFINITY, 0.35),
        ];
        let layers: &[(Tissue, f32, f32)] = if base { &skull_base } else { &vault };
        let (lo, hi) = (d_mm - voxel_mm / 2.0, d_mm + voxel_mm / 2.0);
        let mut start = 0.0;
        for &(tissue, thickness, marrow) in layers {
            let end = start + thickness;
            let overlap = (hi.min(end) - lo.max(start)).max(0.0) / voxel_mm;
            if overlap > 0.0 {
                mix.push(tissue, (1.0 - marrow) * overlap, 1.0);
                mix.push(Tissue::Marrow, marrow * overlap, 1.0);
            }
            start = end;
        }
        let bone_end = (self.csf_mm + self.inner_mm) * k + self.dura_mm;
        // Cortical veins cross the subarachnoid space over the convexity.
        if z > -5.0 && d_mm < self.csf_mm * k {
            let r = (t[0] * t[0] + (t[1] + 17.0) * (t[1] + 17.0)).sqrt();
            let gap = self
                .vein_angles
                .iter()
                .map(|a| angle_gap(phi, *a) * r)
                .fold(f32::INFINITY, f32::min);
            let vein = coverage(self.vein_mm / 2.0 - gap, voxel_mm);
            mix.replace(Tissue::Blood, vein * 0.9, 1.0);
        }
        // Dural venous sinuses in the dura against the inner table.
        if d_mm < bone_end + 0.5 {
            let half = self.sinus_half_mm * (1.0 - 0.5 * d_mm / (bone_end + 0.5));
            let mut sinus = 0.0f32;
            let sagittal = (phi.abs() < 1.0 && z > -5.0) || (phi.abs() > 2.0 && z > -15.0);
            if sagittal {
                sinus = sinus.max(coverage(half - t[0].abs(), voxel_mm));
            }
            if (-30.0..-6.0).contains(&z) && (2.0..2.9).contains(&phi.abs()) {
                sinus = sinus.max(coverage(2.0 * half - d_mm, voxel_mm));
            }
            mix.replace(Tissue::Blood, sinus, 1.0);
        }
    }

    /// Normal structures inside the brain outline: the falx in the
    /// interhemispheric fissure and the choroid plexus in the atria.
    pub fn inside(&self, p: [f32; 3], brain: &BrainSample, voxel_mm: f32, mix: &mut Mixture) {
        if brain.csf > 0.3 {
            if in_fissure(p) {
                let falx = coverage(0.6 - p[0].abs(), voxel_mm);
                mix.replace(Tissue::Dura, falx * brain.csf, 1.0);
            }
            let plexus = self
                .plexus
                .iter()
                .filter(|s| s.near(p, voxel_mm))
                .map(|s| s.cover(p, voxel_mm))
                .fold(0.0, f32::max);
            mix.replace(Tissue::ChoroidPlexus, plexus * brain.csf * 0.8, 1.0);
        }
    }
}

/// Whether the midline at template (y, z) of `p` is the interhemispheric
/// fissure, where the falx is: above the corpus callosum (z > 35 mm), and
/// in front of the genu and behind the splenium above the tentorium.
pub fn in_fissure(p: [f32; 3]) -> bool {
    p[2] > 35.0 || (p[2] > 0.0 && (p[1] > 15.0 || p[1] < -50.0))
}

/// Smallest absolute difference of two angles (radians).
fn angle_gap(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(std::f32::consts::TAU);
    d.min(std::f32::consts::TAU - d)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn layers_run_csf_dura_bone_marrow_bone_and_scalp() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut head = Head::random(&mut rng);
        head.modulation.clear();
        head.vein_angles.clear();
        // At the vertex-free anterior midline-off point (x 30, y 40), z 60:
        // no temporalis, no sinus (|x| > half-width), no veins.
        let at = |d: f32| {
            let mut m = Mixture::default();
            let at = Outside {
                brain_mm: d,
                closed_mm: d,
            };
            head.outside(at, [30.0, 40.0], 60.0, 0.2, &mut m);
            m.dominant()
        };
        let csf = head.csf_mm;
        assert_eq!(at(csf * 0.5), Some(Tissue::Csf));
        assert_eq!(at(csf + head.dura_mm * 0.5), Some(Tissue::Dura));
        let inner = csf + head.dura_mm;
        assert_eq!(at(inner + head.inner_mm * 0.5), Some(Tissue::CorticalBone));
        let diploe = inner + head.inner_mm;
        assert_eq!(at(diploe + head.diploe_mm * 0.5), Some(Tissue::Marrow));
        let scalp = diploe + head.diploe_mm + head.outer_mm + head.galea_mm;
        assert_eq!(at(scalp + head.fat_mm * 0.5), Some(Tissue::Fat));
        assert_eq!(at(scalp + head.fat_mm + head.skin_mm + 5.0), None);
    }

    #[test]
    fn the_skull_base_is_bone_beyond_the_dura() {
        let mut rng = ChaCha8Rng::seed_from_u64(6);
        let mut head = Head::random(&mut rng);
        head.modulation.clear();
        head.vein_angles.clear();
        // Inside the closed outline, 15 mm from the brain (past any scalp
        // layer of the vault): 65 % cortical bone, 35 % marrow; no fat.
        let mut m = Mixture::default();
        let at = Outside {
            brain_mm: 15.0,
            closed_mm: 0.0,
        };
        head.outside(at, [30.0, 40.0], 60.0, 0.2, &mut m);
        assert!((m.fraction_of(|t| t == Tissue::CorticalBone) - 0.65).abs() < 1e-5);
        assert!((m.fraction_of(|t| t == Tissue::Marrow) - 0.35).abs() < 1e-5);
        // Just outside the closed outline the vault resumes at its inner
        // table (no second CSF layer), and far out there is scalp fat.
        let layer = |closed_mm: f32| {
            let mut m = Mixture::default();
            let at = Outside {
                brain_mm: 40.0,
                closed_mm,
            };
            head.outside(at, [30.0, 40.0], 60.0, 0.2, &mut m);
            m.dominant()
        };
        assert_eq!(layer(head.inner_mm * 0.5), Some(Tissue::CorticalBone));
        let scalp = head.inner_mm + head.diploe_mm + head.outer_mm + head.galea_mm;
        assert_eq!(layer(scalp + head.fat_mm * 0.5), Some(Tissue::Fat));
    }

    #[test]
    fn angle_gap_wraps_around() {
        assert!((angle_gap(3.1, -3.1) - (std::f32::consts::TAU - 6.2)).abs() < 1e-5);
        assert!((angle_gap(0.5, 0.2) - 0.3).abs() < 1e-6);
    }
}
