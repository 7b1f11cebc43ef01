//! Renders one phantom slice: samples the atlas through a per-subject warp,
//! paints lesions with mass effect, grows skull and scalp, picks the contrast,
//! and adds the artefacts real scans have.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use tumorxai_shared::{ClassInfo, Sequence};

use super::artefacts;
use super::atlas::{Atlas, AxialLevel};
use super::lesions::{
    self, Lesion, Signal, BONE, CSF, DIPLOE, GREY_MATTER, SCALP_FAT, WHITE_MATTER,
};
use super::vessels::{Vessels, SINUS_BLOOD};

/// Dominant tissue of a pixel before artefacts (kept for tests and masks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TissueLabel {
    Background = 0,
    Csf = 1,
    GreyMatter = 2,
    WhiteMatter = 3,
    SkullScalp = 4,
    Lesion = 5,
}

/// One rendered slice.
#[derive(Debug, Clone)]
pub struct Phantom {
    pub size: u32,
    /// 8-bit grey image, row-major.
    pub pixels: Vec<u8>,
    /// 255 where the lesion proper is, 0 elsewhere.
    pub lesion_mask: Vec<u8>,
    pub tissue: Vec<TissueLabel>,
    /// MNI z of the slice (mm).
    pub z_mm: f32,
}

/// A smooth random field in [−1, 1]: a coarse grid bilinearly upsampled.
pub struct SmoothNoise {
    grid: usize,
    values: Vec<f32>,
}

impl SmoothNoise {
    pub fn new(rng: &mut ChaCha8Rng, grid: usize) -> SmoothNoise {
        SmoothNoise {
            grid,
            values: (0..grid * grid)
                .map(|_| rng.random_range(-1.0..1.0))
                .collect(),
        }
    }

    /// Value at (u, v) ∈ [0, 1]².
    pub fn at(&self, u: f32, v: f32) -> f32 {
        let g = self.grid - 1;
        let fx = (u.clamp(0.0, 1.0)) * g as f32;
        let fy = (v.clamp(0.0, 1.0)) * g as f32;
        let (x0, y0) = ((fx as usize).min(g - 1), (fy as usize).min(g - 1));
        let (tx, ty) = (fx - x0 as f32, fy - y0 as f32);
        // Smoothstep weights hide the grid.
        let (tx, ty) = (tx * tx * (3.0 - 2.0 * tx), ty * ty * (3.0 - 2.0 * ty));
        let i = y0 * self.grid + x0;
        let v = &self.values;
        let top = v[i] + (v[i + 1] - v[i]) * tx;
        let bottom = v[i + self.grid] + (v[i + self.grid + 1] - v[i + self.grid]) * tx;
        top + (bottom - top) * ty
    }
}

/// Where a pixel of the output looks in the template frame.
struct View {
    size: f32,
    mm_per_px: f32,
    cos: f32,
    sin: f32,
    scale: [f32; 2],
    shift: [f32; 2],
    flip: bool,
    centre: [f32; 2],
    warp_x: SmoothNoise,
    warp_y: SmoothNoise,
    warp_mm: f32,
}

impl View {
    fn random(rng: &mut ChaCha8Rng, size: u32) -> View {
        let size = size as f32;
        let fov = rng.random_range(205.0..245.0);
        let angle = rng.random_range(-10.0f32..10.0).to_radians();
        let s = rng.random_range(0.90..1.08);
        let px = size / 256.0;
        View {
            size,
            mm_per_px: fov / size,
            cos: angle.cos(),
            sin: angle.sin(),
            // Per-subject head shape: slightly anisotropic.
            scale: [
                s * rng.random_range(0.96..1.04),
                s * rng.random_range(0.96..1.04),
            ],
            shift: [
                rng.random_range(-8.0..8.0) * px,
                rng.random_range(-8.0..8.0) * px,
            ],
            flip: rng.random_bool(0.5),
            centre: [0.0, -18.0],
            warp_x: SmoothNoise::new(rng, 5),
            warp_y: SmoothNoise::new(rng, 5),
            warp_mm: rng.random_range(1.0..4.0),
        }
    }

    /// Template-frame point (mm) seen at output pixel centre (x, y).
    fn to_template(&self, x: f32, y: f32) -> [f32; 2] {
        let half = self.size / 2.0;
        let u = (x + 0.5 - half - self.shift[0]) * self.mm_per_px;
        // Image rows run anterior (top) to posterior: world y decreases downward.
        let v = -(y + 0.5 - half - self.shift[1]) * self.mm_per_px;
        let (ru, rv) = (self.cos * u - self.sin * v, self.sin * u + self.cos * v);
        let mut wx = ru / self.scale[0];
        let wy = rv / self.scale[1];
        if self.flip {
            wx = -wx;
        }
        let (nu, nv) = (x / self.size, y / self.size);
        [
            wx + self.centre[0] + self.warp_mm * self.warp_x.at(nu, nv),
            wy + self.centre[1] + self.warp_mm * self.warp_y.at(nu, nv),
        ]
    }
}

