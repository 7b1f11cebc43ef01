//! The subject: how the shared MNI ICBM152 anatomy (`synth::atlas`, the
//! tissue probability maps) is posed, deformed and sampled in 3-D for one
//! simulated study, and the voxel mixture every compartment is written into.
//!
//! The brain's tissue fractions come straight from the template's grey- and
//! white-matter probability maps (CSF = the rest of the brain mask), sampled
//! trilinearly in 3-D so that mass effect may push tissue across slices.
//! Pose: field of view 200–250 mm, rotation ±12°, anisotropic scale
//! 0.9–1.1, shift, left–right flip, and a smooth deformation made of a few
//! random sinusoidal modes (a different family of warps from the painted
//! engine's grid noise). Fonov et al., NeuroImage 54 (2011) 313–327 and
//! NeuroImage 47 (2009) S102 describe the template.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::tissue::Tissue;
use crate::synth::atlas::{Atlas, Volume};

/// Up to this many compartments share one voxel.
pub const MAX_PARTS: usize = 8;

/// One compartment of a voxel: tissue, volume fraction, and a factor on the
/// gadolinium uptake its kinetics give (heterogeneous enhancement).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Part {
    pub tissue: Tissue,
    pub fraction: f32,
    pub uptake: f32,
}

/// The compartments of one voxel; fractions sum to at most 1 (the rest is
/// air, which gives no signal).
#[derive(Debug, Clone, Copy)]
pub struct Mixture {
    parts: [Part; MAX_PARTS],
    len: usize,
}

impl Default for Mixture {
    fn default() -> Mixture {
        Mixture {
            parts: [Part {
                tissue: Tissue::Csf,
                fraction: 0.0,
                uptake: 0.0,
            }; MAX_PARTS],
            len: 0,
        }
    }
}

impl Mixture {
    pub fn parts(&self) -> &[Part] {
        &self.parts[..self.len]
    }

    /// Adds a compartment on top of what is there (no rescaling).
    pub fn push(&mut self, tissue: Tissue, fraction: f32, uptake: f32) {
        if fraction <= 0.0 {
            return;
        }
        if let Some(p) = self.parts[..self.len]
            .iter_mut()
            .find(|p| p.tissue == tissue)
        {
            let total = p.fraction + fraction;
            p.uptake = (p.uptake * p.fraction + uptake * fraction) / total;
            p.fraction = total;
        } else if self.len < MAX_PARTS {
            self.parts[self.len] = Part {
                tissue,
                fraction,
                uptake,
            };
            self.len += 1;
        }
    }

    /// Replaces a fraction `f` of everything present by `tissue` (a lesion
    /// compartment displacing the normal tissue of its voxel).
    pub fn replace(&mut self, tissue: Tissue, f: f32, uptake: f32) {
        let f = f.clamp(0.0, 1.0);
        if f == 0.0 {
            return;
        }
        for p in &mut self.parts[..self.len] {
            p.fraction *= 1.0 - f;
        }
        self.push(tissue, f, uptake);
    }

    /// Replaces fractions of the voxel by several compartments at once
    /// (they share the voxel: the rest keeps 1 − Σ fᵢ of its share).
    pub fn replace_many(&mut self, new: &[(Tissue, f32, f32)]) {
        let total: f32 = new.iter().map(|(_, f, _)| f.max(0.0)).sum();
        if total <= 0.0 {
            return;
        }
        let k = if total > 1.0 { 1.0 / total } else { 1.0 };
        for p in &mut self.parts[..self.len] {
            p.fraction *= 1.0 - total * k;
        }
        for &(tissue, f, uptake) in new {
            self.push(tissue, f.max(0.0) * k, uptake);
        }
    }

    /// The compartment with the largest fraction.
    pub fn dominant(&self) -> Option<Tissue> {
        self.parts()
            .iter()
            .max_by(|a, b| a.fraction.total_cmp(&b.fraction))
            .map(|p| p.tissue)
    }

    /// Total fraction of the given tissues.
    pub fn fraction_of(&self, pred: impl Fn(Tissue) -> bool) -> f32 {
        self.parts()
            .iter()
            .filter(|p| pred(p.tissue))
            .map(|p| p.fraction)
            .sum()
    }
}

/// Brain tissue at a 3-D template point.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BrainSample {
    pub gm: f32,
    pub wm: f32,
    pub csf: f32,
    pub inside: bool,
}

/// Trilinear sample of the GM, WM and T1 volumes at template (x, y, z) mm.
pub fn sample_brain(atlas: &Atlas, p: [f32; 3]) -> BrainSample {
    let v: &Volume = &atlas.gm;
    let mut f = [0f32; 3];
    let mut i0 = [0usize; 3];
    for k in 0..3 {
        let x = (p[k] - v.origin[k]) / v.spacing[k];
        if x.is_nan() || x < 0.0 || x >= (v.dims[k] - 1) as f32 {
            return BrainSample::default();
        }
        i0[k] = x as usize;
        f[k] = x - i0[k] as f32;
    }
    let [nx, ny, _] = v.dims;
    let mut out = [0f32; 3];
    for (slot, vol) in [&atlas.gm, &atlas.wm, &atlas.t1].into_iter().enumerate() {
        let d = &vol.data;
        let mut acc = 0.0;
        for dz in 0..2 {
            for dy in 0..2 {
                for dx in 0..2 {
                    let w = (if dx == 1 { f[0] } else { 1.0 - f[0] })
                        * (if dy == 1 { f[1] } else { 1.0 - f[1] })
                        * (if dz == 1 { f[2] } else { 1.0 - f[2] });
                    let idx = (i0[2] + dz) * nx * ny + (i0[1] + dy) * nx + i0[0] + dx;
                    acc += w * d[idx];
                }
            }
        }
        out[slot] = acc;
    }
    let (gm, wm, t1) = (out[0], out[1], out[2]);
    let inside = t1 > 0.02 || gm + wm > 0.3;
    BrainSample {
        gm,
        wm,
        csf: if inside {
            (1.0 - gm - wm).clamp(0.0, 1.0)
        } else {
            0.0
        },
        inside,
    }
}