/// Tissue is pushed away from lesions: the tissue now at `p` came from nearer the centre.
fn displaced(p: [f32; 2], lesions: &[Lesion]) -> [f32; 2] {
    let mut q = p;
    for lesion in lesions {
        let k = lesion.mass_effect();
        if k == 0.0 {
            continue;
        }
        let (dx, dy) = (p[0] - lesion.centre[0], p[1] - lesion.centre[1]);
        let r2 = dx * dx + dy * dy;
        let reach = 1.6 * lesion.radius;
        // Beyond 4 reaches the pull is below e⁻¹⁶: skip the exp.
        if r2 > 16.0 * reach * reach {
            continue;
        }
        let pull = k * (-r2 / (reach * reach)).exp();
        q[0] -= dx * pull;
        q[1] -= dy * pull;
    }
    q
}

fn mix(a: Signal, b: Signal, t: f32) -> Signal {
    Signal {
        t1: a.t1 + (b.t1 - a.t1) * t,
        t2: a.t2 + (b.t2 - a.t2) * t,
        enhancement: a.enhancement + (b.enhancement - a.enhancement) * t,
    }
}

/// Template T1 value remapped piecewise-linearly onto target tissue levels,
/// keeping the template's real texture.
fn remap_t1(atlas: &Atlas, t: f32) -> f32 {
    let knots = [
        (0.0, 0.0),
        (atlas.t1_level_csf, CSF.t1),
        (atlas.t1_level_gm, GREY_MATTER.t1),
        (atlas.t1_level_wm, WHITE_MATTER.t1),
        (1.0, 0.95),
    ];
    for w in knots.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if t <= x1 {
            return y0 + (y1 - y0) * ((t - x0) / (x1 - x0).max(1e-6)).clamp(0.0, 1.0);
        }
    }
    0.95
}

/// Renders one slice of a class; `vessel_enhancement` scales the T1C+
/// enhancement of the normal vessels (1: typical).
pub fn render(
    atlas: &Atlas,
    class: ClassInfo,
    size: u32,
    vessel_enhancement: f32,
    rng: &mut ChaCha8Rng,
) -> Phantom {
    let (lo, hi) = lesions::level_range(class.family);
    let z_mm = rng.random_range(lo..hi);
    let level: AxialLevel = atlas.level(z_mm);
    let lesions = lesions::plan(class.family, &level, rng);
    let view = View::random(rng, size);
    let texture = SmoothNoise::new(rng, 24);
    let fine = SmoothNoise::new(rng, 64);
    let vessels = Vessels::random(rng, z_mm).with_enhancement_scale(vessel_enhancement);

    let n = (size * size) as usize;
    let mut signal = vec![
        Signal {
            t1: 0.0,
            t2: 0.0,
            enhancement: 0.0
        };
        n
    ];
    let mut inside = vec![false; n];
    let mut tissue = vec![TissueLabel::Background; n];
    let mut lesion_mask = vec![0u8; n];
    let mut extra_enhancement = vec![0f32; n];

    for y in 0..size {
        for x in 0..size {
            let i = (y * size + x) as usize;
            let p = view.to_template(x as f32, y as f32);
            let q = displaced(p, &lesions);
            let s = level.sample(q[0], q[1]);
            let (u, v) = (x as f32 / size as f32, y as f32 / size as f32);
            let tex = 0.7 * texture.at(u, v) + 0.3 * fine.at(u, v);
            let mut in_lesion = false;
            let mut px = if s.in_brain() {
                let csf = s.csf();
                let t1 = remap_t1(atlas, s.t1);
                let t2 = csf * CSF.t2 + s.gm * GREY_MATTER.t2 + s.wm * WHITE_MATTER.t2;
                tissue[i] = if csf >= s.gm && csf >= s.wm {
                    TissueLabel::Csf
                } else if s.gm >= s.wm {
                    TissueLabel::GreyMatter
                } else {
                    TissueLabel::WhiteMatter
                };
                extra_enhancement[i] += vessels.falx(q, csf);
                let brain = Signal {
                    t1,
                    t2: t2 * (1.0 + 0.03 * tex),
                    enhancement: 0.0,
                };
                let (plexus_fraction, plexus) = vessels.choroid_plexus(q, csf, u, v);
                if plexus_fraction > 0.0 {
                    mix(brain, plexus, plexus_fraction.min(1.0))
                } else {
                    brain
                }
            } else {
                Signal {
                    t1: 0.0,
                    t2: 0.0,
                    enhancement: 0.0,
                }
            };
            for lesion in &lesions {
                let paint = lesion.paint(p, s.wm, tex);
                for (frac, layer) in paint.layers {
                    if frac > 0.0 {
                        px = mix(px, layer, frac.clamp(0.0, 1.0));
                    }
                }
                extra_enhancement[i] += paint.extra_enhancement;
                in_lesion |= paint.in_lesion;
            }
            if in_lesion {
                lesion_mask[i] = 255;
                tissue[i] = TissueLabel::Lesion;
            }
            inside[i] = s.in_brain() || in_lesion;
            signal[i] = px;
        }
    }

    fill_enclosed_csf(&mut signal, &mut tissue, &mut inside, size as usize);
    skull_and_scalp(
        &mut signal,
        &mut tissue,
        &mut extra_enhancement,
        &inside,
        size,
        (&view, &vessels),
        rng,
    );

    let mut image: Vec<f32> = signal
        .iter()
        .zip(&extra_enhancement)
        .map(|(s, extra)| match class.sequence {
            Sequence::T1 => s.t1,
            Sequence::T1C => s.t1 + s.enhancement + extra,
            Sequence::T2 => s.t2,
        })
        .collect();
    artefacts::apply(&mut image, size as usize, rng);
    let pixels = artefacts::to_u8(&image);
    let mut pixels = pixels;
    if rng.random_bool(0.2) {
        artefacts::burn_in_text(&mut pixels, size, rng);
    }
    Phantom {
        size,
        pixels,
        lesion_mask,
        tissue,
        z_mm,
    }
}