/// The brain's compartments at a sample, into `mix`.
pub fn brain_mixture(s: &BrainSample, mix: &mut Mixture) {
    mix.push(Tissue::GreyMatter, s.gm.max(0.0), 1.0);
    mix.push(Tissue::WhiteMatter, s.wm.max(0.0), 1.0);
    mix.push(Tissue::Csf, s.csf, 1.0);
}

/// A smooth 2-D deformation: a sum of random sinusoidal modes (mm).
#[derive(Debug, Clone)]
struct Modes {
    /// (wave vector (1/mm), phase, amplitude (mm)) per mode and axis.
    modes: Vec<([f32; 2], f32, [f32; 2])>,
}

impl Modes {
    fn random(rng: &mut ChaCha8Rng, count: usize, amplitude_mm: f32) -> Modes {
        let modes = (0..count)
            .map(|_| {
                let wavelength = rng.random_range(60.0..180.0);
                let angle = rng.random_range(0.0..std::f32::consts::TAU);
                let k = std::f32::consts::TAU / wavelength;
                (
                    [k * angle.cos(), k * angle.sin()],
                    rng.random_range(0.0..std::f32::consts::TAU),
                    [
                        rng.random_range(-amplitude_mm..amplitude_mm),
                        rng.random_range(-amplitude_mm..amplitude_mm),
                    ],
                )
            })
            .collect();
        Modes { modes }
    }

    fn at(&self, p: [f32; 2]) -> [f32; 2] {
        let mut d = [0.0; 2];
        for (k, phase, a) in &self.modes {
            let s = (k[0] * p[0] + k[1] * p[1] + phase).sin();
            d[0] += a[0] * s;
            d[1] += a[1] * s;
        }
        d
    }
}

/// How the output grid looks into the template.
#[derive(Debug, Clone)]
pub struct Pose {
    pub size: usize,
    pub mm_per_px: f32,
    cos: f32,
    sin: f32,
    scale: [f32; 2],
    shift_mm: [f32; 2],
    flip: bool,
    centre: [f32; 2],
    warp: Modes,
}

impl Pose {
    pub fn random(rng: &mut ChaCha8Rng, size: usize) -> Pose {
        let fov = rng.random_range(200.0..250.0);
        let angle = rng.random_range(-12.0f32..12.0).to_radians();
        let s = rng.random_range(0.9..1.1);
        Pose {
            size,
            mm_per_px: fov / size as f32,
            cos: angle.cos(),
            sin: angle.sin(),
            scale: [
                s * rng.random_range(0.95..1.05),
                s * rng.random_range(0.95..1.05),
            ],
            shift_mm: [rng.random_range(-9.0..9.0), rng.random_range(-9.0..9.0)],
            flip: rng.random_bool(0.5),
            centre: [0.0, -17.0],
            warp: Modes::random(rng, 4, 2.5),
        }
    }

    /// Template (x, y) mm seen at the centre of output pixel (col, row);
    /// rows run anterior (top) to posterior.
    pub fn to_template(&self, col: f32, row: f32) -> [f32; 2] {
        let half = self.size as f32 / 2.0;
        let u = (col + 0.5 - half) * self.mm_per_px - self.shift_mm[0];
        let v = -((row + 0.5 - half) * self.mm_per_px - self.shift_mm[1]);
        let ru = (self.cos * u + self.sin * v) / self.scale[0];
        let rv = (-self.sin * u + self.cos * v) / self.scale[1];
        let x = if self.flip { -ru } else { ru };
        let p = [x + self.centre[0], rv + self.centre[1]];
        let d = self.warp.at(p);
        [p[0] + d[0], p[1] + d[1]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_scales_the_rest_and_keeps_the_sum() {
        let mut m = Mixture::default();
        m.push(Tissue::GreyMatter, 0.6, 1.0);
        m.push(Tissue::WhiteMatter, 0.4, 1.0);
        m.replace(Tissue::Oedema, 0.25, 1.0);
        // 0.6 × 0.75 = 0.45, 0.4 × 0.75 = 0.30, oedema 0.25.
        let f = |t| m.fraction_of(|x| x == t);
        assert!((f(Tissue::GreyMatter) - 0.45).abs() < 1e-6);
        assert!((f(Tissue::WhiteMatter) - 0.30).abs() < 1e-6);
        assert!((f(Tissue::Oedema) - 0.25).abs() < 1e-6);
        assert_eq!(m.dominant(), Some(Tissue::GreyMatter));
    }

    #[test]
    fn trilinear_sampling_finds_brain_and_air() {
        let atlas = Atlas::embedded().unwrap();
        // Deep white matter of the centrum semiovale, 25 mm lateral at z 30.
        let s = sample_brain(atlas, [25.0, -15.0, 30.0]);
        assert!(s.inside && s.wm > 0.5, "{s:?}");
        // The lateral ventricle's body (x 10, y −10, z 20): mostly CSF.
        let v = sample_brain(atlas, [-10.0, -10.0, 20.0]);
        assert!(v.inside && v.csf > 0.4, "{v:?}");
        // 110 mm lateral: outside the head.
        assert!(!sample_brain(atlas, [110.0, 0.0, 10.0]).inside);
    }
}