/// Pixels outside the skull-stripped template but enclosed by brain (the
/// cisterns around the brainstem) are CSF, not background: without this the
/// skull would grow inwards into them.
fn fill_enclosed_csf(
    signal: &mut [Signal],
    tissue: &mut [TissueLabel],
    inside: &mut [bool],
    size: usize,
) {
    let mut reached = vec![false; inside.len()];
    let mut stack: Vec<usize> = Vec::new();
    for i in 0..size {
        for j in [i, (size - 1) * size + i, i * size, i * size + size - 1] {
            if !inside[j] && !reached[j] {
                reached[j] = true;
                stack.push(j);
            }
        }
    }
    while let Some(i) = stack.pop() {
        let (x, y) = (i % size, i / size);
        let mut visit = |j: usize| {
            if !inside[j] && !reached[j] {
                reached[j] = true;
                stack.push(j);
            }
        };
        if x > 0 {
            visit(i - 1);
        }
        if x + 1 < size {
            visit(i + 1);
        }
        if y > 0 {
            visit(i - size);
        }
        if y + 1 < size {
            visit(i + size);
        }
    }
    for i in 0..inside.len() {
        if !inside[i] && !reached[i] {
            inside[i] = true;
            signal[i] = CSF;
            tissue[i] = TissueLabel::Csf;
        }
    }
}

/// Grows CSF rim, dura, skull (with diploë) and scalp outward from the brain
/// outline; thickness varies smoothly around the head.
fn skull_and_scalp(
    signal: &mut [Signal],
    tissue: &mut [TissueLabel],
    extra_enhancement: &mut [f32],
    inside: &[bool],
    size: u32,
    (view, vessels): (&View, &Vessels),
    rng: &mut ChaCha8Rng,
) {
    let mm_per_px = view.mm_per_px;
    let s = size as usize;
    let distance = artefacts::distance_outside(inside, s);
    let thickness_noise = SmoothNoise::new(rng, 6);
    let csf_mm = rng.random_range(1.0..2.2);
    let bone_mm = rng.random_range(5.5..8.0);
    let scalp_mm = rng.random_range(3.5..6.5);
    for y in 0..s {
        for x in 0..s {
            let i = y * s + x;
            if inside[i] {
                continue;
            }
            let d = distance[i] * mm_per_px;
            if d > 25.0 {
                continue;
            }
            let (u, v) = (x as f32 / s as f32, y as f32 / s as f32);
            let k = 1.0 + 0.3 * thickness_noise.at(u, v);
            let (c, b, sc) = (csf_mm * k, bone_mm * k, scalp_mm * k);
            // The sinuses sit in the dura against the inner table, a few mm deep.
            let sinus = if d < c + 4.5 {
                vessels.sinus(view.to_template(x as f32, y as f32))
            } else {
                None
            };
            let layer = if let Some(enhancement) = sinus {
                extra_enhancement[i] += enhancement;
                SINUS_BLOOD
            } else if d < c {
                if d > c * 0.4 {
                    extra_enhancement[i] += 0.12; // dura enhances on T1C+
                }
                extra_enhancement[i] += vessels.cortical_vein(u, v);
                CSF
            } else if d < c + b {
                let t = (d - c) / b;
                if (0.3..0.7).contains(&t) {
                    DIPLOE
                } else {
                    BONE
                }
            } else if d < c + b + sc {
                SCALP_FAT
            } else if d < c + b + sc + 1.0 {
                // Skin: thin, intermediate signal.
                Signal {
                    t1: 0.45,
                    t2: 0.40,
                    enhancement: 0.0,
                }
            } else {
                continue;
            };
            signal[i] = layer;
            tissue[i] = TissueLabel::SkullScalp;
        }
    }
}
